/*
 * test_golden.c - tapegrad against PyTorch: stored inputs, outputs and
 * gradients of every registered op (issue 3, item 3). Needs no Python.
 *
 * The cases are those of the gradient-check table (tests/test_opgrad.c and
 * tests/opgrad_<family>.c, read through opgrad_table()): every variant of
 * an op's entry, with its builder and constant arguments. The script
 * tools/make_golden.py mirrors each builder in PyTorch, makes inputs of the
 * variant's shapes and domains and a random upstream gradient dout of the
 * output's shape, and stores in tests/data/golden/<op>.txt, once in f64
 * and once in f32 (inputs rounded to f32 first):
 *     the inputs, the output, dout, and the gradient of sum(dout * out)
 *     with respect to each input that requires grad.
 * Values are stored exactly (C99 hexadecimal floats, read with strtod).
 *
 * This suite runs one loop test per registered op (0..TG_OP_COUNT-1), so a
 * new op fails here until it has golden data. For every stored case it
 * builds the inputs (contiguous; the "bcast" cases use the entry's
 * broadcast shapes; "edge" cases put chosen elements of the contiguous
 * inputs at kinks, ties, zeros and extremes, where conventions are decided),
 * runs the builder, compares the output (and any input the op updates in
 * place: batch_norm's running statistics), then calls
 * tg_backward_with_grad(out, dout) and compares every input's gradient.
 * Each contiguous case runs a second time with every floating input of 2
 * or more dims made a transposed (strided) view holding the same values:
 * same expected numbers, different kernels. Tolerance, elementwise:
 *     |got - want| <= tol * max(1, |want|),  tol 1e-10 in f64, 1e-5 in f32
 * (equal infinities and NaN against NaN pass; I64 outputs must be equal).
 * TG_GOLDEN_VERBOSE=1 prints, per op, the largest |diff| / limit seen.
 * TG_OPF_NOGRAD ops (argmax...) compare the output only. TG_OPF_RANDOM
 * ops (dropout) cannot reproduce PyTorch's RNG; their stored output is the
 * torch op with the same constants, and the suite checks the law of the op
 * instead of the values (see check_random below).
 *
 * Stale data fails too: the file stores, per variant, the variant's full
 * description as this file prints it (spec_json); when the table entry
 * changes (shapes, axes, constants), the stored description no longer
 * matches and the test asks for regeneration.
 *
 * File format (tokens separated by white space; '#' starts a comment that
 * runs to the end of the line):
 *     tapegrad-golden 1
 *     op <name>
 *     spec <k> <JSON description of variant k, to the end of the line>
 *     case <k> <layout: contig|bcast|edge> <dtype: f64|f32> <n_in>
 *     in <i> <dtype: f64|f32|i64> <requires grad: 0|1> <ndim> <dims...> <values...>
 *     after <i> <ndim> <dims...> <values...>   (input i after the forward, when
 *                                               the op updates it: running stats)
 *     out <dtype> <ndim> <dims...> <values...>
 *     dout <ndim> <dims...> <values...>        (absent for no-grad ops)
 *     grad <i> <ndim> <dims...> <values...>    (one per input with grad 1)
 *     end
 * Floating values are C99 hex floats ("0x1.8p+1"), "nan", "inf", "-inf";
 * I64 values are decimal integers.
 *
 * The data directory is $TG_GOLDEN_DIR (set by tests/meson.build), else
 * tests/data/golden under the current directory.
 *
 * Regenerating (after a table entry changes or a new op lands):
 *     TG_GOLDEN_SPEC=<file> test_main golden
 * writes every entry's description as JSON lines instead of running the
 * tests; tools/make_golden.py does that itself:
 *     /usr/bin/python3 tools/make_golden.py --build <builddir> [op ...]
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"
#include "opgrad.h"
#include "test_util.h"

/* tests/test_opgrad.c: the filled gradient-check table, indexed by tg_op */
const op_entry *opgrad_table(void);

#define GOLDEN_TOL_F64 1e-10
#define GOLDEN_TOL_F32 1e-5
#define SPEC_LEN 4096
#define REGEN "/usr/bin/python3 tools/make_golden.py --build <builddir>"

/* ---- the description of a variant ---------------------------------------- */

