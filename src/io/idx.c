/*
 * idx.c - IDX files (MNIST, Fashion-MNIST), plain or gzipped (see data.h).
 *
 * The input is read through a small byte source that is either the
 * buffer itself or a zlib inflate stream over it, so the same parser
 * serves both. Nothing in the header is trusted: the dims' product is
 * computed with overflow checks, the data must be exactly as long as the
 * dims say, and a gzip stream is inflated only into a buffer of the size
 * the header implies, after checking that size against the limit and
 * against what deflate could at most have produced from the file's bytes
 * (1032:1), so a small hostile file cannot make us allocate gigabytes.
 * zlib allocates through the context's hook, so allocation-failure tests
 * reach it too.
 */
#include "io_impl.h"
#include "tapegrad/data.h"

#include <string.h>
#include <zlib.h>

#define IDX_DEFAULT_MAX ((uint64_t)4 << 30)
#define DEFLATE_MAX_RATIO 1032u    /* deflate's largest possible expansion */
#define GZ_FIRST ((size_t)1 << 16) /* first inflate buffer; doubles as data arrives */

tg_idx_opts tg_idx_defaults(void)
{
    tg_idx_opts o;
    memset(&o, 0, sizeof o);
    o.dtype = TG_IDX_AUTO;
    o.scale = false;
    o.max_bytes = 0;
    o.max_items = 0;
    return o;
}

/* ---- element types ------------------------------------------------------ */

enum {
    IDX_U8 = 0x08,
    IDX_I8 = 0x09,
    IDX_I16 = 0x0B,
    IDX_I32 = 0x0C,
    IDX_F32 = 0x0D,
    IDX_F64 = 0x0E
};

static size_t idx_esize(int type)
{
    switch (type) {
    case IDX_U8:
    case IDX_I8: return 1;
    case IDX_I16: return 2;
    case IDX_I32:
    case IDX_F32: return 4;
    case IDX_F64: return 8;
    default: return 0;
    }
}

