/*
 * test_util.h - small helpers shared by the Check suites. Header only.
 *
 *   ck_assert_close(a, b, tol)       |a - b| <= tol for doubles (NaN fails)
 *   tu_ctx()                         a new default context, or fail the test
 *   tu_assert_ok(c)                  fail with tg_ctx_errmsg(c) unless TG_OK
 *   tu_assert_status(got, want)      compare two tg_status, by name
 *   tu_assert_error(c, st, fn, what) c holds st with a message naming fn
 *                                    and containing what (NULL: anything);
 *                                    then clears it
 *   tu_assert_values(t, vals, tol)   t's elements (row-major) against a list
 *   tu_tcase(name)                   tcase_create + an explicit timeout
 *   tu_under_valgrind()              true under `meson test --setup valgrind`
 *   tu_read_file(path, &len)         a file's bytes (malloc'd), NULL if absent
 *   tu_slurp(path, &len)             the same for a file that must exist
 *   tu_alloc / tu_alloc_ctx(h, chunk) a counting, failing, leak-tracking
 *                                    allocator hook and a context on it;
 *   tu_alloc_assert_no_leak(h)       fail unless every block was freed
 *
 * Failures report the caller's file and line: the helpers are macros over
 * tu__*_at functions that take __FILE__ and __LINE__ and fail through
 * _ck_assert_failed(), the function behind Check's own ck_assert_msg.
 */
#ifndef TAPEGRAD_TEST_UTIL_H
#define TAPEGRAD_TEST_UTIL_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

/* Timeout of tcases made by tu_tcase(), in seconds. Check's own default is
 * 4 s; CK_TIMEOUT_MULTIPLIER still scales it. */
#define TU_TIMEOUT 60.0

/* |a - b| <= tol for doubles; equal values (including equal infinities)
 * pass, NaN on either side fails. The message shows both expressions and
 * both values with all 17 digits. */