static const char *dom_name(dom_kind d)
{
    switch (d) {
    case D_NORMAL: return "normal";
    case D_POS: return "pos";
    case D_AWAY: return "away";
    case D_LABELS: return "labels";
    case D_INDEX: return "index";
    case D_MASK: return "mask";
    case D_UNIT: return "unit";
    case D_NORMAL_CONST: return "normal_const";
    case D_POS_CONST: return "pos_const";
    case D_UNIT_CONST: return "unit_const";
    default: break; /* a new domain: add it here and to tools/make_golden.py */
    }
    return "?";
}

static bool dom_nograd(dom_kind d)
{
    return d == D_LABELS || d == D_INDEX || d == D_MASK || d == D_NORMAL_CONST ||
           d == D_POS_CONST || d == D_UNIT_CONST;
}

typedef struct {
    char *p;
    size_t left;
} sbuf;

static void put(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void put(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p, b->left, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t m = (size_t)n < b->left ? (size_t)n : (b->left ? b->left - 1 : 0);
    b->p += m;
    b->left -= m;
}

/* A double as JSON: 17 significant digits, Python's names for non-finite. */
static void put_num(sbuf *b, double v)
{
    if (isnan(v)) put(b, "NaN");
    else if (isinf(v)) put(b, v > 0 ? "Infinity" : "-Infinity");
    else put(b, "%.17g", v);
}

static void put_shape(sbuf *b, const shp *s)
{
    put(b, "[");
    for (int d = 0; d < s->ndim; d++) put(b, d ? ",%lld" : "%lld", (long long)s->d[d]);
    put(b, "]");
}

static void put_ints(sbuf *b, const int *v, int n)
{
    put(b, "[");
    for (int i = 0; i < n; i++) put(b, i ? ",%d" : "%d", v[i]);
    put(b, "]");
}

/* Variant a as one line of JSON (no newline): every field of op_case, so
 * the Python mirror sees the same constants the C builder does. */
static void spec_json(const op_case *a, char *out, size_t len)
{
    sbuf b = {out, len};
    put(&b, "{\"what\":\"");
    for (const char *s = a->what ? a->what : ""; *s; s++) {
        if (*s == '"' || *s == '\\') put(&b, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) put(&b, "\\u%04x", (unsigned)*s);
        else put(&b, "%c", *s);
    }
    put(&b, "\",\"n_in\":%d,\"in\":[", a->n_in);
    for (int i = 0; i < a->n_in; i++) {
        if (i) put(&b, ",");
        put_shape(&b, &a->in[i]);
    }
    put(&b, "],\"dom\":[");
    for (int i = 0; i < a->n_in; i++) put(&b, i ? ",\"%s\"" : "\"%s\"", dom_name(a->dom[i]));
    put(&b, "],\"has_bc\":%s,\"bc\":[", a->has_bc ? "true" : "false");
    for (int i = 0; a->has_bc && i < a->n_in; i++) {
        if (i) put(&b, ",");
        put_shape(&b, &a->bc[i]);
    }
    put(&b, "],\"s\":");
    put_num(&b, a->s);
    put(&b, ",\"naxes\":%d,\"axes\":", a->naxes);
    put_ints(&b, a->axes, 4);
    put(&b,
        ",\"keepdim\":%s,\"axis\":%d,\"d0\":%d,\"d1\":%d,\"perm\":", a->keepdim ? "true" : "false",
        a->axis, a->d0, a->d1);
    put_ints(&b, a->perm, TG_MAX_DIMS);
    put(&b, ",\"to\":");
    put_shape(&b, &a->to);
    put(&b, ",\"start\":%lld,\"stop\":%lld,\"step\":%lld,\"f\":[", (long long)a->start,
        (long long)a->stop, (long long)a->step);
    for (int i = 0; i < 4; i++) {
        if (i) put(&b, ",");
        put_num(&b, a->f[i]);
    }
    put(&b, "],\"iv\":[");
    for (int i = 0; i < 16; i++) put(&b, i ? ",%lld" : "%lld", (long long)a->iv[i]);
    put(&b, "],\"niv\":%d,\"flag\":%s,\"index_hi\":%lld}", a->niv, a->flag ? "true" : "false",
        (long long)a->index_hi);
}

static int n_variants(const op_entry *e)
{
    int k = 0;
    while (k < MAX_VAR && e->v[k].n_in > 0) k++;
    return e->f ? k : 0;
}

/* Writes one JSON line per registered op: name, arity, flags, variants. */
static void write_spec(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "golden: cannot write %s: %s\n", path, strerror(errno));
        return;
    }
    const op_entry *table = opgrad_table();
    static char buf[SPEC_LEN];
    for (int op = 0; op < TG_OP_COUNT; op++) {
        fprintf(f, "{\"op\":\"%s\",\"arity\":%d,\"flags\":%u,\"variants\":[", tg_op_name((tg_op)op),
                tg_op_arity((tg_op)op), tg_op_flags((tg_op)op));
        for (int k = 0; k < n_variants(&table[op]); k++) {
            spec_json(&table[op].v[k], buf, sizeof buf);
            fprintf(f, "%s%s", k ? "," : "", buf);
        }
        fprintf(f, "]}\n");
    }
    fclose(f);
}

