/*
 * csv.c - small numeric tables from RFC 4180 CSV (see data.h).
 *
 * Two passes over the bytes with one lexer: the first checks the
 * structure (quotes, field counts) and counts records, so the second can
 * write every cell straight into a tensor of the right size. Fields are
 * never NUL-terminated in place; a cell is copied (unescaping "") into a
 * bounded buffer before strtod reads it, in the "C" locale whatever the
 * program's locale is, so "1.5" means the same everywhere. Class names
 * are numbered through a hash table on the heap, freed before returning.
 */
#include "io_impl.h"
#include "tapegrad/data.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <string.h>

struct tg_csv {
    tg_tensor *x, *y;
    int64_t rows, cols;
    const char **col_names; /* cols entries, or NULL without header */
    const char *label_name;
    int64_t n_classes;
    const char **classes;
};

tg_csv_opts tg_csv_defaults(void)
{
    tg_csv_opts o;
    memset(&o, 0, sizeof o);
    o.delimiter = ',';
    o.header = true;
    o.label_col = -1;
    o.label_name = NULL;
    o.dtype = TG_F32;
    return o;
}

/* ---- the lexer ------------------------------------------------------------- */

typedef struct {
    const char *p, *e;
    char delim;
    int64_t line; /* 1-based line of p */
} lexer;

typedef struct {
    const char *s; /* raw text: between the quotes for a quoted field, "" still doubled */
    size_t n;
    bool quoted;
    bool eor;     /* the last field of its record */
    int64_t line; /* where the field starts */
} field;

/* Reads one field at L->p. Returns NULL or a static description of the
 * error (its line is f->line or L->line). */
static const char *lex_field(lexer *L, field *f)
{
    const char *p = L->p, *e = L->e;
    f->line = L->line;
    f->quoted = p < e && *p == '"';
    if (f->quoted) {
        p++;
        f->s = p;
        for (;;) {
            if (p == e) return "unterminated quoted field";
            if (*p == '"') {
                if (p + 1 < e && p[1] == '"') {
                    p += 2;
                    continue;
                }
                break;
            }
            if (*p == '\n' || (*p == '\r' && !(p + 1 < e && p[1] == '\n'))) L->line++;
            p++;
        }
        f->n = (size_t)(p - f->s);
        p++; /* the closing quote */
        if (p < e && *p != L->delim && *p != '\r' && *p != '\n') {
            L->p = p;
            return "text after a closing quote";
        }
    } else {
        f->s = p;
        while (p < e && *p != L->delim && *p != '\r' && *p != '\n') p++;
        f->n = (size_t)(p - f->s);
    }
    f->eor = true;
    if (p < e) {
        if (*p == L->delim) {
            f->eor = false;
            p++;
        } else if (*p == '\r') {
            p++;
            if (p < e && *p == '\n') p++;
            L->line++;
        } else { /* '\n' */
            p++;
            L->line++;
        }
    }
    L->p = p;
    return NULL;
}

/* Unescapes f into buf (cap > 0; always NUL-terminated, cut at cap - 1)
 * and returns the full unescaped length. */
static size_t field_text(const field *f, char *buf, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < f->n; i++) {
        char ch = f->s[i];
        if (f->quoted && ch == '"') i++; /* "" -> " */
        if (k + 1 < cap) buf[k] = ch;
        k++;
    }
    buf[k < cap ? k : cap - 1] = '\0';
    return k;
}

/* The unescaped text of f in c's arena, or NULL (error recorded). */
static char *field_dup(tg_ctx *c, const field *f)
{
    char *s = tg__arena_alloc(c, f->n + 1);
    if (s) field_text(f, s, f->n + 1);
    return s;
}

static bool is_blank(char ch) { return ch == ' ' || ch == '\t'; }

/* Trims spaces and tabs; returns the start, *n the new length. */
static char *trim(char *s, size_t *n)
{
    while (*n && is_blank(*s)) s++, (*n)--;
    while (*n && is_blank(s[*n - 1])) (*n)--;
    s[*n] = '\0';
    return s;
}

#define CELL_MAX 512 /* longest cell read as a number */

static bool parse_number(const field *f, double *v)
{
    char buf[CELL_MAX];
    size_t n = field_text(f, buf, sizeof buf);
    if (n >= sizeof buf) return false;
    char *s = trim(buf, &n);
    if (n == 0 || strlen(s) != n) return false; /* empty or holding a NUL */
    char *end;
    *v = strtod(s, &end);
    return end == s + n;
}

