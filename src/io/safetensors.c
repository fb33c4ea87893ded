/*
 * safetensors.c - reading and writing safetensors checkpoints (see io.h).
 *
 * The JSON header is built and parsed with cJSON. Reading trusts nothing:
 * the header length must fit the file, the header must be a JSON object of
 * well-formed entries, every shape and offset an exact non-negative
 * integer, every byte count match its dtype and shape without overflow,
 * and the entries' offsets must tile the data section exactly (no gap, no
 * overlap, nothing left over), as the format's own reader requires.
 */
#include "io_impl.h"

#include <cJSON.h>
#include <math.h>
#include <string.h>

#define MAX_HEADER ((uint64_t)100 << 20) /* the reference reader's limit */

struct tg_safetensors {
    int n;
    const char **names;
    tg_tensor **tensors;
    int n_meta;
    const char **meta_keys, **meta_values;
};

static const char *st_dtype(tg_dtype dt)
{
    return dt == TG_F32 ? "F32" : dt == TG_F64 ? "F64" : "I64";
}

/* ---- writing ------------------------------------------------------------ */

static cJSON *shape_json(const tg_tensor *t)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < t->ndim; i++) {
        cJSON *v = cJSON_CreateNumber((double)t->shape[i]);
        if (!v || !cJSON_AddItemToArray(a, v)) {
            cJSON_Delete(v);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

/* The header as JSON text (cJSON's malloc), or NULL. */
static char *build_header(int n, tg_tensor *const *t, const char *const *names, int n_meta,
                          const char *const *keys, const char *const *values)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    bool ok = true;
    if (n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        ok = meta != NULL;
        for (int i = 0; ok && i < n_meta; i++)
            ok = cJSON_AddStringToObject(meta, keys[i], values[i]) != NULL;
    }
    uint64_t off = 0;
    for (int i = 0; ok && i < n; i++) {
        uint64_t bytes = (uint64_t)tg__numel(t[i]->ndim, t[i]->shape) * tg__esize(t[i]->dtype);
        cJSON *e = cJSON_AddObjectToObject(root, names[i]);
        cJSON *shape = shape_json(t[i]);
        cJSON *offs = cJSON_CreateArray();
        cJSON *b = cJSON_CreateNumber((double)off), *en = cJSON_CreateNumber((double)(off + bytes));
        ok = e && shape && offs && b && en && cJSON_AddStringToObject(e, "dtype", st_dtype(t[i]->dtype)) &&
             cJSON_AddItemToObject(e, "shape", shape);
        if (!ok) {
            cJSON_Delete(shape);
            cJSON_Delete(offs);
            cJSON_Delete(b);
            cJSON_Delete(en);
            break;
        }
        cJSON_AddItemToArray(offs, b);
        cJSON_AddItemToArray(offs, en);
        ok = cJSON_AddItemToObject(e, "data_offsets", offs);
        off += bytes;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

tg_status tg_safetensors_write(tg_ctx *c, const char *path, int n, tg_tensor *const *tensors,
                               const char *const *names, int n_meta,
                               const char *const *meta_keys, const char *const *meta_values)
{
    const char *fn = "tg_safetensors_write";
    if (!c) return TG_ERR_INVALID;
    if (c->status != TG_OK) return c->status;
    if (!path || n < 0 || (n > 0 && !tensors) || n_meta < 0 ||
        (n_meta > 0 && (!meta_keys || !meta_values)))
        return tg__fail(c, TG_ERR_INVALID, "%s: NULL path, tensors or metadata, or a negative count",
                        fn);
    const char *nm[4096];
    const char **name = n <= 4096 ? nm : tg__heap_alloc(c, (size_t)n * sizeof *name);
    if (!name) return tg__fail(c, TG_ERR_NOMEM, "%s: out of memory", fn);
    tg_status st = TG_OK;
    for (int i = 0; i < n && !st; i++) {
        if (!tensors[i] || !tg__valid_dtype(tensors[i]->dtype)) {
            st = tg__fail(c, TG_ERR_INVALID, "%s: tensor %d is NULL or invalid", fn, i);
            break;
        }
        name[i] = names ? names[i] : tensors[i]->name;
        if (!name[i] || !name[i][0] || strcmp(name[i], "__metadata__") == 0)
            st = tg__fail(c, TG_ERR_INVALID, "%s: tensor %d has %s name", fn, i,
                          !name[i] ? "no" : !name[i][0] ? "an empty" : "the reserved");
        for (int j = 0; j < i && !st; j++)
            if (strcmp(name[i], name[j]) == 0)
                st = tg__fail(c, TG_ERR_INVALID, "%s: name '%s' used twice (tensors %d and %d)", fn,
                              name[i], j, i);
    }
    for (int i = 0; i < n_meta && !st; i++)
        if (!meta_keys[i] || !meta_values[i] || strcmp(meta_keys[i], "__metadata__") == 0)
            st = tg__fail(c, TG_ERR_INVALID, "%s: metadata entry %d is NULL or reserved", fn, i);
    char *header = NULL;
    if (!st && !(header = build_header(n, tensors, name, n_meta, meta_keys, meta_values)))
        st = tg__fail(c, TG_ERR_NOMEM, "%s: out of memory building the header", fn);
    if (!st) {
        /* pad the header with spaces to a multiple of 8, as the reference writer does */
        size_t hl = strlen(header), padded = (hl + 7) & ~(size_t)7;
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
        tg__afile a;
        st = tg__afile_open(&a, c, fn, path);
        if (!st) st = tg__afile_write(&a, len8, 8);
        if (!st) st = tg__afile_write(&a, header, hl);
        if (!st) st = tg__afile_write(&a, "        ", padded - hl);
        for (int i = 0; i < n && !st; i++) st = tg__afile_write_tensor(&a, tensors[i]);
        if (!st) st = tg__afile_commit(&a);
        else if (a.tmp) tg__afile_abort(&a);
    }
    cJSON_free(header);
    if (name != nm) tg__heap_free(c, name, (size_t)n * sizeof *name);
    return st;
}

/* ---- reading ------------------------------------------------------------ */

typedef struct {
    const char *name;
    tg_dtype dt;
    int ndim;
    int64_t shape[TG_MAX_DIMS];
    uint64_t begin, end;
} entry;

/* An exact non-negative integer below 2^53 from a JSON number. */
static bool json_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d) return false;
    *out = (uint64_t)d;
    return true;
}

static char *arena_strdup(tg_ctx *c, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = tg__arena_alloc(c, n);
    if (p) memcpy(p, s, n);
    return p;
}

static int cmp_begin(const void *a, const void *b)
{
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Records TG_ERR_FORMAT on c; returns NULL or false for the caller to pass on. */
#define BAD(...) (tg__fail(c, TG_ERR_FORMAT, __VA_ARGS__), (void *)0)
#define BAD_ENTRY(...) (tg__fail(c, TG_ERR_FORMAT, __VA_ARGS__) == TG_OK)

/* Parses one tensor entry into e; false with the error on c. */
static bool parse_entry(tg_ctx *c, const char *fn, const cJSON *item, entry *e)
{
    const char *k = item->string;
    if (!cJSON_IsObject(item)) return BAD_ENTRY("%s: entry '%s' is not an object", fn, k);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of))
        return BAD_ENTRY("%s: entry '%s' needs a string dtype and array shape and data_offsets", fn, k);
    const char *d = dt->valuestring;
    if (strcmp(d, "F32") == 0) e->dt = TG_F32;
    else if (strcmp(d, "F64") == 0) e->dt = TG_F64;
    else if (strcmp(d, "I64") == 0) e->dt = TG_I64;
    else {
        tg__fail(c, TG_ERR_DTYPE, "%s: entry '%s' has dtype %s; tapegrad reads F32, F64 and I64",
                 fn, k, d);
        return false;
    }
    int nd = cJSON_GetArraySize(sh);
    if (nd > TG_MAX_DIMS) return BAD_ENTRY("%s: entry '%s' has %d dims (at most %d)", fn, k, nd, TG_MAX_DIMS);
    e->ndim = nd;
    uint64_t numel = 1;
    bool overflow = false, zero = false;
    for (int i = 0; i < nd; i++) {
        uint64_t v;
        if (!json_u64(cJSON_GetArrayItem(sh, i), &v))
            return BAD_ENTRY("%s: entry '%s': shape[%d] is not a non-negative integer", fn, k, i);
        e->shape[i] = (int64_t)v;
        zero = zero || v == 0;
        if (v && numel > UINT64_MAX / 8 / v) overflow = true;
        else numel *= v;
    }
    if (zero) numel = 0;
    else if (overflow) return BAD_ENTRY("%s: entry '%s': shape overflows", fn, k);
    if (cJSON_GetArraySize(of) != 2 || !json_u64(cJSON_GetArrayItem(of, 0), &e->begin) ||
        !json_u64(cJSON_GetArrayItem(of, 1), &e->end) || e->end < e->begin)
        return BAD_ENTRY("%s: entry '%s': data_offsets must be [begin, end] with begin <= end", fn, k);
    uint64_t bytes = numel * tg__esize(e->dt);
    if (e->end - e->begin != bytes)
        return BAD_ENTRY("%s: entry '%s': %llu bytes of data for a %s tensor of %llu elements", fn, k,
                   (unsigned long long)(e->end - e->begin), d, (unsigned long long)numel);
    e->name = k;
    return true;
}