/* ---- reading a golden file ------------------------------------------------ */

typedef struct {
    tg_dtype dt;
    int ndim;
    int64_t d[TG_MAX_DIMS];
    int64_t n;
    double *v; /* n values (I64 ones converted exactly: they are small) */
} gtensor;

typedef struct {
    int k;
    char layout[8]; /* "contig" or "bcast" */
    tg_dtype dt;
    int n_in;
    bool grad[MAX_IN];
    gtensor in[MAX_IN];
    bool has_after[MAX_IN];
    gtensor after[MAX_IN]; /* inputs the op updates in place, afterwards */
    gtensor out;
    bool has_dout;
    gtensor dout;
    bool has_g[MAX_IN];
    gtensor g[MAX_IN];
} gcase;

typedef struct {
    char *text; /* the file, tokens cut in place */
    char *p;
    char *spec[MAX_VAR];
    gcase *cases;
    int ncase, cap;
    char err[1536];
} gfile;

static char *next_tok(gfile *g)
{
    char *p = g->p;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (*p != '#') break;
        while (*p && *p != '\n') p++;
    }
    if (*p == '\0') {
        g->p = p;
        return NULL;
    }
    char *t = p;
    while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') p++;
    if (*p) *p++ = '\0';
    g->p = p;
    return t;
}

static bool parse_long(gfile *g, long long *out)
{
    char *t = next_tok(g), *end;
    if (t == NULL) return false;
    errno = 0;
    *out = strtoll(t, &end, 10);
    return *end == '\0' && errno == 0;
}

static bool parse_dtype(const char *t, tg_dtype *dt)
{
    if (t == NULL) return false;
    if (strcmp(t, "f64") == 0) *dt = TG_F64;
    else if (strcmp(t, "f32") == 0) *dt = TG_F32;
    else if (strcmp(t, "i64") == 0) *dt = TG_I64;
    else return false;
    return true;
}

/* <ndim> <dims...> <values...> into t (dtype already set). */
static bool parse_tensor(gfile *g, gtensor *t)
{
    long long nd;
    if (!parse_long(g, &nd) || nd < 0 || nd > TG_MAX_DIMS) return false;
    t->ndim = (int)nd;
    t->n = 1;
    for (int d = 0; d < t->ndim; d++) {
        long long v;
        if (!parse_long(g, &v) || v < 0 || v > 1000000) return false;
        t->d[d] = v;
        t->n *= v;
    }
    if (t->n > 10000000) return false;
    t->v = malloc((size_t)(t->n ? t->n : 1) * sizeof(double));
    if (t->v == NULL) return false;
    for (int64_t i = 0; i < t->n; i++) {
        char *s = next_tok(g), *end;
        if (s == NULL) return false;
        if (t->dt == TG_I64) {
            errno = 0;
            long long v = strtoll(s, &end, 10);
            if (errno) return false;
            t->v[i] = (double)v;
        } else {
            t->v[i] = strtod(s, &end);
        }
        if (*end != '\0') return false;
    }
    return true;
}

static void free_gtensor(gtensor *t)
{
    free(t->v);
    t->v = NULL;
}

static void gfile_free(gfile *g)
{
    for (int i = 0; i < g->ncase; i++) {
        gcase *cs = &g->cases[i];
        for (int j = 0; j < MAX_IN; j++) {
            free_gtensor(&cs->in[j]);
            free_gtensor(&cs->g[j]);
            free_gtensor(&cs->after[j]);
        }
        free_gtensor(&cs->out);
        free_gtensor(&cs->dout);
    }
    free(g->cases);
    free(g->text);
    memset(g, 0, sizeof *g);
}