static bool parse_int(const field *f, int64_t *v)
{
    char buf[64];
    size_t n = field_text(f, buf, sizeof buf);
    if (n >= sizeof buf) return false;
    char *s = trim(buf, &n);
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (i == n) return false;
    uint64_t u = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (u > (UINT64_MAX - d) / 10) return false;
        u = u * 10 + d;
    }
    if (neg ? u > (uint64_t)INT64_MAX + 1 : u > (uint64_t)INT64_MAX) return false;
    *v = neg ? (int64_t)(0 - u) : (int64_t)u;
    return true;
}

/* A cell's text for a message: at most 40 bytes, controls as '?'. */
static const char *cell_show(const field *f, char *buf, size_t cap)
{
    size_t n = field_text(f, buf, cap);
    size_t k = strlen(buf);
    for (size_t i = 0; i < k; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) buf[i] = '?';
    if (n >= cap && cap > 4) memcpy(buf + cap - 4, "...", 4);
    return buf;
}

/* Skips blank lines (a record of one empty unquoted field) at L->p. */
static void skip_blank(lexer *L)
{
    while (L->p < L->e) {
        lexer save = *L;
        field f;
        if (lex_field(L, &f) || !(f.eor && f.n == 0 && !f.quoted)) {
            *L = save;
            return;
        }
    }
}

/* ---- class names ------------------------------------------------------------- */

typedef struct {
    const char *name; /* in the arena; NULL: empty slot */
    size_t n;
    int64_t id;
} class_slot;

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3u;
    return h;
}

/* ---- the reader ------------------------------------------------------------------ */

typedef struct {
    tg_ctx *c;
    const char *fn, *what;
    const char *buf;
    size_t len;
    tg_csv_opts o;
} job;