static const char *idx_type_name(int type)
{
    switch (type) {
    case IDX_U8: return "u8";
    case IDX_I8: return "i8";
    case IDX_I16: return "i16";
    case IDX_I32: return "i32";
    case IDX_F32: return "f32";
    default: return "f64";
    }
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t be64(const unsigned char *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

/* ---- the byte source ------------------------------------------------------ */

typedef struct {
    tg_ctx *c;
    const char *fn, *what;
    const unsigned char *buf;
    size_t len, pos; /* plain: next unread byte */
    bool gz, z_live;
    z_stream z;
} source;

/* zlib's allocator through the context's hook; the block's size is kept in
 * front of it because the hook needs it to free. */
static voidpf z_alloc(voidpf ud, uInt items, uInt size)
{
    tg_ctx *c = ud;
    if (size && items > (SIZE_MAX - 16) / size) return Z_NULL;
    size_t n = (size_t)items * size + 16;
    unsigned char *p = tg__heap_alloc(c, n);
    if (!p) return Z_NULL;
    memcpy(p, &n, sizeof n);
    return p + 16;
}

static void z_free(voidpf ud, voidpf addr)
{
    if (!addr) return;
    unsigned char *p = (unsigned char *)addr - 16;
    size_t n;
    memcpy(&n, p, sizeof n);
    tg__heap_free(ud, p, n);
}

static tg_status src_fail(source *s, tg_status st, const char *what)
{
    return tg__fail(s->c, st, "%s: %s: %s", s->fn, s->what, what);
}

static tg_status src_open(source *s)
{
    s->gz = s->len >= 2 && s->buf[0] == 0x1f && s->buf[1] == 0x8b;
    if (!s->gz) return TG_OK;
    memset(&s->z, 0, sizeof s->z);
    s->z.zalloc = z_alloc;
    s->z.zfree = z_free;
    s->z.opaque = s->c;
    int r = inflateInit2(&s->z, 16 + MAX_WBITS); /* gzip wrapper only */
    if (r != Z_OK)
        return src_fail(s, r == Z_MEM_ERROR ? TG_ERR_NOMEM : TG_ERR_FORMAT,
                        "cannot start inflating (out of memory)");
    s->z_live = true;
    s->z.next_in = (Bytef *)(uintptr_t)s->buf; /* zlib does not write through it */
    s->z.avail_in = 0;
    s->pos = 0;
    return TG_OK;
}

static void src_close(source *s)
{
    if (s->z_live) inflateEnd(&s->z);
    s->z_live = false;
}

/* Feeds zlib the next piece of input (avail_in is a uInt). */
static void z_feed(source *s)
{
    if (s->z.avail_in == 0 && s->pos < s->len) {
        size_t k = s->len - s->pos;
        if (k > (size_t)1 << 30) k = (size_t)1 << 30;
        s->z.next_in = (Bytef *)(uintptr_t)(s->buf + s->pos);
        s->z.avail_in = (uInt)k;
        s->pos += k;
    }
}

static size_t z_left(const source *s) { return s->len - s->pos + s->z.avail_in; }

/* Byte k of the input zlib has not consumed yet (k < z_left). */
static unsigned char z_peek(const source *s, size_t k)
{
    return k < s->z.avail_in ? s->z.next_in[k] : s->buf[s->pos + (k - s->z.avail_in)];
}

/*
 * Inflates up to n bytes into dst; *got receives how many (fewer only at
 * the end of the data). Errors (corrupt or truncated gzip, trailing
 * garbage after a member, out of memory) are recorded and returned.
 */
static tg_status z_read(source *s, unsigned char *dst, size_t n, size_t *got)
{
    size_t done = 0;
    char m[160];
    while (done < n) {
        z_feed(s);
        size_t in_before = z_left(s);
        size_t want = n - done;
        if (want > (size_t)1 << 30) want = (size_t)1 << 30;
        s->z.next_out = dst + done;
        s->z.avail_out = (uInt)want;
        int r = inflate(&s->z, Z_NO_FLUSH);
        size_t made = want - s->z.avail_out;
        done += made;
        if (r == Z_STREAM_END) {
            if (z_left(s) == 0) break; /* the end of the data */
            /* another gzip member follows (gzip -c a b > ab), or garbage */
            if (z_left(s) >= 2 && z_peek(s, 0) == 0x1f && z_peek(s, 1) == 0x8b) {
                if (inflateReset(&s->z) != Z_OK)
                    return src_fail(s, TG_ERR_FORMAT, "corrupt gzip data");
                continue;
            }
            snprintf(m, sizeof m, "%zu bytes of trailing garbage after the gzip data", z_left(s));
            return src_fail(s, TG_ERR_FORMAT, m);
        }
        if (r == Z_MEM_ERROR) return src_fail(s, TG_ERR_NOMEM, "out of memory inflating");
        if (r == Z_DATA_ERROR || r == Z_NEED_DICT || r == Z_STREAM_ERROR) {
            snprintf(m, sizeof m, "corrupt gzip data (zlib: %s)",
                     s->z.msg ? s->z.msg : "invalid stream");
            return src_fail(s, TG_ERR_FORMAT, m);
        }
        if (made == 0 && z_left(s) == in_before) /* no progress: input ran out in a member */
            return src_fail(s, TG_ERR_FORMAT,
                            in_before == 0 ? "truncated gzip data"
                                           : "corrupt gzip data (no progress)");
    }
    *got = done;
    return TG_OK;
}

/* Reads exactly n bytes (into dst) or reports a truncation with what
 * was being read. */
static tg_status src_read(source *s, unsigned char *dst, size_t n, const char *reading)
{
    size_t got;
    if (s->gz) {
        if (z_read(s, dst, n, &got)) return s->c->status;
    } else {
        got = s->len - s->pos < n ? s->len - s->pos : n;
        memcpy(dst, s->buf + s->pos, got);
        s->pos += got;
    }
    if (got < n) {
        char m[160];
        snprintf(m, sizeof m, "truncated %s (%zu of %zu bytes)", reading, got, n);
        return src_fail(s, TG_ERR_FORMAT, m);
    }
    return TG_OK;
}

/* After the data: the stream must end here, verified to the gzip trailer. */
static tg_status src_end(source *s)
{
    if (!s->gz) {
        if (s->pos == s->len) return TG_OK;
        char m[96];
        snprintf(m, sizeof m, "%zu trailing bytes after the data", s->len - s->pos);
        return src_fail(s, TG_ERR_FORMAT, m);
    }
    unsigned char extra[64];
    size_t got;
    if (z_read(s, extra, sizeof extra, &got)) return s->c->status;
    if (got > 0) {
        char m[128];
        snprintf(m, sizeof m,
                 "trailing bytes after the data (the gzip stream holds more than "
                 "the dims imply)");
        return src_fail(s, TG_ERR_FORMAT, m);
    }
    return TG_OK;
}

/* ---- conversion ------------------------------------------------------------ */

/* Reads element i of raw (big-endian, IDX type) as a double. */
static double elem_f(const unsigned char *raw, int type, int64_t i)
{
    switch (type) {
    case IDX_U8: return raw[i];
    case IDX_I8: return (int8_t)raw[i];
    case IDX_I16: return (int16_t)(uint16_t)(raw[2 * i] << 8 | raw[2 * i + 1]);
    case IDX_I32: return (int32_t)be32(raw + 4 * i);
    case IDX_F32: {
        uint32_t u = be32(raw + 4 * i);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    default: {
        uint64_t u = be64(raw + 8 * i);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    }
}

static int64_t elem_i(const unsigned char *raw, int type, int64_t i)
{
    switch (type) {
    case IDX_U8: return raw[i];
    case IDX_I8: return (int8_t)raw[i];
    case IDX_I16: return (int16_t)(uint16_t)(raw[2 * i] << 8 | raw[2 * i + 1]);
    default: return (int32_t)be32(raw + 4 * i);
    }
}

static void convert(tg_tensor *t, const unsigned char *raw, int type, int64_t n, bool scale)
{
    char *p = tg__ptr(t);
    bool sc = scale && type == IDX_U8;
    if (t->dtype == TG_F32) {
        float *d = (float *)p;
        if (sc)
            for (int64_t i = 0; i < n; i++) d[i] = (float)raw[i] / 255.0f;
        else if (type == IDX_U8)
            for (int64_t i = 0; i < n; i++) d[i] = (float)raw[i];
        else
            for (int64_t i = 0; i < n; i++) d[i] = (float)elem_f(raw, type, i);
    } else if (t->dtype == TG_F64) {
        double *d = (double *)p;
        for (int64_t i = 0; i < n; i++) d[i] = sc ? raw[i] / 255.0 : elem_f(raw, type, i);
    } else {
        int64_t *d = (int64_t *)p;
        for (int64_t i = 0; i < n; i++) d[i] = elem_i(raw, type, i);
    }
}

/* ---- the parser -------------------------------------------------------------- */

static tg_tensor *parse(tg_ctx *c, const char *fn, const char *what, const unsigned char *b,
                        size_t len, const tg_idx_opts *opts)
{
    tg_idx_opts o = opts ? *opts : tg_idx_defaults();
    if (o.dtype != TG_IDX_AUTO && o.dtype != TG_F32 && o.dtype != TG_F64 && o.dtype != TG_I64) {
        tg__fail(c, TG_ERR_INVALID, "%s: %s: dtype %d is not TG_F32, TG_F64, TG_I64 or TG_IDX_AUTO",
                 fn, what, o.dtype);
        return NULL;
    }
    if (o.max_items < 0) {
        tg__fail(c, TG_ERR_INVALID, "%s: %s: max_items %lld is negative", fn, what,
                 (long long)o.max_items);
        return NULL;
    }
    uint64_t limit = o.max_bytes ? o.max_bytes : IDX_DEFAULT_MAX;
    source s = {.c = c, .fn = fn, .what = what, .buf = b, .len = len};
    if (src_open(&s)) return NULL;

    tg_tensor *t = NULL;
    unsigned char *raw = NULL;
    size_t raw_size = 0;
    unsigned char head[4 + 4 * 255];
    char m[512];
    if (src_read(&s, head, 4, "header")) goto done;
    if (head[0] != 0 || head[1] != 0) {
        snprintf(m, sizeof m, "bad magic %02x %02x %02x %02x (not an IDX file)", head[0], head[1],
                 head[2], head[3]);
        src_fail(&s, TG_ERR_FORMAT, m);
        goto done;
    }
    int type = head[2], ndim = head[3];
    size_t es = idx_esize(type);
    if (!es) {
        snprintf(m, sizeof m, "unknown element type 0x%02x (magic %02x %02x %02x %02x)", type,
                 head[0], head[1], head[2], head[3]);
        src_fail(&s, TG_ERR_FORMAT, m);
        goto done;
    }
    if (ndim > TG_MAX_DIMS) {
        snprintf(m, sizeof m, "%d dims; at most %d are supported", ndim, TG_MAX_DIMS);
        src_fail(&s, TG_ERR_FORMAT, m);
        goto done;
    }
    if (src_read(&s, head + 4, 4 * (size_t)ndim, "dims")) goto done;
    int64_t shape[TG_MAX_DIMS];
    uint64_t numel = 1;
    bool overflow = false, zero = false;
    for (int i = 0; i < ndim; i++) {
        uint32_t d = be32(head + 4 + 4 * i);
        shape[i] = d;
        if (d == 0) zero = true;
        else if (numel > UINT64_MAX / d) overflow = true;
        else numel *= d;
    }
    if (zero) numel = 0, overflow = false;
    char sh[160];
    tg__fmt_shape(sh, sizeof sh, ndim, shape);
    if (overflow || numel > UINT64_MAX / es || numel * es > limit) {
        snprintf(m, sizeof m, "dims %s of %s need more than the %llu-byte limit", sh,
                 idx_type_name(type), (unsigned long long)limit);
        src_fail(&s, TG_ERR_FORMAT, m);
        goto done;
    }
    uint64_t need = numel * es;
    if (need > SIZE_MAX - 1) {
        src_fail(&s, TG_ERR_NOMEM, "data too large for this machine");
        goto done;
    }
    size_t hlen = 4 + 4 * (size_t)ndim;

    /* the data's length must match the dims before anything is allocated */
    if (!s.gz) {
        size_t have = len - hlen;
        if (have != need) {
            snprintf(m, sizeof m, "%zu bytes of data for dims %s of %s, which need %llu%s", have,
                     sh, idx_type_name(type), (unsigned long long)need,
                     have < need ? " (truncated)" : " (trailing bytes)");
            src_fail(&s, TG_ERR_FORMAT, m);
            goto done;
        }
    } else if ((uint64_t)len <= UINT64_MAX / DEFLATE_MAX_RATIO &&
               hlen + need > (uint64_t)len * DEFLATE_MAX_RATIO) {
        snprintf(m, sizeof m,
                 "dims %s of %s need %llu bytes, more than %zu bytes of gzip data can "
                 "hold (truncated or corrupt)",
                 sh, idx_type_name(type), (unsigned long long)need, len);
        src_fail(&s, TG_ERR_FORMAT, m);
        goto done;
    }

    /* max_items: only the first items along dim 0 are converted, and only
     * their bytes inflated (the rest of a gzip stream is not read) */
    uint64_t take = numel;
    bool partial = false;
    if (o.max_items > 0 && ndim > 0 && (uint64_t)o.max_items < (uint64_t)shape[0]) {
        take = numel / (uint64_t)shape[0] * (uint64_t)o.max_items;
        shape[0] = o.max_items;
        partial = true;
    }

    int dt;
    if (o.dtype == TG_IDX_AUTO)
        dt = ndim == 1 && type != IDX_F32 && type != IDX_F64 ? TG_I64 : TG_F32;
    else dt = o.dtype;
    if (dt == TG_I64 && (type == IDX_F32 || type == IDX_F64)) {
        tg__fail(c, TG_ERR_DTYPE, "%s: %s: %s data cannot be read as i64", fn, what,
                 idx_type_name(type));
        goto done;
    }

    const unsigned char *data;
    if (s.gz) {
        /* inflate into a buffer that grows by doubling up to the size the
         * header implies, so memory follows the data actually present */
        size_t want = (size_t)(take * es), got = 0;
        raw_size = want < GZ_FIRST ? want : GZ_FIRST;
        raw = tg__heap_alloc(c, raw_size ? raw_size : 1);
        for (;;) {
            if (!raw) {
                raw_size = 0;
                tg__fail(c, TG_ERR_NOMEM, "%s: %s: out of memory inflating %llu bytes", fn, what,
                         (unsigned long long)(take * es));
                goto done;
            }
            size_t k;
            if (z_read(&s, raw + got, raw_size - got, &k)) goto done;
            got += k;
            if (got < raw_size) {
                snprintf(m, sizeof m, "truncated data (%zu of %zu bytes)", got, want);
                src_fail(&s, TG_ERR_FORMAT, m);
                goto done;
            }
            if (got == want) break;
            size_t bigger = raw_size > want / 2 ? want : 2 * raw_size;
            unsigned char *nb = tg__heap_alloc(c, bigger);
            if (nb) memcpy(nb, raw, got);
            tg__heap_free(c, raw, raw_size);
            raw = nb;
            raw_size = bigger;
        }
        data = raw;
    } else {
        data = b + hlen;
        s.pos = len;
    }
    if (!(s.gz && partial) && src_end(&s)) goto done;

    t = tg__empty(c, fn, (tg_dtype)dt, ndim, shape);
    if (t) convert(t, data, type, (int64_t)take, o.scale);
done:
    src_close(&s);
    if (raw) tg__heap_free(c, raw, raw_size ? raw_size : 1);
    return t;
}

tg_tensor *tg_idx_parse(tg_ctx *c, const void *buf, size_t len, const tg_idx_opts *opts)
{
    const char *fn = "tg_idx_parse";
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (!buf && len) {
        tg__fail(c, TG_ERR_INVALID, "%s: NULL buffer", fn);
        return NULL;
    }
    return parse(c, fn, "buffer", buf ? buf : (const void *)"", len, opts);
}

tg_tensor *tg_idx_read(tg_ctx *c, const char *path, const tg_idx_opts *opts)
{
    const char *fn = "tg_idx_read";
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (!path) {
        tg__fail(c, TG_ERR_INVALID, "%s: path is NULL", fn);
        return NULL;
    }
    size_t len = 0;
    char *buf = tg__read_file(c, fn, path, &len);
    if (!buf) return NULL;
    tg_tensor *t = parse(c, fn, path, (const unsigned char *)buf, len, opts);
    tg__heap_free(c, buf, len + 1);
    return t;
}
