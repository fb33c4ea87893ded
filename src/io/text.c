/*
 * text.c - text as token indices for character-level models (see data.h).
 *
 * A vocabulary is the sorted set of distinct units (bytes or Unicode code
 * points) of a text; a unit's index is its rank in that set, so the same
 * text always gives the same vocabulary and indices, whatever order the
 * characters first appear in. UTF-8 is decoded strictly (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), so decoding the
 * indices gives back exactly the bytes that were read.
 */
#include "io_impl.h"
#include "tapegrad/data.h"

#include <string.h>

struct tg_vocab {
    tg_text_unit kind;
    int64_t n;
    uint32_t *units;       /* n, sorted, distinct */
    int16_t byte_idx[256]; /* TG_TEXT_BYTES: index of each byte value, -1 if absent */
};

#define MAX_CP 0x10FFFFu

/* ---- UTF-8 --------------------------------------------------------------------- */

/* Decodes the code point at p (< e) into *cp; returns its length in bytes,
 * or 0 when the bytes there are not valid UTF-8. */
static int utf8_decode(const unsigned char *p, const unsigned char *e, uint32_t *cp)
{
    unsigned b0 = p[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    int len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    uint32_t v;
    if (b0 >= 0xC2 && b0 <= 0xDF) len = 2, v = b0 & 0x1F;
    else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3, v = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;      /* no overlongs */
        else if (b0 == 0xED) hi = 0x9F; /* no surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4, v = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;      /* no overlongs */
        else if (b0 == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (e - p < len) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    v = v << 6 | (p[1] & 0x3F);
    for (int i = 2; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (p[i] & 0x3F);
    }
    *cp = v;
    return len;
}

/* Encodes cp (a scalar value) into out; returns the length. */
static int utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static bool valid_unit(tg_text_unit kind, uint32_t u)
{
    if (kind == TG_TEXT_BYTES) return u <= 0xFF;
    return u <= MAX_CP && !(u >= 0xD800 && u <= 0xDFFF);
}

/* 1-based line of byte offset off in b. */
static int64_t line_of(const unsigned char *b, size_t off)
{
    int64_t line = 1;
    for (size_t i = 0; i < off; i++) line += b[i] == '\n';
    return line;
}

/* ---- vocabularies ------------------------------------------------------------------ */

/* A vocabulary over units (sorted, distinct), copied into c. */
static tg_vocab *vocab_make(tg_ctx *c, tg_text_unit kind, const uint32_t *units, int64_t n)
{
    tg_vocab *v = tg__arena_alloc(c, sizeof *v);
    uint32_t *u = tg__arena_alloc(c, (size_t)(n ? n : 1) * sizeof *u);
    if (!v || !u) return NULL;
    v->kind = kind;
    v->n = n;
    v->units = u;
    if (n) memcpy(u, units, (size_t)n * sizeof *u);
    for (int i = 0; i < 256; i++) v->byte_idx[i] = -1;
    if (kind == TG_TEXT_BYTES)
        for (int64_t i = 0; i < n; i++) v->byte_idx[u[i]] = (int16_t)i;
    return v;
}

int64_t tg_vocab_index(const tg_vocab *v, uint32_t u)
{
    if (!v) return -1;
    if (v->kind == TG_TEXT_BYTES) return u <= 0xFF ? v->byte_idx[u] : -1;
    int64_t lo = 0, hi = v->n; /* binary search in [lo, hi) */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (v->units[mid] < u) lo = mid + 1;
        else hi = mid;
    }
    return lo < v->n && v->units[lo] == u ? lo : -1;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

tg_vocab *tg_vocab_new(tg_ctx *c, tg_text_unit unit, const uint32_t *units, int64_t n)
{
    const char *fn = "tg_vocab_new";
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (unit != TG_TEXT_BYTES && unit != TG_TEXT_UTF8) {
        tg__fail(c, TG_ERR_INVALID, "%s: unknown unit %d", fn, (int)unit);
        return NULL;
    }
    if (n < 0 || (n > 0 && !units) || (uint64_t)n > SIZE_MAX / 8) {
        tg__fail(c, TG_ERR_INVALID, "%s: NULL units or a negative count", fn);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        if (!valid_unit(unit, units[i])) {
            tg__fail(c, TG_ERR_INVALID, "%s: units[%lld] = %lu is not a %s", fn, (long long)i,
                     (unsigned long)units[i],
                     unit == TG_TEXT_BYTES ? "byte value" : "Unicode scalar value");
            return NULL;
        }
    size_t bytes = (size_t)(n ? n : 1) * sizeof(uint32_t);
    uint32_t *tmp = tg__heap_alloc(c, bytes);
    if (!tmp) {
        tg__fail(c, TG_ERR_NOMEM, "%s: out of memory", fn);
        return NULL;
    }
    if (n) memcpy(tmp, units, (size_t)n * sizeof *tmp);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_u32);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (m == 0 || tmp[m - 1] != tmp[i]) tmp[m++] = tmp[i];
    tg_vocab *v = vocab_make(c, unit, tmp, m);
    tg__heap_free(c, tmp, bytes);
    return v;
}

int64_t tg_vocab_size(const tg_vocab *v) { return v ? v->n : 0; }
tg_text_unit tg_vocab_kind(const tg_vocab *v) { return v ? v->kind : TG_TEXT_BYTES; }

uint32_t tg_vocab_unit(const tg_vocab *v, int64_t i)
{
    return v && i >= 0 && i < v->n ? v->units[i] : UINT32_MAX;
}

/* ---- reading text ------------------------------------------------------------------ */

static tg_tensor *parse(tg_ctx *c, const char *fn, const char *what, const unsigned char *b,
                        size_t len, tg_text_unit unit, tg_vocab **vocab)
{
    int64_t n = 0;
    uint32_t *units = NULL;
    int64_t n_units = 0;
    size_t units_bytes = 0;
    tg_tensor *t = NULL;
    tg_vocab *v = NULL;
    if (unit == TG_TEXT_BYTES) {
        bool seen[256] = {false};
        for (size_t i = 0; i < len; i++) seen[b[i]] = true;
        uint32_t u[256];
        for (int i = 0; i < 256; i++)
            if (seen[i]) u[n_units++] = (uint32_t)i;
        v = vocab_make(c, unit, u, n_units);
        n = (int64_t)len;
    } else {
        /* pass 1: validate, count, and mark the code points seen */
        size_t words = (MAX_CP + 64) / 64;
        uint64_t *seen = tg__heap_alloc(c, words * sizeof *seen);
        if (!seen) {
            tg__fail(c, TG_ERR_NOMEM, "%s: %s: out of memory", fn, what);
            return NULL;
        }
        memset(seen, 0, words * sizeof *seen);
        for (size_t i = 0; i < len;) {
            uint32_t cp;
            int k = utf8_decode(b + i, b + len, &cp);
            if (!k) {
                tg__heap_free(c, seen, words * sizeof *seen);
                tg__fail(c, TG_ERR_FORMAT, "%s: %s: invalid UTF-8 at byte %zu (line %lld): 0x%02x",
                         fn, what, i, (long long)line_of(b, i), b[i]);
                return NULL;
            }
            if (!(seen[cp / 64] >> (cp % 64) & 1)) n_units++;
            seen[cp / 64] |= (uint64_t)1 << (cp % 64);
            i += (size_t)k;
            n++;
        }
        units_bytes = (size_t)(n_units ? n_units : 1) * sizeof *units;
        units = tg__heap_alloc(c, units_bytes);
        if (!units) {
            tg__heap_free(c, seen, words * sizeof *seen);
            tg__fail(c, TG_ERR_NOMEM, "%s: %s: out of memory", fn, what);
            return NULL;
        }
        int64_t m = 0;
        for (size_t w = 0; w < words; w++)
            for (uint64_t bits = seen[w]; bits; bits &= bits - 1) {
                int bit = 0;
                while (!(bits >> bit & 1)) bit++;
                units[m++] = (uint32_t)(w * 64 + (size_t)bit);
            }
        tg__heap_free(c, seen, words * sizeof *seen);
        v = vocab_make(c, unit, units, n_units);
        tg__heap_free(c, units, units_bytes);
    }
    if (!v) return NULL;
    t = tg__empty(c, fn, TG_I64, 1, (int64_t[]){n});
    if (!t) return NULL;
    int64_t *ids = (int64_t *)tg__ptr(t);
    if (unit == TG_TEXT_BYTES) {
        for (size_t i = 0; i < len; i++) ids[i] = v->byte_idx[b[i]];
    } else {
        int64_t j = 0;
        for (size_t i = 0; i < len;) {
            uint32_t cp;
            i += (size_t)utf8_decode(b + i, b + len, &cp); /* validated above */
            ids[j++] = tg_vocab_index(v, cp);
        }
    }
    if (vocab) *vocab = v;
    return t;
}

static bool check_args(tg_ctx *c, const char *fn, tg_text_unit unit, tg_vocab **vocab)
{
    if (unit != TG_TEXT_BYTES && unit != TG_TEXT_UTF8) {
        tg__fail(c, TG_ERR_INVALID, "%s: unknown unit %d", fn, (int)unit);
        return false;
    }
    if (!vocab) {
        tg__fail(c, TG_ERR_INVALID, "%s: vocab is NULL", fn);
        return false;
    }
    *vocab = NULL;
    return true;
}

tg_tensor *tg_text_parse(tg_ctx *c, const void *buf, size_t len, tg_text_unit unit,
                         tg_vocab **vocab)
{
    const char *fn = "tg_text_parse";
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (!buf && len) {
        tg__fail(c, TG_ERR_INVALID, "%s: NULL buffer", fn);
        return NULL;
    }
    if (!check_args(c, fn, unit, vocab)) return NULL;
    return parse(c, fn, "buffer", buf ? buf : (const void *)"", len, unit, vocab);
}

tg_tensor *tg_text_read(tg_ctx *c, const char *path, tg_text_unit unit, tg_vocab **vocab)
{
    const char *fn = "tg_text_read";
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (!path) {
        tg__fail(c, TG_ERR_INVALID, "%s: path is NULL", fn);
        return NULL;
    }
    if (!check_args(c, fn, unit, vocab)) return NULL;
    size_t len = 0;
    char *buf = tg__read_file(c, fn, path, &len);
    if (!buf) return NULL;
    tg_tensor *t = parse(c, fn, path, (const unsigned char *)buf, len, unit, vocab);
    tg__heap_free(c, buf, len + 1);
    return t;
}

/* ---- encode and decode -------------------------------------------------------------- */

tg_tensor *tg_vocab_encode(tg_ctx *c, const tg_vocab *v, const char *text, size_t len)
{
    const char *fn = "tg_vocab_encode";
    if (!tg__ok(c)) return NULL;
    c->api = fn;
    if (!v || (!text && len)) {
        tg__fail(c, TG_ERR_INVALID, "%s: NULL vocabulary or text", fn);
        return NULL;
    }
    const unsigned char *b = (const unsigned char *)(text ? text : "");
    int64_t n = 0;
    for (size_t i = 0; i < len; n++) { /* count and validate first */
        uint32_t cp = b[i];
        int k = v->kind == TG_TEXT_BYTES ? 1 : utf8_decode(b + i, b + len, &cp);
        if (!k) {
            tg__fail(c, TG_ERR_FORMAT, "%s: invalid UTF-8 at byte %zu: 0x%02x", fn, i, b[i]);
            return NULL;
        }
        if (tg_vocab_index(v, cp) < 0) {
            char show[8] = "?";
            if (cp >= 0x20 && cp != 0x7f && (v->kind == TG_TEXT_UTF8 || cp < 0x80))
                show[utf8_encode(cp, show)] = '\0';
            tg__fail(c, TG_ERR_INVALID, "%s: '%s' (%s%04lX) at byte %zu is not in the vocabulary",
                     fn, show, v->kind == TG_TEXT_UTF8 ? "U+" : "byte 0x", (unsigned long)cp, i);
            return NULL;
        }
        i += (size_t)k;
    }
    tg_tensor *t = tg__empty(c, fn, TG_I64, 1, (int64_t[]){n});
    if (!t) return NULL;
    int64_t *ids = (int64_t *)tg__ptr(t);
    int64_t j = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = b[i];
        i += v->kind == TG_TEXT_BYTES ? 1 : (size_t)utf8_decode(b + i, b + len, &cp);
        ids[j++] = tg_vocab_index(v, cp);
    }
    return t;
}

int64_t tg_vocab_decode(const tg_vocab *v, const int64_t *ids, int64_t n, char *buf, size_t cap)
{
    if (buf && cap) buf[0] = '\0';
    if (!v || n < 0 || (n > 0 && !ids) || (cap > 0 && !buf)) return -1;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= v->n) return -1;
    int64_t total = 0;
    size_t k = 0; /* bytes written */
    bool full = false;
    for (int64_t i = 0; i < n; i++) {
        char u[4];
        uint32_t cp = v->units[ids[i]];
        int m = 1;
        if (v->kind == TG_TEXT_BYTES) u[0] = (char)cp;
        else m = utf8_encode(cp, u);
        total += m;
        if (!full && cap > 0 && k + (size_t)m <= cap - 1) {
            memcpy(buf + k, u, (size_t)m);
            k += (size_t)m;
        } else {
            full = true; /* never a partial sequence, nor anything after it */
        }
    }
    if (cap > 0) buf[k] = '\0';
    return total;
}
