/*
 * npy.c - single tensors as NumPy .npy files (format 1.0 written; 1.0,
 * 2.0 and 3.0 read), little-endian '<f4', '<f8' and '<i8', C order.
 *
 * The header is a Python dict literal; the reader accepts exactly the
 * three keys NumPy writes ('descr', 'fortran_order', 'shape'), in any
 * order, and checks that the data that follows has exactly the size the
 * shape says.
 */
#include "io_impl.h"

#include <ctype.h>
#include <string.h>

#define MAX_NPY_HEADER (1u << 20)

static const char *descr_of(tg_dtype dt)
{
    return dt == TG_F32 ? "<f4" : dt == TG_F64 ? "<f8" : "<i8";
}

tg_status tg_npy_write(tg_ctx *c, const char *path, const tg_tensor *t)
{
    const char *fn = "tg_npy_write";
    if (!c) return TG_ERR_INVALID;
    if (c->status != TG_OK) return c->status;
    if (!path || !t || !tg__valid_dtype(t->dtype))
        return tg__fail(c, TG_ERR_INVALID, "%s: NULL path or tensor", fn);
    /* NumPy's tuple spelling: (), (3,), (2, 3) */
    char shape[256] = "";
    size_t sl = 0;
    for (int i = 0; i < t->ndim; i++)
        sl += (size_t)snprintf(shape + sl, sizeof shape - sl, "%s%lld", i ? ", " : "",
                               (long long)t->shape[i]);
    if (t->ndim == 1) snprintf(shape + sl, sizeof shape - sl, ",");
    char dict[512];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                       descr_of(t->dtype), shape);
    /* pad with spaces and a newline so magic + header is a multiple of 64 */
    size_t total = 10 + (size_t)len + 1, padded = (total + 63) & ~(size_t)63;
    char head[640];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    size_t hlen = padded - 10;
    head[8] = (char)(hlen & 0xff);
    head[9] = (char)(hlen >> 8);
    memcpy(head + 10, dict, (size_t)len);
    memset(head + 10 + len, ' ', padded - 10 - (size_t)len - 1);
    head[padded - 1] = '\n';
    tg__afile a;
    tg_status st = tg__afile_open(&a, c, fn, path);
    if (!st) st = tg__afile_write(&a, head, padded);
    if (!st) st = tg__afile_write_tensor(&a, t);
    if (!st) return tg__afile_commit(&a);
    if (a.tmp) tg__afile_abort(&a);
    return st;
}

/* ---- reading ------------------------------------------------------------ */

/* Skips spaces in [p, e). */
static const char *skip(const char *p, const char *e)
{
    while (p < e && isspace((unsigned char)*p)) p++;
    return p;
}

/* Matches the literal s at p; advances past it. */
static bool lit(const char **p, const char *e, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(e - *p) < n || memcmp(*p, s, n) != 0) return false;
    *p += n;
    return true;
}

typedef struct {
    tg_dtype dt;
    bool fortran;
    int ndim;
    int64_t shape[TG_MAX_DIMS];
    bool has_descr, has_order, has_shape;
} npy_head;