#define GFAIL(...)                                    \
    do {                                              \
        snprintf(g->err, sizeof g->err, __VA_ARGS__); \
        return false;                                 \
    } while (0)

/* Reads path into g; false with g->err set when it is missing or malformed. */
static bool gfile_read(gfile *g, const char *path, const char *opname)
{
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (f == NULL) GFAIL("cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    g->text = malloc(cap);
    for (;;) {
        if (g->text == NULL) {
            fclose(f);
            GFAIL("out of memory");
        }
        len += fread(g->text + len, 1, cap - len - 1, f);
        if (len < cap - 1) break;
        cap *= 2;
        char *t = realloc(g->text, cap);
        if (t == NULL) free(g->text);
        g->text = t;
    }
    fclose(f);
    g->text[len] = '\0';
    g->p = g->text;

    char *t = next_tok(g);
    long long ver;
    if (t == NULL || strcmp(t, "tapegrad-golden") != 0 || !parse_long(g, &ver) || ver != 1)
        GFAIL("%s: not a tapegrad-golden 1 file", path);
    t = next_tok(g);
    char *name = next_tok(g);
    if (t == NULL || strcmp(t, "op") != 0 || name == NULL || strcmp(name, opname) != 0)
        GFAIL("%s: does not hold op %s", path, opname);

    gcase *cs = NULL;
    while ((t = next_tok(g)) != NULL) {
        long long k, i;
        if (strcmp(t, "spec") == 0) {
            if (!parse_long(g, &k) || k < 0 || k >= MAX_VAR) GFAIL("%s: bad spec line", path);
            char *p = g->p;
            while (*p == ' ' || *p == '\t') p++;
            char *s = p;
            while (*p && *p != '\n' && *p != '\r') p++;
            if (*p) *p++ = '\0';
            g->p = p;
            g->spec[k] = s;
        } else if (strcmp(t, "case") == 0) {
            if (cs != NULL) GFAIL("%s: case %d has no 'end'", path, g->ncase);
            if (g->ncase == g->cap) {
                int nc = g->cap ? 2 * g->cap : 16;
                gcase *m = realloc(g->cases, (size_t)nc * sizeof *m);
                if (m == NULL) GFAIL("out of memory");
                g->cases = m;
                g->cap = nc;
            }
            cs = &g->cases[g->ncase++];
            memset(cs, 0, sizeof *cs);
            char *lay;
            long long n;
            if (!parse_long(g, &k) || k < 0 || k >= MAX_VAR || (lay = next_tok(g)) == NULL ||
                strlen(lay) >= sizeof cs->layout || !parse_dtype(next_tok(g), &cs->dt) ||
                !parse_long(g, &n) || n < 1 || n > MAX_IN)
                GFAIL("%s: bad case line (case %d)", path, g->ncase);
            cs->k = (int)k;
            strcpy(cs->layout, lay);
            cs->n_in = (int)n;
        } else if (cs == NULL) {
            GFAIL("%s: '%s' before the first case", path, t);
        } else if (strcmp(t, "in") == 0) {
            long long rg;
            if (!parse_long(g, &i) || i < 0 || i >= cs->n_in ||
                !parse_dtype(next_tok(g), &cs->in[i].dt) || !parse_long(g, &rg) ||
                cs->in[i].v != NULL || !parse_tensor(g, &cs->in[i]))
                GFAIL("%s: bad input in case %d", path, g->ncase);
            cs->grad[i] = rg != 0;
        } else if (strcmp(t, "after") == 0) {
            if (!parse_long(g, &i) || i < 0 || i >= cs->n_in || cs->in[i].v == NULL ||
                cs->after[i].v != NULL)
                GFAIL("%s: bad 'after' in case %d", path, g->ncase);
            cs->after[i].dt = cs->in[i].dt;
            if (!parse_tensor(g, &cs->after[i]))
                GFAIL("%s: bad 'after' in case %d", path, g->ncase);
            cs->has_after[i] = true;
        } else if (strcmp(t, "out") == 0) {
            if (!parse_dtype(next_tok(g), &cs->out.dt) || cs->out.v != NULL ||
                !parse_tensor(g, &cs->out))
                GFAIL("%s: bad output in case %d", path, g->ncase);
        } else if (strcmp(t, "dout") == 0) {
            cs->dout.dt = cs->dt;
            if (cs->dout.v != NULL || !parse_tensor(g, &cs->dout))
                GFAIL("%s: bad dout in case %d", path, g->ncase);
            cs->has_dout = true;
        } else if (strcmp(t, "grad") == 0) {
            if (!parse_long(g, &i) || i < 0 || i >= cs->n_in || cs->g[i].v != NULL)
                GFAIL("%s: bad grad in case %d", path, g->ncase);
            cs->g[i].dt = cs->dt;
            if (!parse_tensor(g, &cs->g[i])) GFAIL("%s: bad grad in case %d", path, g->ncase);
            cs->has_g[i] = true;
        } else if (strcmp(t, "end") == 0) {
            for (int j = 0; j < cs->n_in; j++)
                if (cs->in[j].v == NULL) GFAIL("%s: case %d lacks input %d", path, g->ncase, j);
            if (cs->out.v == NULL) GFAIL("%s: case %d lacks its output", path, g->ncase);
            cs = NULL;
        } else {
            GFAIL("%s: unexpected '%s'", path, t);
        }
    }
    if (cs != NULL) GFAIL("%s: truncated (last case has no 'end')", path);
    return true;
}

/* ---- running a case ------------------------------------------------------- */

typedef struct {
    const char *op, *what, *layout, *dtype;
    char *msg; /* accumulated failure text */
    size_t msg_len;
    int failed;
    double worst[2]; /* largest |got - want| / limit seen, f64 and f32 */
} report;

static void mismatch(report *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void mismatch(report *r, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "golden: %s, %s, %s, %s: %s\n", r->op, r->what, r->layout, r->dtype, line);
    size_t used = strlen(r->msg);
    if (used < r->msg_len)
        snprintf(r->msg + used, r->msg_len - used, "\n  %s, %s, %s: %s", r->what, r->layout,
                 r->dtype, line);
    r->failed++;
}

static bool same_shape(const tg_tensor *t, const gtensor *g)
{
    if (tg_ndim(t) != g->ndim) return false;
    for (int d = 0; d < g->ndim; d++)
        if (tg_shape(t)[d] != g->d[d]) return false;
    return true;
}

static void shape_str(const gtensor *g, char *buf, size_t n)
{
    sbuf b = {buf, n};
    put(&b, "[");
    for (int d = 0; d < g->ndim; d++) put(&b, d ? ",%lld" : "%lld", (long long)g->d[d]);
    put(&b, "]");
}

/* t's n elements, row-major, as doubles into out (zeros for a NULL t). */
static bool read_values(const tg_tensor *t, int64_t n, double *out)
{
    if (t == NULL || n == 0) {
        for (int64_t i = 0; i < n; i++) out[i] = 0;
        return true;
    }
    tg_dtype dt = tg_tensor_dtype(t);
    size_t nb = (size_t)n * tg_dtype_size(dt);
    void *raw = malloc(nb);
    if (raw == NULL || tg_copy_out(t, raw, nb) != TG_OK) {
        free(raw);
        return false;
    }
    for (int64_t i = 0; i < n; i++)
        out[i] = dt == TG_F32   ? (double)((const float *)raw)[i]
                 : dt == TG_F64 ? ((const double *)raw)[i]
                                : (double)((const int64_t *)raw)[i];
    free(raw);
    return true;
}

/* Compares t (NULL: zeros of want's shape) to want; reports at most three
 * elements. */
static void compare(report *r, const char *name, const tg_tensor *t, const gtensor *want)
{
    char ws[64], gs[64];
    shape_str(want, ws, sizeof ws);
    if (t != NULL && !same_shape(t, want)) {
        mismatch(r, "%s has shape %s, torch %s", name, tg_shape_str(t, gs, sizeof gs), ws);
        return;
    }
    double *got = calloc((size_t)(want->n ? want->n : 1), sizeof(double));
    if (got == NULL) {
        mismatch(r, "out of memory");
        return;
    }
    if (!read_values(t, want->n, got)) {
        mismatch(r, "%s: cannot read the result", name);
        free(got);
        return;
    }
    if (t != NULL && tg_tensor_dtype(t) != want->dt)
        mismatch(r, "%s has dtype %s, torch %s", name, tg_dtype_name(tg_tensor_dtype(t)),
                 tg_dtype_name(want->dt));
    double tol = want->dt == TG_F64 ? GOLDEN_TOL_F64 : want->dt == TG_F32 ? GOLDEN_TOL_F32 : 0;
    int bad = 0;
    for (int64_t i = 0; i < want->n; i++) {
        double a = got[i], b = want->v[i];
        if (a == b || (isnan(a) && isnan(b))) continue;
        double lim = tol * (fabs(b) > 1 ? fabs(b) : 1);
        if (tol > 0 && fabs(a - b) / lim > r->worst[want->dt == TG_F32]) {
            r->worst[want->dt == TG_F32] = fabs(a - b) / lim;
        }
        if (fabs(a - b) <= lim) continue;
        if (bad++ < 3)
            mismatch(r, "%s %s[%lld]: tapegrad %.17g, torch %.17g (|diff| %.3g > %.3g)%s", name, ws,
                     (long long)i, a, b, fabs(a - b), lim,
                     t == NULL ? " (no gradient reached it)" : "");
    }
    if (bad > 3) mismatch(r, "%s: %d of %lld elements differ", name, bad, (long long)want->n);
    free(got);
}

/* A leaf holding g's values; with strided, a transposed view of a
 * contiguous tensor of the transposed shape (floating inputs of >= 2 dims). */
static tg_tensor *make_leaf(tg_ctx *c, const gtensor *g, bool strided)
{
    size_t es = tg_dtype_size(g->dt);
    char *buf = malloc((size_t)(g->n ? g->n : 1) * es);
    ck_assert_ptr_nonnull(buf);
    bool tr = strided && g->dt != TG_I64 && g->ndim >= 2;
    int64_t rows = tr ? g->d[g->ndim - 2] : 1, cols = tr ? g->d[g->ndim - 1] : 1;
    for (int64_t i = 0; i < g->n; i++) {
        /* element i of the logical tensor goes to position j of the base */
        int64_t j = i;
        if (tr) {
            int64_t m = rows * cols, blk = i / m, r = (i % m) / cols, q = i % cols;
            j = blk * m + q * rows + r;
        }
        if (g->dt == TG_F32) ((float *)buf)[j] = (float)g->v[i];
        else if (g->dt == TG_F64) ((double *)buf)[j] = g->v[i];
        else ((int64_t *)buf)[j] = (int64_t)g->v[i];
    }
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, g->d, sizeof shape);
    if (tr) {
        shape[g->ndim - 2] = cols;
        shape[g->ndim - 1] = rows;
    }
    tg_tensor *t = tg_tensor_from(c, g->dt, g->ndim, shape, buf);
    free(buf);
    if (tr && t != NULL) {
        bool prev = tg_set_grad_enabled(c, false);
        t = tg_transpose(c, t, -2, -1);
        tg_set_grad_enabled(c, prev);
    }
    tu_assert_ok(c);
    return t;
}