static tg_csv *fail_at(job *j, tg_status st, int64_t line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static tg_csv *fail_at(job *j, tg_status st, int64_t line, const char *fmt, ...)
{
    char m[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    if (line > 0) tg__fail(j->c, st, "%s: %s: line %lld: %s", j->fn, j->what, (long long)line, m);
    else tg__fail(j->c, st, "%s: %s: %s", j->fn, j->what, m);
    return NULL;
}

static const char *col_label(const char *const *names, int64_t col, char *buf, size_t cap)
{
    if (names && names[col]) {
        char tmp[48];
        snprintf(tmp, sizeof tmp, "%s", names[col]);
        if (strlen(names[col]) >= sizeof tmp) memcpy(tmp + sizeof tmp - 4, "...", 4);
        snprintf(buf, cap, "column %lld ('%s')", (long long)col + 1, tmp);
    } else {
        snprintf(buf, cap, "column %lld", (long long)col + 1);
    }
    return buf;
}

static tg_csv *parse(job *j)
{
    tg_ctx *c = j->c;
    const tg_csv_opts *o = &j->o;
    const char *b = j->buf, *e = j->buf + j->len;
    if (j->len >= 3 && memcmp(b, "\xef\xbb\xbf", 3) == 0) b += 3; /* UTF-8 BOM */

    /* ---- the first record: the column count and, with a header, names ---- */
    lexer L = {b, e, o->delimiter, 1};
    field f;
    const char *err;
    skip_blank(&L);
    if (L.p == e) return fail_at(j, TG_ERR_FORMAT, 0, "no records (empty file)");
    lexer first = L;
    int64_t ncols = 0;
    do {
        if ((err = lex_field(&L, &f))) return fail_at(j, TG_ERR_FORMAT, f.line, "%s", err);
        ncols++;
    } while (!f.eor);
    const char **names = NULL; /* the file columns' header names */
    if (o->header) {
        names = tg__arena_alloc(c, (size_t)ncols * sizeof *names);
        if (!names) return NULL;
        lexer H = first;
        for (int64_t k = 0; k < ncols; k++) {
            lex_field(&H, &f);
            if (!(names[k] = field_dup(c, &f))) return NULL;
        }
    }
    int64_t label = -1;
    if (o->label_name) {
        for (int64_t k = 0; k < ncols && label < 0; k++)
            if (strcmp(names[k], o->label_name) == 0) label = k;
        if (label < 0) {
            char tmp[64];
            snprintf(tmp, sizeof tmp, "%s", o->label_name);
            return fail_at(j, TG_ERR_FORMAT, 0, "no column named '%s' in the header", tmp);
        }
    } else if (o->label_col >= 0) {
        if (o->label_col >= ncols)
            return fail_at(j, TG_ERR_FORMAT, 0, "label column %d does not exist (%lld columns)",
                           o->label_col, (long long)ncols);
        label = o->label_col;
    }
    const lexer data = o->header ? L : first;

    /* ---- pass 1: the structure, the row count, the kind of labels ---- */
    L = data;
    int64_t rows = 0;
    bool int_labels = true;
    size_t label_max = 0;
    while (L.p < e) {
        int64_t col = 0, rec_line = L.line;
        bool blank = true;
        for (;;) {
            if ((err = lex_field(&L, &f))) return fail_at(j, TG_ERR_FORMAT, f.line, "%s", err);
            if (blank && f.eor && f.n == 0 && !f.quoted) break;
            blank = false;
            if (col >= ncols)
                return fail_at(j, TG_ERR_FORMAT, rec_line,
                               "more than %lld fields (the first "
                               "record has %lld)",
                               (long long)ncols, (long long)ncols);
            if (col == label) {
                int64_t v;
                if (f.n > label_max) label_max = f.n;
                if (int_labels && !parse_int(&f, &v)) int_labels = false;
            }
            col++;
            if (f.eor) break;
        }
        if (blank) continue;
        if (col < ncols)
            return fail_at(j, TG_ERR_FORMAT, rec_line, "%lld fields, expected %lld", (long long)col,
                           (long long)ncols);
        rows++;
    }

    /* ---- the result ---- */
    tg_csv *t = tg__arena_calloc(c, 1, sizeof *t);
    if (!t) return NULL;
    int64_t cols = ncols - (label >= 0);
    t->rows = rows;
    t->cols = cols;
    t->x = tg__empty(c, j->fn, o->dtype, 2, (int64_t[]){rows, cols});
    if (!t->x) return NULL;
    if (label >= 0) {
        t->y = tg__empty(c, j->fn, TG_I64, 1, (int64_t[]){rows});
        if (!t->y) return NULL;
        if (names) t->label_name = names[label];
    }
    if (names) {
        t->col_names = tg__arena_alloc(c, (size_t)(cols ? cols : 1) * sizeof *t->col_names);
        if (!t->col_names) return NULL;
        for (int64_t k = 0, m = 0; k < ncols; k++)
            if (k != label) t->col_names[m++] = names[k];
    }

    /* class names: a hash table on the heap, freed below */
    class_slot *slots = NULL;
    size_t cap = 0;
    char *scratch = NULL;
    size_t scratch_size = 0;
    if (label >= 0 && !int_labels) {
        cap = 16;
        while (cap < 2 * (size_t)rows + 2) cap *= 2;
        slots = tg__heap_alloc(c, cap * sizeof *slots);
        scratch_size = label_max + 1;
        scratch = tg__heap_alloc(c, scratch_size);
        if (!slots || !scratch) {
            tg__heap_free(c, slots, cap * sizeof *slots);
            tg__heap_free(c, scratch, scratch_size);
            tg__fail(c, TG_ERR_NOMEM, "%s: %s: out of memory for class names", j->fn, j->what);
            return NULL;
        }
        memset(slots, 0, cap * sizeof *slots);
    }

    /* ---- pass 2: the values ---- */
    L = data;
    char *xp = tg__ptr(t->x);
    int64_t *yp = t->y ? (int64_t *)tg__ptr(t->y) : NULL;
    bool f64 = o->dtype == TG_F64;
    int64_t row = 0, n_classes = 0;
    tg_csv *result = t;
    while (L.p < e && result) {
        int64_t col = 0, m = 0;
        bool first = true;
        for (;;) {
            lex_field(&L, &f); /* pass 1 validated the structure */
            if (first && f.eor && f.n == 0 && !f.quoted) break;
            first = false;
            if (col == label) {
                if (int_labels) {
                    parse_int(&f, &yp[row]);
                } else {
                    size_t n = field_text(&f, scratch, scratch_size);
                    size_t h = (size_t)fnv1a(scratch, n) & (cap - 1);
                    while (slots[h].name && (slots[h].n != n || memcmp(slots[h].name, scratch, n)))
                        h = (h + 1) & (cap - 1);
                    if (!slots[h].name) {
                        char *s = tg__arena_alloc(c, n + 1);
                        if (!s) {
                            result = NULL;
                            break;
                        }
                        memcpy(s, scratch, n + 1);
                        slots[h] = (class_slot){s, n, n_classes++};
                    }
                    yp[row] = slots[h].id;
                }
            } else {
                double v;
                if (!parse_number(&f, &v)) {
                    char cb[48], nb[96];
                    result =
                        fail_at(j, TG_ERR_FORMAT, f.line, "%s: '%s' is not a number",
                                col_label(names, col, nb, sizeof nb), cell_show(&f, cb, sizeof cb));
                    break;
                }
                if (f64) ((double *)xp)[row * cols + m] = v;
                else ((float *)xp)[row * cols + m] = (float)v;
                m++;
            }
            col++;
            if (f.eor) break;
        }
        if (!first) row++;
    }
    if (result && n_classes > 0) {
        t->classes = tg__arena_alloc(c, (size_t)n_classes * sizeof *t->classes);
        if (!t->classes) result = NULL;
        for (size_t h = 0; result && h < cap; h++)
            if (slots[h].name) t->classes[slots[h].id] = slots[h].name;
        t->n_classes = n_classes;
    }
    tg__heap_free(c, slots, cap * sizeof *slots);
    tg__heap_free(c, scratch, scratch_size);
    return result;
}

/* Runs parse in the "C" numeric locale, whatever the program set. */
static tg_csv *parse_c_locale(job *j)
{
    locale_t cl = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    locale_t old = cl ? uselocale(cl) : (locale_t)0;
    tg_csv *t = parse(j);
    if (cl) {
        uselocale(old);
        freelocale(cl);
    }
    return t;
}

static bool check_opts(tg_ctx *c, const char *fn, const tg_csv_opts *o)
{
    if (o->delimiter == '"' || o->delimiter == '\r' || o->delimiter == '\n' || o->delimiter == 0) {
        tg__fail(c, TG_ERR_INVALID, "%s: the delimiter cannot be a quote, CR, LF or NUL", fn);
        return false;
    }
    if (o->dtype != TG_F32 && o->dtype != TG_F64) {
        tg__fail(c, TG_ERR_INVALID, "%s: dtype %d is not TG_F32 or TG_F64", fn, (int)o->dtype);
        return false;
    }
    if (o->label_name && !o->header) {
        tg__fail(c, TG_ERR_INVALID, "%s: label_name needs a header", fn);
        return false;
    }
    if (o->label_col < -1) {
        tg__fail(c, TG_ERR_INVALID, "%s: label_col %d is not a column index or -1", fn,
                 o->label_col);
        return false;
    }
    return true;
}

tg_csv *tg_csv_parse(tg_ctx *c, const void *buf, size_t len, const tg_csv_opts *opts)
{
    const char *fn = "tg_csv_parse";
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (!buf && len) {
        tg__fail(c, TG_ERR_INVALID, "%s: NULL buffer", fn);
        return NULL;
    }
    job j = {c, fn, "buffer", buf ? buf : "", len, opts ? *opts : tg_csv_defaults()};
    if (!check_opts(c, fn, &j.o)) return NULL;
    return parse_c_locale(&j);
}

tg_csv *tg_csv_read(tg_ctx *c, const char *path, const tg_csv_opts *opts)
{
    const char *fn = "tg_csv_read";
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (!path) {
        tg__fail(c, TG_ERR_INVALID, "%s: path is NULL", fn);
        return NULL;
    }
    job j = {c, fn, path, NULL, 0, opts ? *opts : tg_csv_defaults()};
    if (!check_opts(c, fn, &j.o)) return NULL;
    char *buf = tg__read_file(c, fn, path, &j.len);
    if (!buf) return NULL;
    j.buf = buf;
    tg_csv *t = parse_c_locale(&j);
    tg__heap_free(c, buf, j.len + 1);
    return t;
}

/* ---- accessors ---------------------------------------------------------------- */

tg_tensor *tg_csv_features(const tg_csv *t) { return t ? t->x : NULL; }
tg_tensor *tg_csv_labels(const tg_csv *t) { return t ? t->y : NULL; }
int64_t tg_csv_rows(const tg_csv *t) { return t ? t->rows : 0; }
int64_t tg_csv_cols(const tg_csv *t) { return t ? t->cols : 0; }

const char *tg_csv_column_name(const tg_csv *t, int64_t i)
{
    return t && t->col_names && i >= 0 && i < t->cols ? t->col_names[i] : NULL;
}

const char *tg_csv_label_column_name(const tg_csv *t) { return t ? t->label_name : NULL; }
int64_t tg_csv_class_count(const tg_csv *t) { return t ? t->n_classes : 0; }

const char *tg_csv_class_name(const tg_csv *t, int64_t k)
{
    return t && k >= 0 && k < t->n_classes ? t->classes[k] : NULL;
}