static tg_safetensors *parse(tg_ctx *c, const char *fn, const char *what, const unsigned char *buf,
                             size_t len)
{
    if (len < 8) return BAD("%s: %s: %zu bytes is too short for a safetensors file", fn, what, len);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)buf[i] << (8 * i);
    if (hl > MAX_HEADER || hl > len - 8)
        return BAD("%s: %s: header length %llu does not fit in the file's %zu bytes "
                   "(truncated or not a safetensors file)",
                   fn, what, (unsigned long long)hl, len);
    if (hl < 2) return BAD("%s: %s: empty header", fn, what);
    cJSON *root = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hl);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return BAD("%s: %s: the header is not a JSON object", fn, what);
    }
    const unsigned char *data = buf + 8 + hl;
    uint64_t data_len = len - 8 - hl;
    int count = cJSON_GetArraySize(root);
    tg_safetensors *f = tg__arena_calloc(c, 1, sizeof *f);
    entry *es = tg__arena_calloc(c, (size_t)(count ? count : 1), sizeof *es);
    entry **order = tg__arena_calloc(c, (size_t)(count ? count : 1), sizeof *order);
    f = (f && es && order) ? f : NULL;
    int n = 0;
    const cJSON *meta = NULL;
    for (const cJSON *it = root->child; f && it; it = it->next) {
        if (!it->string) f = BAD("%s: %s: header entry without a name", fn, what);
        else if (strcmp(it->string, "__metadata__") == 0) {
            if (meta || !cJSON_IsObject(it)) f = BAD("%s: %s: bad or repeated __metadata__", fn, what);
            meta = it;
        } else if (!parse_entry(c, fn, it, &es[n])) {
            f = NULL;
        } else {
            for (int j = 0; j < n && f; j++)
                if (strcmp(es[j].name, it->string) == 0)
                    f = BAD("%s: %s: tensor '%s' appears twice", fn, what, it->string);
            order[n] = &es[n];
            n++;
        }
    }
    /* the offsets must tile the data exactly */
    if (f) qsort(order, (size_t)n, sizeof *order, cmp_begin);
    uint64_t at = 0;
    for (int i = 0; f && i < n; i++) {
        if (order[i]->begin != at)
            f = BAD("%s: %s: tensor '%s' starts at byte %llu of the data, expected %llu "
                    "(offsets must tile the data with no gap or overlap)",
                    fn, what, order[i]->name, (unsigned long long)order[i]->begin,
                    (unsigned long long)at);
        else at = order[i]->end;
    }
    if (f && at != data_len)
        f = BAD("%s: %s: the tensors cover %llu bytes of data but the file has %llu "
                "(truncated or trailing bytes)",
                fn, what, (unsigned long long)at, (unsigned long long)data_len);
    if (f) {
        f->names = tg__arena_calloc(c, (size_t)(n ? n : 1), sizeof *f->names);
        f->tensors = tg__arena_calloc(c, (size_t)(n ? n : 1), sizeof *f->tensors);
        if (!f->names || !f->tensors) f = NULL;
    }
    for (int i = 0; f && i < n; i++) {
        const entry *e = order[i];
        tg_tensor *t = tg__empty(c, fn, e->dt, e->ndim, e->shape);
        const char *name = arena_strdup(c, e->name);
        if (!t || !name) {
            f = NULL;
            break;
        }
        if (e->end > e->begin) memcpy(tg__ptr(t), data + e->begin, (size_t)(e->end - e->begin));
        t->name = name;
        f->names[i] = name;
        f->tensors[i] = t;
        f->n = i + 1;
    }
    if (f && meta) {
        int m = cJSON_GetArraySize(meta);
        f->meta_keys = tg__arena_calloc(c, (size_t)(m ? m : 1), sizeof *f->meta_keys);
        f->meta_values = tg__arena_calloc(c, (size_t)(m ? m : 1), sizeof *f->meta_values);
        if (!f->meta_keys || !f->meta_values) f = NULL;
        for (const cJSON *it = meta->child; f && it; it = it->next) {
            if (!cJSON_IsString(it) || !it->string) {
                f = BAD("%s: %s: metadata value '%s' is not a string", fn, what,
                        it->string ? it->string : "?");
                break;
            }
            const char *k = arena_strdup(c, it->string), *v = arena_strdup(c, it->valuestring);
            if (!k || !v) f = NULL;
            else {
                f->meta_keys[f->n_meta] = k;
                f->meta_values[f->n_meta++] = v;
            }
        }
    }
    cJSON_Delete(root);
    if (!f && tg__ok(c)) tg__fail(c, TG_ERR_NOMEM, "%s: out of memory", fn);
    return f;
}