static bool any_strided(const gcase *cs)
{
    for (int i = 0; i < cs->n_in; i++) {
        const gtensor *g = &cs->in[i];
        if (g->dt != TG_I64 && g->ndim >= 2 && g->d[g->ndim - 1] > 1 && g->d[g->ndim - 2] > 1)
            return true;
    }
    return false;
}

/*
 * A TG_OPF_RANDOM op (dropout: out = x * mask / (1 - p), mask ~ Bernoulli(1
 * - p)) cannot match torch's draws. What must hold whatever the draws: every
 * output element is either 0 or x * scale, with torch's scale 1 / (1 - p)
 * read off torch's own output (out / x at its first kept element), and the
 * gradient of each element is dout * scale where kept, 0 where dropped;
 * with 20 or more elements, some are kept and some dropped. When torch's
 * output equals the input (eval mode, p = 0) the values are compared
 * exactly instead. Input 0 is x.
 */
static void check_random(report *r, const gcase *cs, tg_tensor *const *in, tg_tensor *y)
{
    const gtensor *x = &cs->in[0];
    bool identity = x->n == cs->out.n;
    for (int64_t i = 0; identity && i < x->n; i++) identity = x->v[i] == cs->out.v[i];
    if (identity) {
        compare(r, "output", y, &cs->out);
        if (cs->has_dout && cs->has_g[0]) compare(r, "grad of input 0", tg_grad(in[0]), &cs->g[0]);
        return;
    }
    if (!same_shape(y, &cs->out)) {
        mismatch(r, "the output's shape differs from torch's");
        return;
    }
    double scale = 0;
    for (int64_t i = 0; i < x->n && scale == 0; i++)
        if (cs->out.v[i] != 0 && x->v[i] != 0) scale = cs->out.v[i] / x->v[i];
    double tol = cs->dt == TG_F64 ? GOLDEN_TOL_F64 : GOLDEN_TOL_F32;
    int64_t n = x->n;
    bool grads = cs->has_dout && cs->has_g[0];
    double *yv = malloc((size_t)(n ? n : 1) * sizeof(double));
    double *gv = malloc((size_t)(n ? n : 1) * sizeof(double));
    ck_assert(yv != NULL && gv != NULL);
    ck_assert(read_values(y, n, yv) && read_values(grads ? tg_grad(in[0]) : NULL, n, gv));
    int bad = 0, kept = 0;
    for (int64_t i = 0; i < n; i++) {
        double want = x->v[i] * scale;
        bool is_kept = fabs(yv[i] - want) <= tol * fmax(1, fabs(want));
        kept += is_kept;
        if (!is_kept && yv[i] != 0) {
            if (bad++ < 3)
                mismatch(r, "output[%lld] = %.17g is neither 0 nor x * %.17g = %.17g", (long long)i,
                         yv[i], scale, want);
            continue;
        }
        double gw = is_kept ? cs->dout.v[i] * scale : 0;
        if (grads && fabs(gv[i] - gw) > tol * fmax(1, fabs(gw)) && bad++ < 3)
            mismatch(r, "grad of input 0 [%lld] = %.17g, want %.17g (element %s)", (long long)i,
                     gv[i], gw, is_kept ? "kept" : "dropped");
    }
    if (n >= 20 && (kept == 0 || kept == n))
        mismatch(r, "scale %g: %d of %lld elements kept", scale, kept, (long long)n);
    free(yv);
    free(gv);
}