/* Parses "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }". */
static const char *parse_dict(const char *p, const char *e, npy_head *h)
{
    p = skip(p, e);
    if (!lit(&p, e, "{")) return "the header is not a dict";
    for (;;) {
        p = skip(p, e);
        if (lit(&p, e, "}")) break;
        if (lit(&p, e, "'descr'")) {
            p = skip(p, e);
            if (!lit(&p, e, ":")) return "':' expected after 'descr'";
            p = skip(p, e);
            if (lit(&p, e, "'<f4'")) h->dt = TG_F32;
            else if (lit(&p, e, "'<f8'")) h->dt = TG_F64;
            else if (lit(&p, e, "'<i8'")) h->dt = TG_I64;
            else return "descr is not '<f4', '<f8' or '<i8'";
            h->has_descr = true;
        } else if (lit(&p, e, "'fortran_order'")) {
            p = skip(p, e);
            if (!lit(&p, e, ":")) return "':' expected after 'fortran_order'";
            p = skip(p, e);
            if (lit(&p, e, "False")) h->fortran = false;
            else if (lit(&p, e, "True")) h->fortran = true;
            else return "fortran_order is not True or False";
            h->has_order = true;
        } else if (lit(&p, e, "'shape'")) {
            p = skip(p, e);
            if (!lit(&p, e, ":")) return "':' expected after 'shape'";
            p = skip(p, e);
            if (!lit(&p, e, "(")) return "shape is not a tuple";
            h->ndim = 0;
            for (;;) {
                p = skip(p, e);
                if (lit(&p, e, ")")) break;
                if (h->ndim == TG_MAX_DIMS) return "shape has more than 8 dims";
                int64_t v = 0;
                const char *start = p;
                while (p < e && isdigit((unsigned char)*p)) {
                    if (v > (INT64_MAX - 9) / 10) return "a shape entry is too large";
                    v = v * 10 + (*p++ - '0');
                }
                if (p == start) return "a shape entry is not a non-negative integer";
                h->shape[h->ndim++] = v;
                p = skip(p, e);
                if (lit(&p, e, ",")) continue;
                if (lit(&p, e, ")")) break;
                return "',' or ')' expected in shape";
            }
            h->has_shape = true;
        } else {
            return "unknown key in the header";
        }
        p = skip(p, e);
        if (lit(&p, e, ",")) continue;
        p = skip(p, e);
        if (lit(&p, e, "}")) break;
        return "',' or '}' expected";
    }
    if (!h->has_descr || !h->has_order || !h->has_shape)
        return "the header lacks descr, fortran_order or shape";
    return NULL;
}

static tg_tensor *parse(tg_ctx *c, const char *fn, const char *what, const unsigned char *b,
                        size_t len)
{
    if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0) {
        tg__fail(c, TG_ERR_FORMAT, "%s: %s: not a .npy file (bad magic)", fn, what);
        return NULL;
    }
    unsigned major = b[6];
    size_t hlen, start;
    if (major == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        start = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) {
            tg__fail(c, TG_ERR_FORMAT, "%s: %s: truncated header", fn, what);
            return NULL;
        }
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        start = 12;
    } else {
        tg__fail(c, TG_ERR_FORMAT, "%s: %s: format version %u.%u is not 1, 2 or 3", fn, what,
                 major, b[7]);
        return NULL;
    }
    if (hlen > MAX_NPY_HEADER || hlen > len - start) {
        tg__fail(c, TG_ERR_FORMAT, "%s: %s: header length %zu does not fit in %zu bytes", fn,
                 what, hlen, len);
        return NULL;
    }
    npy_head h = {0};
    const char *err = parse_dict((const char *)b + start, (const char *)b + start + hlen, &h);
    if (err) {
        tg__fail(c, TG_ERR_FORMAT, "%s: %s: %s", fn, what, err);
        return NULL;
    }
    if (h.fortran) {
        tg__fail(c, TG_ERR_FORMAT, "%s: %s: fortran_order True is not supported (save a C-order "
                                   "array: numpy.ascontiguousarray)", fn, what);
        return NULL;
    }
    int64_t numel;
    if (tg__check_shape(c, fn, h.ndim, h.shape, &numel)) return NULL;
    size_t data = len - start - hlen, need = (size_t)numel * tg__esize(h.dt);
    if (data != need) {
        tg__fail(c, TG_ERR_FORMAT, "%s: %s: %zu bytes of data for a shape needing %zu%s", fn, what,
                 data, need, data < need ? " (truncated)" : "");
        return NULL;
    }
    tg_tensor *t = tg__empty(c, fn, h.dt, h.ndim, h.shape);
    if (t && need) memcpy(tg__ptr(t), b + start + hlen, need);
    return t;
}

tg_tensor *tg_npy_parse(tg_ctx *c, const void *buf, size_t len)
{
    const char *fn = "tg_npy_parse";
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (!buf && len) {
        tg__fail(c, TG_ERR_INVALID, "%s: NULL buffer", fn);
        return NULL;
    }
    return parse(c, fn, "buffer", buf ? buf : "", len);
}

tg_tensor *tg_npy_read(tg_ctx *c, const char *path)
{
    const char *fn = "tg_npy_read";
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (!path) {
        tg__fail(c, TG_ERR_INVALID, "%s: path is NULL", fn);
        return NULL;
    }
    size_t len = 0;
    char *buf = tg__read_file(c, fn, path, &len);
    if (!buf) return NULL;
    tg_tensor *t = parse(c, fn, path, (const unsigned char *)buf, len);
    tg__heap_free(c, buf, len + 1);
    return t;
}