tg_safetensors *tg_safetensors_parse(tg_ctx *c, const void *buf, size_t len)
{
    const char *fn = "tg_safetensors_parse";
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (!buf && len) return BAD("%s: NULL buffer", fn);
    return parse(c, fn, "buffer", buf ? buf : "", len);
}

tg_safetensors *tg_safetensors_read(tg_ctx *c, const char *path)
{
    const char *fn = "tg_safetensors_read";
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (!path) {
        tg__fail(c, TG_ERR_INVALID, "%s: path is NULL", fn);
        return NULL;
    }
    size_t len = 0;
    char *buf = tg__read_file(c, fn, path, &len);
    if (!buf) return NULL;
    tg_safetensors *f = parse(c, fn, path, (const unsigned char *)buf, len);
    tg__heap_free(c, buf, len + 1);
    return f;
}

int tg_safetensors_count(const tg_safetensors *f) { return f ? f->n : 0; }

const char *tg_safetensors_name(const tg_safetensors *f, int i)
{
    return f && i >= 0 && i < f->n ? f->names[i] : NULL;
}

tg_tensor *tg_safetensors_tensor(const tg_safetensors *f, int i)
{
    return f && i >= 0 && i < f->n ? f->tensors[i] : NULL;
}

tg_tensor *tg_safetensors_find(const tg_safetensors *f, const char *name)
{
    for (int i = 0; f && name && i < f->n; i++)
        if (strcmp(f->names[i], name) == 0) return f->tensors[i];
    return NULL;
}

int tg_safetensors_meta_count(const tg_safetensors *f) { return f ? f->n_meta : 0; }

const char *tg_safetensors_meta_key(const tg_safetensors *f, int i)
{
    return f && i >= 0 && i < f->n_meta ? f->meta_keys[i] : NULL;
}

const char *tg_safetensors_meta(const tg_safetensors *f, const char *key)
{
    for (int i = 0; f && key && i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}