static void run_case(report *r, tg_op op, const op_entry *e, const gcase *cs, bool strided)
{
    op_case a = e->v[cs->k];
    tg_ctx *c = tu_ctx();
    tg_ctx_seed(c, 7u + (unsigned)op);
    tg_tensor *in[MAX_IN] = {NULL};
    for (int i = 0; i < cs->n_in; i++) {
        in[i] = make_leaf(c, &cs->in[i], strided);
        if (cs->grad[i]) tg_set_requires_grad(in[i], true);
    }
    tu_assert_ok(c);
    tg_tensor *y = e->f(c, in, cs->n_in, &a);
    if (y == NULL) {
        mismatch(r, "the builder failed: %s", tg_ctx_errmsg(c));
        tg_ctx_free(c);
        return;
    }
    bool random = tg_op_flags(op) & TG_OPF_RANDOM;
    if (!random) compare(r, "output", y, &cs->out);
    for (int i = 0; i < cs->n_in; i++) {
        if (!cs->has_after[i]) continue;
        char name[48];
        snprintf(name, sizeof name, "input %d after the op", i);
        compare(r, name, in[i], &cs->after[i]);
    }
    if (cs->has_dout) {
        if (!tg_requires_grad(y)) {
            mismatch(r, "the output requires no grad, torch's does");
        } else if (!same_shape(y, &cs->dout)) {
            mismatch(r, "dout's shape differs from the output's");
        } else {
            tg_tensor *dout = make_leaf(c, &cs->dout, false);
            tg_status st = tg_backward_with_grad(c, y, dout);
            if (st != TG_OK) {
                mismatch(r, "backward failed: %s: %s", tg_status_str(st), tg_ctx_errmsg(c));
            } else if (!random) {
                for (int i = 0; i < cs->n_in; i++) {
                    if (!cs->has_g[i]) continue;
                    char name[32];
                    snprintf(name, sizeof name, "grad of input %d", i);
                    compare(r, name, tg_grad(in[i]), &cs->g[i]);
                }
            }
        }
    }
    if (random) check_random(r, cs, in, y);
    tg_ctx_free(c);
}