#define ck_assert_close(a, b, tol)                                                     \
    do {                                                                               \
        double tu_a_ = (double)(a), tu_b_ = (double)(b), tu_tol_ = (double)(tol);      \
        double tu_d_ = fabs(tu_a_ - tu_b_);                                            \
        ck_assert_msg(tu_a_ == tu_b_ || tu_d_ <= tu_tol_,                              \
                      "Assertion '|%s - %s| <= %s' failed: %s == %.17g, %s == %.17g, " \
                      "|diff| == %.3g",                                                \
                      #a, #b, #tol, #a, tu_a_, #b, tu_b_, tu_d_);                      \
    } while (0)

/* A new context with default options; fails the test if it is NULL. Free it
 * with tg_ctx_free() (leak checks run on every suite). */
#define tu_ctx() tu__ctx_at(__FILE__, __LINE__)

/* Fails the test, with c's error message, unless tg_ctx_status(c) is TG_OK. */
#define tu_assert_ok(c) tu__assert_ok_at((c), __FILE__, __LINE__)

/* Fails unless got == want, naming both statuses. */
#define tu_assert_status(got, want) tu__assert_status_at((got), (want), #got, __FILE__, __LINE__)

/* Fails unless t is non-NULL, has exactly the listed number of elements and
 * each (in row-major order, any dtype and strides) is within tol of the list:
 *   tu_assert_values(y, 1e-12, 1.0, 2.0, 3.0);   (tol first, then values) */
#define tu_assert_values(t, tol, ...)                                                              \
    tu__assert_values_at((t), (const double[]){__VA_ARGS__},                                       \
                         (int64_t)(sizeof((const double[]){__VA_ARGS__}) / sizeof(double)), (tol), \
                         #t, __FILE__, __LINE__)

static inline tg_ctx *tu__ctx_at(const char *file, int line)
{
    tg_ctx *c = tg_ctx_new();
    if (c == NULL) _ck_assert_failed(file, line, NULL, "tg_ctx_new() returned NULL");
    return c;
}

static inline void tu__assert_ok_at(const tg_ctx *c, const char *file, int line)
{
    if (c == NULL) _ck_assert_failed(file, line, NULL, "context is NULL");
    tg_status s = tg_ctx_status(c);
    if (s != TG_OK)
        _ck_assert_failed(file, line, NULL, "context status %s (%d): %s", tg_status_str(s), (int)s,
                          tg_ctx_errmsg(c));
}

static inline void tu__assert_status_at(tg_status got, tg_status want, const char *expr,
                                        const char *file, int line)
{
    if (got != want)
        _ck_assert_failed(file, line, NULL, "%s is %s (%d), expected %s (%d)", expr,
                          tg_status_str(got), (int)got, tg_status_str(want), (int)want);
}

#define tu_assert_error(c, want, fn, what) \
    tu__assert_error_at((c), (want), (fn), (what), __FILE__, __LINE__)

static inline void tu__assert_error_at(tg_ctx *c, tg_status want, const char *fn,
                                       const char *what, const char *file, int line)
{
    tu__assert_status_at(tg_ctx_status(c), want, "tg_ctx_status(c)", file, line);
    const char *m = tg_ctx_errmsg(c);
    if (!strstr(m, fn)) _ck_assert_failed(file, line, NULL, "message '%s' does not name %s", m, fn);
    if (what && !strstr(m, what))
        _ck_assert_failed(file, line, NULL, "message '%s' lacks '%s'", m, what);
    tg_ctx_clear_error(c);
}

static inline void tu__assert_values_at(const tg_tensor *t, const double *want, int64_t n,
                                        double tol, const char *expr, const char *file, int line)
{
    if (t == NULL) _ck_assert_failed(file, line, NULL, "%s is NULL", expr);
    int64_t numel = tg_numel(t);
    if (numel != n)
        _ck_assert_failed(file, line, NULL, "%s has %lld elements, expected %lld", expr,
                          (long long)numel, (long long)n);
    if (n == 0) return;

    tg_dtype dt = tg_tensor_dtype(t);
    size_t nbytes = (size_t)n * tg_dtype_size(dt);
    void *buf = malloc(nbytes);
    if (buf == NULL) _ck_assert_failed(file, line, NULL, "out of memory");
    tg_status s = tg_copy_out(t, buf, nbytes);
    if (s != TG_OK) {
        free(buf);
        _ck_assert_failed(file, line, NULL, "tg_copy_out(%s) gave %s", expr, tg_status_str(s));
    }
    for (int64_t i = 0; i < n; i++) {
        double got = dt == TG_F32   ? (double)((const float *)buf)[i]
                     : dt == TG_F64 ? ((const double *)buf)[i]
                                    : (double)((const int64_t *)buf)[i];
        double d = fabs(got - want[i]);
        if (!(got == want[i] || d <= tol)) {
            free(buf);
            _ck_assert_failed(file, line, NULL,
                              "%s[%lld] == %.17g, expected %.17g (|diff| %.3g > %.3g)", expr,
                              (long long)i, got, want[i], d, tol);
        }
    }
    free(buf);
}


/* A new tensor of c with fixed pseudo-random values in [-scale, scale)
 * (a 32-bit LCG from seed; f32 gets the same numbers rounded), requiring
 * grad when grad is set; NULL with the error on c when c cannot make it. */
static inline tg_tensor *tu_lcg_tensor(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape,
                                       uint32_t seed, double scale, bool grad)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    void *v = malloc((size_t)(n ? n : 1) * 8);
    ck_assert_ptr_nonnull(v);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        double x = scale * (2.0 * ((seed >> 8) & 0xffff) / 65536.0 - 1.0);
        if (dt == TG_F64) ((double *)v)[i] = x;
        else ((float *)v)[i] = (float)x;
    }
    tg_tensor *t = tg_tensor_from(c, dt, ndim, shape, v);
    free(v);
    if (t && grad) tg_set_requires_grad(t, true);
    return t;
}

/* tcase_create(name) with its timeout set to TU_TIMEOUT seconds. Use
 * tcase_set_timeout() again for a test that needs longer. */
static inline TCase *tu_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, TU_TIMEOUT);
    return tc;
}

/* True when running under `meson test --setup valgrind` (which sets
 * TG_TEST_VALGRIND=1): scale long loops down, not the checks. */