/* ---- the test ------------------------------------------------------------- */

static const char *golden_dir(void)
{
    const char *d = getenv("TG_GOLDEN_DIR");
    return d != NULL && d[0] != '\0' ? d : "tests/data/golden";
}

START_TEST(test_op)
{
    tg_op op = (tg_op)_i;
    const char *name = tg_op_name(op);
    ck_assert_ptr_nonnull(name);
    const op_entry *e = &opgrad_table()[op];
    int nv = n_variants(e);
    ck_assert_msg(nv > 0,
                  "op %s has no entry in the gradient-check table (tests/test_opgrad.c), so no "
                  "golden cases",
                  name);

    char path[1024];
    snprintf(path, sizeof path, "%s/%s.txt", golden_dir(), name);
    gfile g;
    if (!gfile_read(&g, path, name)) {
        char err[1536];
        snprintf(err, sizeof err, "%s", g.err);
        gfile_free(&g);
        ck_abort_msg("op %s has no usable golden data (%s); generate it with: " REGEN " %s", name,
                     err, name);
    }

    static char msg[4000];
    msg[0] = '\0';
    report r = {name, "", "", "", msg, sizeof msg, 0, {0, 0}};
    static char spec[SPEC_LEN];
    int runs = 0;
    for (int k = 0; k < MAX_VAR; k++) {
        if (k >= nv) {
            if (g.spec[k] != NULL) {
                r.what = "(file)";
                mismatch(&r,
                         "the file has a variant %d the table does not: stale, run " REGEN " %s", k,
                         name);
            }
            continue;
        }
        const op_case *a = &e->v[k];
        r.what = a->what;
        r.layout = "";
        r.dtype = "";
        spec_json(a, spec, sizeof spec);
        if (g.spec[k] == NULL || strcmp(g.spec[k], spec) != 0) {
            mismatch(&r,
                     "the stored description of variant %d differs from the table's: the data "
                     "is stale, run " REGEN " %s",
                     k, name);
            continue;
        }
        bool seen[2][2] = {{false}}; /* [bcast][f32] */
        for (int j = 0; j < g.ncase; j++) {
            const gcase *cs = &g.cases[j];
            if (cs->k != k) continue;
            bool bc = strcmp(cs->layout, "bcast") == 0, edge = strcmp(cs->layout, "edge") == 0;
            r.dtype = tg_dtype_name(cs->dt);
            if (cs->n_in != a->n_in || (!bc && !edge && strcmp(cs->layout, "contig") != 0)) {
                r.layout = cs->layout;
                mismatch(&r, "stored case does not fit the variant: stale, run " REGEN " %s", name);
                continue;
            }
            for (int i = 0; i < cs->n_in; i++)
                if (cs->grad[i] != (!dom_nograd(a->dom[i]) && cs->in[i].dt != TG_I64))
                    mismatch(&r, "input %d: stored requires-grad flag disagrees with domain %s", i,
                             dom_name(a->dom[i]));
            if (!edge) seen[bc][cs->dt == TG_F32] = true;
            r.layout = bc ? "broadcast" : edge ? "edge values" : "contiguous";
            run_case(&r, op, e, cs, false);
            runs++;
            if (!bc && any_strided(cs)) {
                r.layout = edge ? "edge values, strided" : "strided";
                run_case(&r, op, e, cs, true);
                runs++;
            }
        }
        r.layout = "";
        r.dtype = "";
        for (int bc = 0; bc < 2; bc++)
            for (int f32 = 0; f32 < 2; f32++)
                if (!seen[bc][f32] && (!bc || a->has_bc))
                    mismatch(&r, "no stored %s case in %s", bc ? "broadcast" : "contiguous",
                             f32 ? "f32" : "f64");
    }
    gfile_free(&g);
    if (getenv("TG_GOLDEN_VERBOSE") != NULL)
        fprintf(stderr, "golden: %-20s %3d runs, worst |diff|/limit: f64 %.3g, f32 %.3g\n", name,
                runs, r.worst[0], r.worst[1]);
    ck_assert_msg(r.failed == 0, "%s: %d mismatches in %d golden runs:%s", name, r.failed, runs,
                  msg);
}
END_TEST

Suite *golden_suite(void)
{
    Suite *s = suite_create("golden");
    const char *spec = getenv("TG_GOLDEN_SPEC");
    if (spec != NULL && spec[0] != '\0') {
        /* tools/make_golden.py asks for the table: write it, run nothing */
        write_spec(spec);
        return s;
    }
    TCase *tc = tu_tcase("torch");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_op, 0, TG_OP_COUNT);
    suite_add_tcase(s, tc);
    return s;
}