static inline bool tu_under_valgrind(void)
{
    const char *v = getenv("TG_TEST_VALGRIND");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}


/* ---------------------------------------------------------------------- */
/* A counting, failing, leak-tracking allocator hook                      */
/* ---------------------------------------------------------------------- */

typedef struct {
    long calls;       /* every call, allocations and frees */
    long allocs;      /* calls with nsize > 0 */
    long fail_at;     /* fail the allocation numbered fail_at (1-based); 0: never */
    bool fail_rest;   /* ...and every later one too */
    bool failed;      /* fail_at was reached */
    size_t live;      /* bytes allocated and not yet freed */
    long live_blocks; /* blocks allocated and not yet freed */
    long bad_frees;   /* frees whose osize differs from the allocated size */
    size_t largest;   /* the largest allocation asked for */
} tu_alloc;

/* Each block carries its size in a 16-byte header, so frees can be checked
 * against the size they claim (osize). malloc's 16-byte alignment holds. */
#define TU_ALLOC_HDR 16

/* The tg_alloc_fn; ud is a tu_alloc. */
static inline void *tu_alloc_hook(void *ud, void *ptr, size_t osize, size_t nsize)
{
    tu_alloc *h = ud;
    h->calls++;
    if (nsize == 0) {
        if (ptr != NULL) {
            char *base = (char *)ptr - TU_ALLOC_HDR;
            size_t size;
            memcpy(&size, base, sizeof size);
            if (size != osize) h->bad_frees++;
            h->live -= size;
            h->live_blocks--;
            free(base);
        }
        return NULL;
    }
    ck_assert_msg(ptr == NULL && osize == 0, "the hook was asked to reallocate");
    h->allocs++;
    if (nsize > h->largest) h->largest = nsize;
    if (h->fail_at != 0 && (h->allocs == h->fail_at || (h->fail_rest && h->allocs > h->fail_at))) {
        h->failed = true;
        return NULL;
    }
    char *base = malloc(nsize + TU_ALLOC_HDR);
    if (base == NULL) return NULL;
    memcpy(base, &nsize, sizeof nsize);
    h->live += nsize;
    h->live_blocks++;
    return base + TU_ALLOC_HDR;
}

/* A context of n_threads on the hook (arena_chunk 0: the default); NULL
 * when an injected failure stops it. */
static inline tg_ctx *tu_alloc_ctx_threads(tu_alloc *h, size_t arena_chunk, int n_threads)
{
    tg_ctx_opts o = tg_ctx_defaults();
    o.alloc = tu_alloc_hook;
    o.alloc_ud = h;
    o.arena_chunk = arena_chunk;
    o.n_threads = n_threads;
    return tg_ctx_new_opts(&o);
}

/* One thread (no thread pool: only arena and context traffic). */
static inline tg_ctx *tu_alloc_ctx(tu_alloc *h, size_t arena_chunk)
{
    return tu_alloc_ctx_threads(h, arena_chunk, 1);
}

#define tu_alloc_assert_no_leak(h) tu__alloc_assert_no_leak_at((h), __FILE__, __LINE__)

static inline void tu__alloc_assert_no_leak_at(const tu_alloc *h, const char *file, int line)
{
    if (h->live != 0 || h->live_blocks != 0)
        _ck_assert_failed(file, line, NULL, "leak: %zu bytes in %ld blocks still allocated",
                          h->live, h->live_blocks);
    if (h->bad_frees != 0)
        _ck_assert_failed(file, line, NULL, "%ld frees passed a wrong osize", h->bad_frees);
}

/* The whole file at path (malloc'd, one spare byte; free it) and its
 * length in *len, or NULL when it cannot be opened (it does not exist).
 * Read errors fail the test. */
static inline unsigned char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    ck_assert(n >= 0);
    ck_assert_int_eq(fseek(f, 0, SEEK_SET), 0);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* tu_read_file for a file that must exist: fails the test naming it. */
static inline unsigned char *tu_slurp(const char *path, size_t *len)
{
    unsigned char *b = tu_read_file(path, len);
    ck_assert_msg(b != NULL, "cannot open %s", path);
    return b;
}

#endif /* TAPEGRAD_TEST_UTIL_H */
