/*
 * test_data.c - the data layer: IDX, CSV and text readers on good input
 * with exact values, and on every kind of bad input (truncation at every
 * length, flipped bits, corrupt gzip, bad cells, wrong magic, allocation
 * failure at every allocation), each giving a status and a message naming
 * the function and the file, never a crash or a leak; the batcher (every
 * index once per epoch, the last partial batch, determinism, state save
 * and restore) and the allocation-free row gather.
 *
 * Files come from tests/data/data/ (tools/make_data_fixtures.py). The
 * Fashion-MNIST test reads Debian's dataset-fashion-mnist when it is
 * installed ($TG_FASHION_MNIST_DIR overrides the directory) and prints a
 * note and passes when it is not.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "tapegrad.h"
#include "test_util.h"

static const char *data_path(const char *rel)
{
    static char p[1024];
    const char *dir = getenv("TG_DATA_DIR");
    snprintf(p, sizeof p, "%s/data/%s", dir ? dir : "tests/data", rel);
    return p;
}

/* Asserts c holds status st with a message containing each of up to three
 * strings (NULL: skip), then clears the error. */
static void expect_error(tg_ctx *c, tg_status st, const char *s1, const char *s2, const char *s3)
{
    tu_assert_status(tg_ctx_status(c), st);
    const char *m = tg_ctx_errmsg(c);
    const char *want[3] = {s1, s2, s3};
    for (int i = 0; i < 3; i++)
        if (want[i]) ck_assert_msg(strstr(m, want[i]) != NULL, "'%s' lacks '%s'", m, want[i]);
    tg_ctx_clear_error(c);
}

/* test_util.h's counting allocator, failing every allocation from fail_at
 * on, with small arena blocks so reads reach it often. */
static tg_ctx *hooked_ctx(tu_alloc *h)
{
    h->fail_rest = true;
    return tu_alloc_ctx(h, 4096);
}

/* ====================================================================== */
/* IDX                                                                    */
/* ====================================================================== */

static const double tiny_pixels[18] = {0,  1,  2,  127, 128, 255, 10, 20, 30,
                                       40, 50, 60, 255, 254, 253, 3,  2,  1};

static void assert_shape(const tg_tensor *t, int ndim, const int64_t *shape)
{
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(tg_ndim(t), ndim);
    for (int i = 0; i < ndim; i++) ck_assert_int_eq(tg_shape(t)[i], shape[i]);
}

START_TEST(test_idx_tiny_plain_and_gzip)
{
    tg_ctx *c = tu_ctx();
    const char *files[2] = {"tiny-images-idx3-ubyte", "tiny-images-idx3-ubyte.gz"};
    for (int k = 0; k < 2; k++) {
        tg_tensor *x = tg_idx_read(c, data_path(files[k]), NULL);
        tu_assert_ok(c);
        assert_shape(x, 3, (const int64_t[]){3, 2, 3});
        ck_assert_int_eq(tg_tensor_dtype(x), TG_F32);
        float v[18];
        ck_assert_int_eq(tg_copy_out(x, v, sizeof v), TG_OK);
        for (int i = 0; i < 18; i++) ck_assert_float_eq(v[i], (float)tiny_pixels[i]);
        /* scaled: exactly the float division by 255 */
        tg_idx_opts o = tg_idx_defaults();
        o.scale = true;
        x = tg_idx_read(c, data_path(files[k]), &o);
        ck_assert_int_eq(tg_copy_out(x, v, sizeof v), TG_OK);
        for (int i = 0; i < 18; i++) ck_assert_float_eq(v[i], (float)tiny_pixels[i] / 255.0f);
        ck_assert_float_eq(v[5], 1.0f);
        ck_assert_float_eq(v[0], 0.0f);
        /* f64 and i64 on request */
        o.dtype = TG_F64;
        x = tg_idx_read(c, data_path(files[k]), &o);
        ck_assert_int_eq(tg_tensor_dtype(x), TG_F64);
        ck_assert_double_eq(tg_get(x, (const int64_t[]){0, 1, 2}), 255.0 / 255.0);
        ck_assert_double_eq(tg_get(x, (const int64_t[]){2, 0, 1}), 254.0 / 255.0);
        o.dtype = TG_I64;
        x = tg_idx_read(c, data_path(files[k]), &o);
        ck_assert_int_eq(tg_tensor_dtype(x), TG_I64);
        ck_assert_double_eq(tg_get(x, (const int64_t[]){2, 0, 0}), 255);
        tu_assert_ok(c);
    }
    const char *lfiles[2] = {"tiny-labels-idx1-ubyte", "tiny-labels-idx1-ubyte.gz"};
    for (int k = 0; k < 2; k++) {
        tg_idx_opts o = tg_idx_defaults();
        o.scale = true; /* ignored for labels */
        tg_tensor *y = tg_idx_read(c, data_path(lfiles[k]), &o);
        tu_assert_ok(c);
        ck_assert_int_eq(tg_tensor_dtype(y), TG_I64);
        tu_assert_values(y, 0, 7, 0, 9);
    }
    /* max_items: the first items only, plain and gzip; 0 and too many: all */
    for (int k = 0; k < 2; k++) {
        tg_idx_opts o = tg_idx_defaults();
        const int64_t want[4] = {2, 1, 3, 3};
        const int64_t ask[4] = {2, 1, 3, 7};
        for (int a = 0; a < 4; a++) {
            o.max_items = ask[a];
            tg_tensor *x = tg_idx_read(c, data_path(files[k]), &o);
            tu_assert_ok(c);
            assert_shape(x, 3, (const int64_t[]){want[a], 2, 3});
            float v[18];
            ck_assert_int_eq(tg_copy_out(x, v, (size_t)want[a] * 6 * sizeof *v), TG_OK);
            for (int i = 0; i < want[a] * 6; i++) ck_assert_float_eq(v[i], (float)tiny_pixels[i]);
        }
        o.max_items = 2;
        tu_assert_values(tg_idx_read(c, data_path(lfiles[k]), &o), 0, 7, 0);
        o.max_items = -1;
        ck_assert_ptr_null(tg_idx_read(c, data_path(lfiles[k]), &o));
        tu_assert_status(tg_ctx_status(c), TG_ERR_INVALID);
        tg_ctx_clear_error(c);
    }
    /* a plain file must still hold all its data */
    tg_idx_opts o1 = tg_idx_defaults();
    o1.max_items = 1;
    const unsigned char cut[] = {0, 0, 8, 1, 0, 0, 0, 3, 7, 0};
    ck_assert_ptr_null(tg_idx_parse(c, cut, sizeof cut, &o1));
    tu_assert_status(tg_ctx_status(c), TG_ERR_FORMAT);
    tg_ctx_clear_error(c);
    /* two concatenated gzip members are one stream */
    tg_tensor *x = tg_idx_read(c, data_path("two-members.idx.gz"), NULL);
    tu_assert_ok(c);
    assert_shape(x, 3, (const int64_t[]){3, 2, 3});
    ck_assert_double_eq(tg_get(x, (const int64_t[]){2, 1, 2}), 1);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_idx_element_types)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *t = tg_idx_read(c, data_path("i8.idx"), NULL);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_tensor_dtype(t), TG_I64); /* 1-d integers: labels */
    tu_assert_values(t, 0, -128, -1, 0, 127);

    t = tg_idx_read(c, data_path("i16.idx"), NULL);
    ck_assert_int_eq(tg_tensor_dtype(t), TG_F32); /* 2-d: F32 */
    assert_shape(t, 2, (const int64_t[]){2, 2});
    tu_assert_values(t, 0, -32768, -2, 300, 32767);
    tg_idx_opts o = tg_idx_defaults();
    o.dtype = TG_I64;
    o.scale = true; /* not u8: ignored */
    t = tg_idx_read(c, data_path("i16.idx"), &o);
    ck_assert_int_eq(tg_tensor_dtype(t), TG_I64);
    tu_assert_values(t, 0, -32768, -2, 300, 32767);

    t = tg_idx_read(c, data_path("i32.idx"), NULL);
    tu_assert_values(t, 0, -2147483648.0, 65536, 2147483647.0);
    ck_assert_int_eq(tg_tensor_dtype(t), TG_I64);

    t = tg_idx_read(c, data_path("f32.idx"), NULL);
    ck_assert_int_eq(tg_tensor_dtype(t), TG_F32);
    tu_assert_values(t, 0, 0.5, -1.25, (double)3.0e10f, -0.0);

    o = tg_idx_defaults();
    o.dtype = TG_F64;
    t = tg_idx_read(c, data_path("f64.idx.gz"), &o);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_tensor_dtype(t), TG_F64);
    tu_assert_values(t, 0, 0.1, -2.5, 1e300);
    t = tg_idx_read(c, data_path("f64.idx.gz"), NULL); /* float data of 1 dim stays float */
    ck_assert_int_eq(tg_tensor_dtype(t), TG_F32);
    tu_assert_values(t, 0, (float)0.1, -2.5, (double)INFINITY); /* 1e300 overflows f32 */

    o.dtype = TG_I64;
    ck_assert_ptr_null(tg_idx_read(c, data_path("f32.idx"), &o));
    expect_error(c, TG_ERR_DTYPE, "tg_idx_read", "f32.idx", "i64");
    o.dtype = 7;
    ck_assert_ptr_null(tg_idx_read(c, data_path("f32.idx"), &o));
    expect_error(c, TG_ERR_INVALID, "dtype", NULL, NULL);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_idx_damaged_files)
{
    tg_ctx *c = tu_ctx();
    struct {
        const char *file, *says;
    } cases[] = {
        {"bad-magic.idx", "bad magic"}, {"bad-type.idx", "element type 0x07"},
        {"dims-overflow.idx", "limit"}, {"trailing.idx", "trailing"},
        {"truncated.idx", "truncated"}, {"truncated.idx.gz", "truncated gzip"},
        {"corrupt.idx.gz", "gzip"},     {"garbage-after.idx.gz", "trailing garbage"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = data_path(cases[i].file);
        ck_assert_msg(tg_idx_read(c, p, NULL) == NULL, "%s parsed", cases[i].file);
        expect_error(c, TG_ERR_FORMAT, "tg_idx_read: ", p, cases[i].says);
    }
    ck_assert_ptr_null(tg_idx_read(c, data_path("missing.idx"), NULL));
    expect_error(c, TG_ERR_IO, "tg_idx_read", "missing.idx", NULL);
    ck_assert_ptr_null(tg_idx_read(c, NULL, NULL));
    expect_error(c, TG_ERR_INVALID, "tg_idx_read", NULL, NULL);
    ck_assert_ptr_null(tg_idx_parse(c, NULL, 4, NULL));
    expect_error(c, TG_ERR_INVALID, "tg_idx_parse", NULL, NULL);
    ck_assert_ptr_null(tg_idx_read(NULL, data_path("i8.idx"), NULL));
    /* sticky: a context holding an error reads nothing */
    tg_ctx_set_error(c, TG_ERR_MISUSE, "earlier");
    ck_assert_ptr_null(tg_idx_read(c, data_path("i8.idx"), NULL));
    expect_error(c, TG_ERR_MISUSE, "earlier", NULL, NULL);
    tg_ctx_free(c);
}
END_TEST

/* Every prefix of a good file (plain and gzipped) is refused with a
 * message; every single-bit flip gives a tensor or an error, never a crash
 * (and under ASan or valgrind, never an over-read). */
START_TEST(test_idx_truncated_and_flipped_everywhere)
{
    const char *files[4] = {"tiny-images-idx3-ubyte", "tiny-images-idx3-ubyte.gz",
                            "tiny-labels-idx1-ubyte.gz", "f64.idx.gz"};
    tg_ctx *c = tu_ctx();
    for (int k = 0; k < 4; k++) {
        size_t len;
        unsigned char *b = tu_slurp(data_path(files[k]), &len);
        for (size_t n = 0; n < len; n++) {
            /* a copy of exactly n bytes, so a read past the end is caught */
            unsigned char *p = malloc(n ? n : 1);
            memcpy(p, b, n);
            ck_assert_msg(tg_idx_parse(c, p, n, NULL) == NULL, "%s: %zu-byte prefix parsed",
                          files[k], n);
            expect_error(c, TG_ERR_FORMAT, "tg_idx_parse: buffer: ", NULL, NULL);
            free(p);
            tg_ctx_reset(c);
        }
        for (size_t at = 0; at < len; at++)
            for (int bit = 0; bit < 8; bit++) {
                b[at] ^= (unsigned char)(1u << bit);
                tg_tensor *t = tg_idx_parse(c, b, len, NULL);
                tg_status st = tg_ctx_status(c);
                ck_assert(t != NULL || st == TG_ERR_FORMAT || st == TG_ERR_DTYPE);
                ck_assert(t == NULL || st == TG_OK);
                if (!t) ck_assert(strstr(tg_ctx_errmsg(c), "tg_idx_parse") != NULL);
                tg_ctx_clear_error(c);
                tg_ctx_reset(c);
                b[at] ^= (unsigned char)(1u << bit);
            }
        free(b);
    }
    tg_ctx_free(c);
}
END_TEST

static unsigned char *gzip_bytes(const unsigned char *data, size_t n, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    ck_assert_int_eq(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, (uLong)n);
    unsigned char *out = malloc(cap);
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

START_TEST(test_idx_hostile_headers)
{
    tg_ctx *c = tu_ctx();
    /* 0 dims: one element, a 0-d tensor */
    const unsigned char scalar[5] = {0, 0, 0x08, 0, 42};
    tg_tensor *t = tg_idx_parse(c, scalar, sizeof scalar, NULL);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_ndim(t), 0);
    ck_assert_double_eq(tg_item(t), 42);
    /* a zero dim with huge others: empty, fine */
    const unsigned char empty[12] = {0, 0, 0x08, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    t = tg_idx_parse(c, empty, sizeof empty, NULL);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_numel(t), 0);
    ck_assert_int_eq(tg_shape(t)[1], 0xffffffffLL);
    /* 9 dims */
    unsigned char nine[4 + 36] = {0, 0, 0x08, 9};
    ck_assert_ptr_null(tg_idx_parse(c, nine, sizeof nine, NULL));
    expect_error(c, TG_ERR_FORMAT, "9 dims", NULL, NULL);
    /* f64 dims whose byte count overflows even though the count does not */
    unsigned char big[12] = {0, 0, 0x0E, 2, 0x40, 0, 0, 0, 0x80, 0, 0, 0};
    ck_assert_ptr_null(tg_idx_parse(c, big, sizeof big, NULL));
    expect_error(c, TG_ERR_FORMAT, "limit", NULL, NULL);
    /* the max_bytes option */
    tg_idx_opts o = tg_idx_defaults();
    o.max_bytes = 17;
    size_t len;
    unsigned char *img = tu_slurp(data_path("tiny-images-idx3-ubyte"), &len);
    ck_assert_ptr_null(tg_idx_parse(c, img, len, &o));
    expect_error(c, TG_ERR_FORMAT, "17-byte limit", NULL, NULL);
    o.max_bytes = 18;
    ck_assert_ptr_nonnull(tg_idx_parse(c, img, len, &o));
    free(img);

    /* a gzip file whose header claims 1 GB: refused before inflating or
     * allocating, by the deflate ratio (the allocator sees nothing big) */
    tu_alloc h = {0};
    tg_ctx *hc = hooked_ctx(&h);
    const unsigned char claim[12] = {0, 0, 0x08, 2, 0, 0, 0x40, 0, 0, 0, 0x40, 0};
    size_t glen;
    unsigned char *g = gzip_bytes(claim, sizeof claim, &glen);
    ck_assert_ptr_null(tg_idx_parse(hc, g, glen, NULL));
    expect_error(hc, TG_ERR_FORMAT, "more than", "gzip", NULL);
    ck_assert_uint_lt(h.largest, 1u << 20);
    free(g);

    /* 1 MB of incompressible data behind a header claiming 500 MB: within
     * deflate's ratio, so it inflates, finds the data short, and never
     * allocated much more than the data that was there */
    size_t rn = 1u << 20;
    unsigned char *rnd = malloc(rn);
    uint64_t x = 88172645463325252u;
    for (size_t i = 0; i < rn; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        rnd[i] = (unsigned char)x;
    }
    memcpy(rnd, (const unsigned char[]){0, 0, 0x08, 2, 0, 0, 0x10, 0, 0, 0, 0x7d, 0}, 12);
    g = gzip_bytes(rnd, rn, &glen);
    h.largest = 0;
    ck_assert_ptr_null(tg_idx_parse(hc, g, glen, NULL));
    expect_error(hc, TG_ERR_FORMAT, "truncated data", NULL, NULL);
    ck_assert_uint_le(h.largest, 2 * rn);
    free(g);
    free(rnd);

    /* a bomb: 8 MB of zeros behind a header claiming 100 bytes. It stops
     * after the claimed bytes instead of inflating it all. */
    size_t bomb_n = 8u << 20;
    unsigned char *bomb = calloc(1, bomb_n);
    memcpy(bomb, (const unsigned char[]){0, 0, 0x08, 1, 0, 0, 0, 100}, 8);
    g = gzip_bytes(bomb, bomb_n, &glen);
    h.largest = 0;
    ck_assert_ptr_null(tg_idx_parse(hc, g, glen, NULL));
    expect_error(hc, TG_ERR_FORMAT, "trailing bytes", NULL, NULL);
    ck_assert_uint_lt(h.largest, 1u << 20);
    /* ...while the same zeros under an honest header read fine */
    memcpy(bomb, (const unsigned char[]){0, 0, 0x08, 1, 0, 0x7f, 0xff, 0xf8}, 8);
    free(g);
    g = gzip_bytes(bomb, bomb_n, &glen);
    t = tg_idx_parse(hc, g, glen, NULL);
    tu_assert_ok(hc);
    ck_assert_int_eq(tg_numel(t), (int64_t)bomb_n - 8);
    free(g);
    free(bomb);
    tg_ctx_free(hc);
    tu_alloc_assert_no_leak(&h);
    tg_ctx_free(c);
}
END_TEST

/* Allocation failure at every allocation of a gzipped read (zlib's own
 * allocations included): NOMEM with a message, and nothing leaked. */
START_TEST(test_idx_alloc_failure)
{
    size_t len;
    unsigned char *g = tu_slurp(data_path("tiny-images-idx3-ubyte.gz"), &len);
    for (long k = 1;; k++) {
        tu_alloc h = {0};
        tg_ctx *c = hooked_ctx(&h);
        ck_assert_ptr_nonnull(c);
        h.fail_at = h.allocs + k;
        tg_tensor *t = tg_idx_parse(c, g, len, NULL);
        if (t) {
            tu_assert_ok(c);
            tg_ctx_free(c);
            tu_alloc_assert_no_leak(&h);
            ck_assert_int_gt(k, 2); /* some allocations were really failed */
            break;
        }
        expect_error(c, TG_ERR_NOMEM, "tg_idx_parse", NULL, NULL);
        tg_ctx_free(c);
        tu_alloc_assert_no_leak(&h);
        ck_assert_int_lt(k, 100);
    }
    free(g);
}
END_TEST

START_TEST(test_idx_fashion_mnist)
{
    const char *dir = getenv("TG_FASHION_MNIST_DIR"); /* default: Debian's package */
    if (!dir) dir = "/usr/share/datasets/fashion-mnist";
    char p[4][256];
    const char *names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (int i = 0; i < 4; i++) snprintf(p[i], sizeof p[i], "%s/%s", dir, names[i]);
    if (access(p[0], R_OK) != 0) {
        printf("data: %s is absent (apt-get install dataset-fashion-mnist): "
               "test_idx_fashion_mnist skipped\n",
               p[0]);
        return;
    }
    tg_ctx *c = tu_ctx();
    tg_idx_opts o = tg_idx_defaults();
    o.scale = true;
    const int64_t n[2] = {60000, 10000};
    const int64_t first[2][4] = {{9, 0, 0, 3}, {9, 2, 1, 1}};
    for (int s = 0; s < 2; s++) {
        tg_tensor *x = tg_idx_read(c, p[2 * s], &o);
        tg_tensor *y = tg_idx_read(c, p[2 * s + 1], &o);
        tu_assert_ok(c);
        assert_shape(x, 3, (const int64_t[]){n[s], 28, 28});
        assert_shape(y, 1, (const int64_t[]){n[s]});
        ck_assert_int_eq(tg_tensor_dtype(x), TG_F32);
        ck_assert_int_eq(tg_tensor_dtype(y), TG_I64);
        const float *xv = tg_data(x);
        float lo = 1, hi = 0;
        for (int64_t i = 0; i < n[s] * 784; i++) {
            lo = xv[i] < lo ? xv[i] : lo;
            hi = xv[i] > hi ? xv[i] : hi;
        }
        ck_assert_float_eq(lo, 0.0f);
        ck_assert_float_eq(hi, 1.0f);
        const int64_t *yv = tg_data(y);
        int64_t count[10] = {0};
        for (int64_t i = 0; i < n[s]; i++) {
            ck_assert(yv[i] >= 0 && yv[i] < 10);
            count[yv[i]]++;
        }
        for (int k = 0; k < 10; k++) ck_assert_int_eq(count[k], n[s] / 10); /* balanced */
        for (int k = 0; k < 4; k++) ck_assert_int_eq(yv[k], first[s][k]);
        /* the first 100 images alone, from a partial inflate, are the same */
        tg_idx_opts o100 = o;
        o100.max_items = 100;
        tg_tensor *x100 = tg_idx_read(c, p[2 * s], &o100);
        tu_assert_ok(c);
        assert_shape(x100, 3, (const int64_t[]){100, 28, 28});
        ck_assert_mem_eq(tg_data(x100), xv, 100 * 784 * sizeof(float));
        tg_ctx_reset(c);
    }
    tg_ctx_free(c);
}
END_TEST

/* ====================================================================== */
/* CSV                                                                    */
/* ====================================================================== */

START_TEST(test_csv_iris)
{
    tg_ctx *c = tu_ctx();
    tg_csv_opts o = tg_csv_defaults();
    o.label_name = "species";
    tg_csv *t = tg_csv_read(c, data_path("iris.csv"), &o);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_csv_rows(t), 150);
    ck_assert_int_eq(tg_csv_cols(t), 4);
    tg_tensor *x = tg_csv_features(t), *y = tg_csv_labels(t);
    assert_shape(x, 2, (const int64_t[]){150, 4});
    assert_shape(y, 1, (const int64_t[]){150});
    ck_assert_int_eq(tg_tensor_dtype(x), TG_F32);
    ck_assert_int_eq(tg_tensor_dtype(y), TG_I64);
    ck_assert_int_eq(tg_csv_class_count(t), 3);
    ck_assert_str_eq(tg_csv_class_name(t, 0), "setosa");
    ck_assert_str_eq(tg_csv_class_name(t, 1), "versicolor");
    ck_assert_str_eq(tg_csv_class_name(t, 2), "virginica");
    ck_assert_ptr_null(tg_csv_class_name(t, 3));
    ck_assert_str_eq(tg_csv_column_name(t, 0), "sepal_length");
    ck_assert_str_eq(tg_csv_column_name(t, 3), "petal_width");
    ck_assert_ptr_null(tg_csv_column_name(t, 4));
    ck_assert_str_eq(tg_csv_label_column_name(t), "species");
    const int64_t *yv = tg_data(y);
    int64_t count[3] = {0};
    for (int i = 0; i < 150; i++) {
        ck_assert(yv[i] >= 0 && yv[i] < 3);
        count[yv[i]]++;
    }
    ck_assert_int_eq(count[0], 50);
    ck_assert_int_eq(count[1], 50);
    ck_assert_int_eq(count[2], 50);
    const float *xv = tg_data(x);
    const float row0[4] = {5.1f, 3.5f, 1.4f, 0.2f}, row149[4] = {5.9f, 3.0f, 5.1f, 1.8f};
    for (int j = 0; j < 4; j++) {
        ck_assert_float_eq(xv[j], row0[j]);
        ck_assert_float_eq(xv[149 * 4 + j], row149[j]);
    }
    const double sums[4] = {876.5, 458.6, 563.7, 179.9};
    for (int j = 0; j < 4; j++) {
        double s = 0;
        for (int i = 0; i < 150; i++) s += xv[i * 4 + j];
        ck_assert_close(s, sums[j], 1e-3);
    }
    /* the same by index, in f64 */
    o = tg_csv_defaults();
    o.label_col = 4;
    o.dtype = TG_F64;
    t = tg_csv_read(c, data_path("iris.csv"), &o);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_tensor_dtype(tg_csv_features(t)), TG_F64);
    ck_assert_double_eq(tg_get(tg_csv_features(t), (const int64_t[]){0, 0}), 5.1);
    /* no label column: the species cells are not numbers */
    ck_assert_ptr_null(tg_csv_read(c, data_path("iris.csv"), NULL));
    expect_error(c, TG_ERR_FORMAT, "tg_csv_read: ",
                 "iris.csv: line 2: column 5 ('species'): "
                 "'setosa' is not a number",
                 NULL);
    tg_ctx_free(c);
}
END_TEST

static tg_csv *csv(tg_ctx *c, const char *text, const tg_csv_opts *o)
{
    return tg_csv_parse(c, text, strlen(text), o);
}

START_TEST(test_csv_dialects)
{
    tg_ctx *c = tu_ctx();
    /* RFC 4180 quoting, CRLF, blank lines, no final newline, integer labels */
    const char *text = "\xef\xbb\xbf"
                       "\"a, \"\"first\"\"\",b,label\r\n"
                       "\r\n"
                       "1.5,\"-2\",3\r\n"
                       "\n"
                       " 4e2 ,\"\t5 \",-7\r\n"
                       "nan,inf,0";
    tg_csv_opts o = tg_csv_defaults();
    o.label_col = 2;
    tg_csv *t = csv(c, text, &o);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_csv_rows(t), 3);
    ck_assert_str_eq(tg_csv_column_name(t, 0), "a, \"first\"");
    ck_assert_str_eq(tg_csv_column_name(t, 1), "b");
    ck_assert_int_eq(tg_csv_class_count(t), 0); /* integers */
    tu_assert_values(tg_csv_labels(t), 0, 3, -7, 0);
    const float *x = tg_data(tg_csv_features(t));
    ck_assert_float_eq(x[0], 1.5f);
    ck_assert_float_eq(x[1], -2.0f);
    ck_assert_float_eq(x[2], 400.0f);
    ck_assert_float_eq(x[3], 5.0f);
    ck_assert(isnan(x[4]));
    ck_assert(isinf(x[5]));

    /* a quoted class name holding the delimiter and a line break; no header;
     * semicolons */
    o = tg_csv_defaults();
    o.header = false;
    o.delimiter = ';';
    o.label_col = 0;
    t = csv(c, "\"cat;\nwild\";1.5\ndog;2\n\"cat;\nwild\";3\nbird;4\n", &o);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_csv_rows(t), 4);
    ck_assert_int_eq(tg_csv_cols(t), 1);
    ck_assert_int_eq(tg_csv_class_count(t), 3);
    ck_assert_str_eq(tg_csv_class_name(t, 0), "cat;\nwild");
    ck_assert_str_eq(tg_csv_class_name(t, 2), "bird");
    tu_assert_values(tg_csv_labels(t), 0, 0, 1, 0, 2);
    ck_assert_ptr_null(tg_csv_column_name(t, 0));
    tu_assert_values(tg_csv_features(t), 0, 1.5, 2, 3, 4);
    /* a decimal comma is not a number: numbers use the C locale's point */
    ck_assert_ptr_null(csv(c, "x;1,5\n", &o));
    expect_error(c, TG_ERR_FORMAT, "line 1: column 2: '1,5' is not a number", NULL, NULL);

    /* tabs; a header-only file is an empty table of the right width */
    o = tg_csv_defaults();
    o.delimiter = '\t';
    t = csv(c, "x\ty\tz\n", &o);
    tu_assert_ok(c);
    assert_shape(tg_csv_features(t), 2, (const int64_t[]){0, 3});
    /* lone CR line ends (old Mac) and the empty last field after a delimiter */
    o = tg_csv_defaults();
    o.header = false;
    t = csv(c, "1,2\r3,4\r", &o);
    tu_assert_ok(c);
    tu_assert_values(tg_csv_features(t), 0, 1, 2, 3, 4);
    ck_assert_ptr_null(csv(c, "1,2\n3,\n", &o));
    expect_error(c, TG_ERR_FORMAT, "line 2: column 2: '' is not a number", NULL, NULL);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_csv_errors)
{
    tg_ctx *c = tu_ctx();
    tg_csv_opts o = tg_csv_defaults();
    struct {
        const char *text, *says;
    } cases[] = {
        {"a,b\n1,2\n3,x\n", "line 3: column 2 ('b'): 'x' is not a number"},
        {"a,b\n1,2\n\n3,4,5\n", "line 4: more than 2 fields"},
        {"a,b\n1,2\n3\n", "line 3: 1 fields, expected 2"},
        {"a,b\n1,\"2\n", "line 2: unterminated quoted field"},
        {"a,b\n1,\"2\"x\n", "line 2: text after a closing quote"},
        {"", "no records"},
        {"\n\r\n\n", "no records"},
        {"a,b\n1,2 3\n", "'2 3' is not a number"},
        {"a,b\n1,0x\n", "'0x' is not a number"},
        {"a,b\n1,\x01\x02\n", "'?"
                              "?' is not a number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(csv(c, cases[i].text, &o) == NULL, "parsed: %s", cases[i].text);
        expect_error(c, TG_ERR_FORMAT, "tg_csv_parse: buffer: ", cases[i].says, NULL);
    }
    /* a long cell is shown cut */
    char longcell[700] = "a\n";
    memset(longcell + 2, '7', 600);
    longcell[300] = 'x';
    ck_assert_ptr_null(csv(c, longcell, &o));
    expect_error(c, TG_ERR_FORMAT, "...' is not a number", NULL, NULL);
    /* label columns that do not exist */
    o.label_name = "nope";
    ck_assert_ptr_null(csv(c, "a,b\n1,2\n", &o));
    expect_error(c, TG_ERR_FORMAT, "no column named 'nope'", NULL, NULL);
    o = tg_csv_defaults();
    o.label_col = 2;
    ck_assert_ptr_null(csv(c, "a,b\n1,2\n", &o));
    expect_error(c, TG_ERR_FORMAT, "label column 2 does not exist", NULL, NULL);
    /* bad options */
    o = tg_csv_defaults();
    o.delimiter = '"';
    ck_assert_ptr_null(csv(c, "a\n1\n", &o));
    expect_error(c, TG_ERR_INVALID, "delimiter", NULL, NULL);
    o = tg_csv_defaults();
    o.dtype = TG_I64;
    ck_assert_ptr_null(csv(c, "a\n1\n", &o));
    expect_error(c, TG_ERR_INVALID, "dtype", NULL, NULL);
    o = tg_csv_defaults();
    o.header = false;
    o.label_name = "a";
    ck_assert_ptr_null(csv(c, "a\n1\n", &o));
    expect_error(c, TG_ERR_INVALID, "needs a header", NULL, NULL);
    o = tg_csv_defaults();
    o.label_col = -5;
    ck_assert_ptr_null(csv(c, "a\n1\n", &o));
    expect_error(c, TG_ERR_INVALID, "label_col", NULL, NULL);
    ck_assert_ptr_null(tg_csv_parse(c, NULL, 3, NULL));
    expect_error(c, TG_ERR_INVALID, "NULL buffer", NULL, NULL);
    ck_assert_ptr_null(tg_csv_read(c, NULL, NULL));
    expect_error(c, TG_ERR_INVALID, "path", NULL, NULL);
    ck_assert_ptr_null(tg_csv_read(c, data_path("absent.csv"), NULL));
    expect_error(c, TG_ERR_IO, "tg_csv_read", "absent.csv", NULL);
    /* accessors on NULL */
    ck_assert_ptr_null(tg_csv_features(NULL));
    ck_assert_int_eq(tg_csv_rows(NULL), 0);
    ck_assert_ptr_null(tg_csv_class_name(NULL, 0));
    tg_ctx_free(c);
}
END_TEST

/* Every prefix and every bit flip of a tricky table: a table or an error
 * naming the function, never a crash; allocation failure anywhere leaks
 * nothing. */
START_TEST(test_csv_damage_everywhere)
{
    const char *text = "\"x\"\"1\",y,cls\r\n1.5,\"2\",\"a,b\"\r\n\n-3e2,4,c\n5,6,\"a,b\"";
    size_t len = strlen(text);
    tg_csv_opts o = tg_csv_defaults();
    o.label_col = 2;
    tg_ctx *c = tu_ctx();
    tg_csv *t = tg_csv_parse(c, text, len, &o);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_csv_class_count(t), 2);
    tu_assert_values(tg_csv_labels(t), 0, 0, 1, 0);
    unsigned char *b = malloc(len);
    memcpy(b, text, len);
    for (size_t n = 0; n <= len; n++) {
        unsigned char *p = malloc(n ? n : 1);
        memcpy(p, b, n);
        t = tg_csv_parse(c, p, n, &o);
        ck_assert(t != NULL || tg_ctx_status(c) == TG_ERR_FORMAT);
        if (!t) ck_assert(strstr(tg_ctx_errmsg(c), "tg_csv_parse") != NULL);
        tg_ctx_clear_error(c);
        tg_ctx_reset(c);
        free(p);
    }
    for (size_t at = 0; at < len; at++)
        for (int bit = 0; bit < 8; bit++) {
            b[at] ^= (unsigned char)(1u << bit);
            t = tg_csv_parse(c, b, len, &o);
            ck_assert(t != NULL || tg_ctx_status(c) == TG_ERR_FORMAT);
            tg_ctx_clear_error(c);
            tg_ctx_reset(c);
            b[at] ^= (unsigned char)(1u << bit);
        }
    free(b);
    tg_ctx_free(c);

    for (long k = 1;; k++) {
        tu_alloc h = {0};
        c = hooked_ctx(&h);
        h.fail_at = h.allocs + k;
        t = tg_csv_parse(c, text, len, &o);
        bool ok = t != NULL;
        if (!ok) expect_error(c, TG_ERR_NOMEM, NULL, NULL, NULL);
        tg_ctx_free(c);
        tu_alloc_assert_no_leak(&h);
        if (ok) break;
        ck_assert_int_lt(k, 100);
    }
}
END_TEST

/* ====================================================================== */
/* Text                                                                   */
/* ====================================================================== */

START_TEST(test_text_bytes)
{
    tg_ctx *c = tu_ctx();
    size_t len;
    unsigned char *raw = tu_slurp(data_path("genesis.txt"), &len);
    tg_vocab *v = NULL;
    tg_tensor *ids = tg_text_read(c, data_path("genesis.txt"), TG_TEXT_BYTES, &v);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_numel(ids), (int64_t)len);
    ck_assert_int_eq(tg_tensor_dtype(ids), TG_I64);
    ck_assert_int_eq(tg_vocab_size(v), 50);
    ck_assert_int_eq(tg_vocab_kind(v), TG_TEXT_BYTES);
    ck_assert_uint_eq(tg_vocab_unit(v, 0), '\n');
    ck_assert_uint_eq(tg_vocab_unit(v, 1), ' ');
    ck_assert_uint_eq(tg_vocab_unit(v, 49), 'y');
    ck_assert_uint_eq(tg_vocab_unit(v, 50), UINT32_MAX);
    for (int64_t i = 1; i < 50; i++)
        ck_assert_uint_lt(tg_vocab_unit(v, i - 1), tg_vocab_unit(v, i));
    ck_assert_int_eq(tg_vocab_index(v, 'G'), 20);
    ck_assert_int_eq(tg_vocab_index(v, 'z'), -1);
    /* decoding the indices gives the file back */
    char *back = malloc(len + 1);
    ck_assert_int_eq(tg_vocab_decode(v, tg_data(ids), tg_numel(ids), back, len + 1), (int64_t)len);
    ck_assert(memcmp(back, raw, len) == 0);
    /* encode a prompt */
    tg_tensor *p = tg_vocab_encode(c, v, "God", 3);
    tu_assert_ok(c);
    tu_assert_values(p, 0, 20, (double)tg_vocab_index(v, 'o'), (double)tg_vocab_index(v, 'd'));
    ck_assert_ptr_null(tg_vocab_encode(c, v, "Gz", 2));
    expect_error(c, TG_ERR_INVALID, "tg_vocab_encode: 'z' (byte 0x007A) at byte 1", NULL, NULL);
    /* snprintf-like decode */
    char small[3];
    ck_assert_int_eq(tg_vocab_decode(v, tg_data(ids), 10, small, sizeof small), 10);
    ck_assert_str_eq(small, "\nG");
    ck_assert_int_eq(tg_vocab_decode(v, tg_data(ids), 10, NULL, 0), 10);
    const int64_t bad[2] = {0, 50};
    ck_assert_int_eq(tg_vocab_decode(v, bad, 2, small, sizeof small), -1);
    ck_assert_str_eq(small, "");
    ck_assert_int_eq(tg_vocab_decode(NULL, bad, 1, small, sizeof small), -1);
    /* any bytes read as bytes, an empty text too */
    const unsigned char bin[4] = {0xff, 0, 0x80, 0xff};
    ids = tg_text_parse(c, bin, 4, TG_TEXT_BYTES, &v);
    tu_assert_values(ids, 0, 2, 0, 1, 2);
    ids = tg_text_parse(c, "", 0, TG_TEXT_BYTES, &v);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_numel(ids), 0);
    ck_assert_int_eq(tg_vocab_size(v), 0);
    free(back);
    free(raw);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_text_utf8)
{
    tg_ctx *c = tu_ctx();
    size_t len;
    unsigned char *raw = tu_slurp(data_path("utf8.txt"), &len);
    tg_vocab *v;
    tg_tensor *ids = tg_text_read(c, data_path("utf8.txt"), TG_TEXT_UTF8, &v);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_numel(ids), 32); /* code points, not bytes */
    ck_assert_int_eq(tg_vocab_size(v), 25);
    ck_assert_uint_eq(tg_vocab_unit(v, 0), '\n');
    ck_assert_uint_eq(tg_vocab_unit(v, 24), 0x1F680); /* the rocket, largest */
    ck_assert_int_eq(tg_vocab_index(v, 0xEF), tg_get(ids, (const int64_t[]){2})); /* ï */
    char *back = malloc(len + 1);
    ck_assert_int_eq(tg_vocab_decode(v, tg_data(ids), 32, back, len + 1), (int64_t)len);
    ck_assert(memcmp(back, raw, len) == 0);
    /* truncation never cuts a sequence: "naï" needs 4 bytes */
    char small[4];
    ck_assert_int_eq(tg_vocab_decode(v, tg_data(ids), 3, small, sizeof small), 4);
    ck_assert_str_eq(small, "na");
    tg_tensor *p = tg_vocab_encode(c, v, "café", strlen("café"));
    tu_assert_ok(c);
    ck_assert_int_eq(tg_numel(p), 4);
    ck_assert_ptr_null(tg_vocab_encode(c, v, "\xce\xa9", 2));
    expect_error(c, TG_ERR_INVALID, "U+03A9", "not in the vocabulary", NULL);
    ck_assert_ptr_null(tg_vocab_encode(c, v, "a\xff", 2));
    expect_error(c, TG_ERR_FORMAT, "invalid UTF-8 at byte 1", NULL, NULL);
    /* the same file as bytes: more units, byte vocabulary */
    ids = tg_text_read(c, data_path("utf8.txt"), TG_TEXT_BYTES, &v);
    ck_assert_int_eq(tg_numel(ids), (int64_t)len);

    /* strict UTF-8 */
    struct {
        const char *s;
        const char *says;
    } bad[] = {
        {"ok\n\xc0\x80", "byte 3 (line 2): 0xc0"}, /* overlong NUL */
        {"\xe0\x80\xaf", "byte 0"},                /* overlong '/' */
        {"ab\xed\xa0\x80", "byte 2"},              /* a surrogate */
        {"\xf4\x90\x80\x80", "byte 0"},            /* above U+10FFFF */
        {"\xe6\x97", "byte 0"},                    /* cut sequence */
        {"x\x80", "byte 1"},                       /* lone continuation */
        {"\xf8\x88\x80\x80\x80", "byte 0"},        /* 5-byte form */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_ptr_null(tg_text_parse(c, bad[i].s, strlen(bad[i].s), TG_TEXT_UTF8, &v));
        ck_assert_ptr_null(v);
        expect_error(c, TG_ERR_FORMAT, "tg_text_parse: buffer: invalid UTF-8 at ", bad[i].says,
                     NULL);
    }
    ck_assert_ptr_null(tg_text_read(c, data_path("absent.txt"), TG_TEXT_UTF8, &v));
    expect_error(c, TG_ERR_IO, "tg_text_read", "absent.txt", NULL);
    ck_assert_ptr_null(tg_text_parse(c, "a", 1, (tg_text_unit)9, &v));
    expect_error(c, TG_ERR_INVALID, "unit", NULL, NULL);
    ck_assert_ptr_null(tg_text_parse(c, "a", 1, TG_TEXT_UTF8, NULL));
    expect_error(c, TG_ERR_INVALID, "vocab", NULL, NULL);
    /* every prefix of the file: valid text or a UTF-8 error, never a crash */
    for (size_t n = 0; n < len; n++) {
        tg_tensor *t = tg_text_parse(c, raw, n, TG_TEXT_UTF8, &v);
        ck_assert(t != NULL || tg_ctx_status(c) == TG_ERR_FORMAT);
        tg_ctx_clear_error(c);
        tg_ctx_reset(c);
    }
    free(back);
    free(raw);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_vocab_new)
{
    tg_ctx *c = tu_ctx();
    const uint32_t u[6] = {0x1F680, 'b', 'a', 'b', 0xE9, 'a'};
    tg_vocab *v = tg_vocab_new(c, TG_TEXT_UTF8, u, 6);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_vocab_size(v), 4);
    ck_assert_uint_eq(tg_vocab_unit(v, 0), 'a');
    ck_assert_uint_eq(tg_vocab_unit(v, 3), 0x1F680);
    ck_assert_int_eq(tg_vocab_index(v, 0xE9), 2);
    const int64_t ids[3] = {3, 2, 0};
    char buf[16];
    ck_assert_int_eq(tg_vocab_decode(v, ids, 3, buf, sizeof buf), 7);
    ck_assert_str_eq(buf, "\xf0\x9f\x9a\x80\xc3\xa9"
                          "a");
    ck_assert_ptr_null(tg_vocab_new(c, TG_TEXT_BYTES, u, 6));
    expect_error(c, TG_ERR_INVALID, "units[0] = 128640 is not a byte value", NULL, NULL);
    const uint32_t sur = 0xD800;
    ck_assert_ptr_null(tg_vocab_new(c, TG_TEXT_UTF8, &sur, 1));
    expect_error(c, TG_ERR_INVALID, "Unicode scalar value", NULL, NULL);
    ck_assert_ptr_null(tg_vocab_new(c, TG_TEXT_UTF8, NULL, 2));
    expect_error(c, TG_ERR_INVALID, NULL, NULL, NULL);
    v = tg_vocab_new(c, TG_TEXT_BYTES, NULL, 0);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_vocab_size(v), 0);
    ck_assert_int_eq(tg_vocab_size(NULL), 0);
    ck_assert_int_eq(tg_vocab_index(NULL, 'a'), -1);
    tg_ctx_free(c);
}
END_TEST

/* Allocation failure at every allocation of a text read and a batcher:
 * NOMEM, a message, nothing leaked. */
START_TEST(test_text_and_batcher_alloc_failure)
{
    for (int what = 0; what < 3; what++)
        for (long k = 1;; k++) {
            tu_alloc h = {0};
            tg_ctx *c = hooked_ctx(&h);
            h.fail_at = h.allocs + k;
            tg_vocab *v;
            tg_tensor *t = NULL;
            void *r;
            if (what == 0) r = t = tg_text_parse(c, "h\xc3\xa9llo", 6, TG_TEXT_UTF8, &v);
            else if (what == 1)
                r = t = tg_text_read(c, data_path("genesis.txt"), TG_TEXT_BYTES, &v);
            else r = tg_batcher_new(c, 100000, NULL);
            bool ok = r != NULL;
            if (!ok) {
                tu_assert_status(tg_ctx_status(c), TG_ERR_NOMEM);
                ck_assert(tg_ctx_errmsg(c)[0] != '\0');
            }
            tg_ctx_free(c);
            tu_alloc_assert_no_leak(&h);
            if (ok) break;
            ck_assert_int_lt(k, 100);
        }
}
END_TEST

/* ====================================================================== */
/* Batches                                                                */
/* ====================================================================== */

/* Runs one epoch, checking every index appears once (or, with drop_last,
 * at most once and n - n % B in all); returns the order in out. */
static void one_epoch(tg_batcher *b, int64_t n, int64_t bs, bool drop_last, int64_t *out)
{
    char *seen = calloc(1, (size_t)n + 1);
    const int64_t *idx;
    int64_t m, total = 0, batches = 0;
    while ((m = tg_batcher_next(b, &idx)) > 0) {
        int64_t left = (drop_last ? n - n % bs : n) - total;
        ck_assert_int_eq(m, left < bs ? left : bs);
        for (int64_t i = 0; i < m; i++) {
            ck_assert(idx[i] >= 0 && idx[i] < n);
            ck_assert_msg(!seen[idx[i]], "index %lld twice in an epoch", (long long)idx[i]);
            seen[idx[i]] = 1;
            if (out) out[total + i] = idx[i];
        }
        total += m;
        batches++;
    }
    ck_assert_int_eq(m, 0);
    ck_assert_ptr_null(idx);
    ck_assert_int_eq(total, drop_last ? n - n % bs : n);
    ck_assert_int_eq(batches, tg_batcher_batches(b));
    free(seen);
}

START_TEST(test_batcher_epochs)
{
    tg_ctx *c = tu_ctx();
    const int64_t ns[5] = {0, 1, 7, 32, 100};
    const int64_t bss[4] = {1, 3, 32, 200};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            for (int d = 0; d < 2; d++) {
                tg_batcher_opts o = tg_batcher_defaults();
                o.batch_size = bss[j];
                o.drop_last = d;
                o.seed = 42;
                tg_batcher *b = tg_batcher_new(c, ns[i], &o);
                tu_assert_ok(c);
                int64_t want = d ? ns[i] / bss[j] : (ns[i] + bss[j] - 1) / bss[j];
                ck_assert_int_eq(tg_batcher_batches(b), want);
                for (int e = 0; e < 3; e++) {
                    ck_assert_int_eq(tg_batcher_epoch(b), e);
                    one_epoch(b, ns[i], bss[j], d, NULL);
                }
            }
    /* 10 samples in batches of 4: 4, 4, 2 (kept) or 4, 4 (dropped) */
    tg_batcher_opts o = tg_batcher_defaults();
    o.batch_size = 4;
    tg_batcher *b = tg_batcher_new(c, 10, &o);
    const int64_t *idx;
    ck_assert_int_eq(tg_batcher_next(b, &idx), 4);
    ck_assert_int_eq(tg_batcher_next(b, &idx), 4);
    ck_assert_int_eq(tg_batcher_next(b, &idx), 2);
    ck_assert_int_eq(tg_batcher_next(b, &idx), 0);
    ck_assert_int_eq(tg_batcher_epoch(b), 1);
    o.drop_last = true;
    b = tg_batcher_new(c, 10, &o);
    ck_assert_int_eq(tg_batcher_next(b, &idx), 4);
    ck_assert_int_eq(tg_batcher_next(b, &idx), 4);
    ck_assert_int_eq(tg_batcher_next(b, &idx), 0);
    /* no shuffle: 0..n-1 every epoch */
    o = tg_batcher_defaults();
    o.shuffle = false;
    o.batch_size = 3;
    b = tg_batcher_new(c, 8, &o);
    int64_t order[8];
    for (int e = 0; e < 2; e++) {
        one_epoch(b, 8, 3, false, order);
        for (int i = 0; i < 8; i++) ck_assert_int_eq(order[i], i);
    }
    /* errors */
    o = tg_batcher_defaults();
    o.batch_size = 0;
    ck_assert_ptr_null(tg_batcher_new(c, 5, &o));
    expect_error(c, TG_ERR_INVALID, "tg_batcher_new: batch_size 0", NULL, NULL);
    ck_assert_ptr_null(tg_batcher_new(c, -1, NULL));
    expect_error(c, TG_ERR_INVALID, "-1", NULL, NULL);
    ck_assert_int_eq(tg_batcher_next(NULL, &idx), -1);
    ck_assert_int_eq(tg_batcher_next(b, NULL), -1);
    ck_assert_int_eq(tg_batcher_batches(NULL), 0);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_batcher_determinism)
{
    tg_ctx *c = tu_ctx();
    enum { N = 50 };
    tg_batcher_opts o = tg_batcher_defaults();
    o.batch_size = 8;
    o.seed = 7;
    tg_batcher *a = tg_batcher_new(c, N, &o), *b = tg_batcher_new(c, N, &o);
    o.seed = 8;
    tg_batcher *d = tg_batcher_new(c, N, &o);
    int64_t ea[3][N], eb[3][N], ed[N];
    for (int e = 0; e < 3; e++) {
        one_epoch(a, N, 8, false, ea[e]);
        one_epoch(b, N, 8, false, eb[e]);
        ck_assert(memcmp(ea[e], eb[e], sizeof ea[e]) == 0); /* same seed, same order */
    }
    one_epoch(d, N, 8, false, ed);
    ck_assert(memcmp(ea[0], ed, sizeof ed) != 0);    /* another seed, another order */
    ck_assert(memcmp(ea[0], ea[1], sizeof ed) != 0); /* each epoch reshuffles */
    ck_assert(memcmp(ea[1], ea[2], sizeof ed) != 0);
    /* a fixed seed gives a fixed order, on every platform */
    o = tg_batcher_defaults();
    o.batch_size = 10;
    o.seed = 1;
    tg_batcher *f = tg_batcher_new(c, 10, &o);
    int64_t first[10];
    one_epoch(f, 10, 10, false, first);
    tg_batcher *g = tg_batcher_new(c, 10, &o);
    int64_t again[10];
    one_epoch(g, 10, 10, false, again);
    ck_assert(memcmp(first, again, sizeof first) == 0);
    /* roughly uniform: each of 4 samples leads an epoch ~1/4 of the time */
    o = tg_batcher_defaults();
    o.batch_size = 4;
    tg_batcher *u = tg_batcher_new(c, 4, &o);
    int lead[4] = {0};
    for (int e = 0; e < 4000; e++) {
        int64_t ord[4];
        one_epoch(u, 4, 4, false, ord);
        lead[ord[0]]++;
    }
    for (int i = 0; i < 4; i++) ck_assert_msg(lead[i] > 850 && lead[i] < 1150, "%d", lead[i]);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_batcher_state_restore)
{
    tg_ctx *c = tu_ctx();
    enum { N = 23, B = 5, K = 40 };
    tg_batcher_opts o = tg_batcher_defaults();
    o.batch_size = B;
    o.seed = 99;
    /* save at every point of the first three epochs: the continuation
     * from a restored state equals the uninterrupted one */
    for (int cut = 0; cut < 3 * 6; cut++) {
        tg_batcher *a = tg_batcher_new(c, N, &o);
        const int64_t *idx;
        for (int i = 0; i < cut; i++) tg_batcher_next(a, &idx);
        tg_batcher_state s = tg_batcher_get_state(a);
        int64_t want[K][B + 1], got[K][B + 1];
        for (int i = 0; i < K; i++) {
            int64_t m = tg_batcher_next(a, &idx);
            want[i][0] = m;
            for (int64_t k = 0; k < m; k++) want[i][k + 1] = idx[k];
        }
        tg_batcher *r = tg_batcher_new(c, N, &o);
        o.seed++; /* a restored batcher's own seed does not matter */
        tg_batcher *r2 = tg_batcher_new(c, N, &o);
        o.seed--;
        tg_batcher *rs[2] = {r, r2};
        for (int w = 0; w < 2; w++) {
            ck_assert_int_eq(tg_batcher_set_state(rs[w], &s), TG_OK);
            ck_assert_int_eq(tg_batcher_epoch(rs[w]), s.epoch);
            for (int i = 0; i < K; i++) {
                int64_t m = tg_batcher_next(rs[w], &idx);
                got[i][0] = m;
                for (int64_t k = 0; k < m; k++) got[i][k + 1] = idx[k];
                ck_assert_int_eq(got[i][0], want[i][0]);
                for (int64_t k = 0; k < m; k++) ck_assert_int_eq(got[i][k + 1], want[i][k + 1]);
            }
        }
        tg_ctx_reset(c);
    }
    /* the state travels as an I64 tensor of 7 elements (for a checkpoint) */
    ck_assert_uint_eq(sizeof(tg_batcher_state), 7 * sizeof(int64_t));
    tg_batcher *a7 = tg_batcher_new(c, N, &o);
    const int64_t *i7;
    for (int i = 0; i < 9; i++) tg_batcher_next(a7, &i7);
    tg_batcher_state s7 = tg_batcher_get_state(a7), back7;
    tg_tensor *t7 = tg_tensor_from(c, TG_I64, TG_SHAPE(7), &s7);
    ck_assert_int_eq(tg_copy_out(t7, &back7, sizeof back7), TG_OK);
    ck_assert(memcmp(&s7, &back7, sizeof s7) == 0);
    tg_batcher *r7 = tg_batcher_new(c, N, &o);
    ck_assert_int_eq(tg_batcher_set_state(r7, &back7), TG_OK);
    const int64_t *j7;
    for (int i = 0; i < 12; i++) {
        int64_t m = tg_batcher_next(a7, &i7);
        ck_assert_int_eq(tg_batcher_next(r7, &j7), m);
        if (m) ck_assert(memcmp(i7, j7, (size_t)m * sizeof *i7) == 0);
    }

    /* bad states leave the batcher as it was */
    tg_batcher *a = tg_batcher_new(c, N, &o);
    tg_batcher_state s = tg_batcher_get_state(a), bad = s;
    bad.n = N + 1;
    ck_assert_int_eq(tg_batcher_set_state(a, &bad), TG_ERR_INVALID);
    expect_error(c, TG_ERR_INVALID, "tg_batcher_set_state", "24 samples", NULL);
    bad = s;
    bad.pos = N + 1;
    ck_assert_int_eq(tg_batcher_set_state(a, &bad), TG_ERR_INVALID);
    tg_ctx_clear_error(c);
    bad = s;
    memset(bad.rng, 0, sizeof bad.rng);
    ck_assert_int_eq(tg_batcher_set_state(a, &bad), TG_ERR_INVALID);
    tg_ctx_clear_error(c);
    ck_assert_int_eq(tg_batcher_set_state(a, NULL), TG_ERR_INVALID);
    tg_ctx_clear_error(c);
    ck_assert_int_eq(tg_batcher_set_state(NULL, &s), TG_ERR_INVALID);
    tg_batcher_state now = tg_batcher_get_state(a);
    ck_assert(memcmp(&now, &s, sizeof s) == 0);
    tg_batcher_state z = tg_batcher_get_state(NULL);
    ck_assert_int_eq(z.n, 0);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_gather_rows)
{
    tu_alloc h = {0};
    tg_ctx *p = hooked_ctx(&h); /* persistent: data, batcher, batch buffers */
    enum { N = 10, B = 4 };
    float xs[N][2][3];
    int64_t ys[N];
    for (int i = 0; i < N; i++) {
        ys[i] = 100 + i;
        for (int j = 0; j < 6; j++) xs[i][j / 3][j % 3] = (float)(i * 10 + j);
    }
    tg_tensor *x = tg_tensor_from(p, TG_F32, TG_SHAPE(N, 2, 3), xs);
    tg_tensor *y = tg_tensor_from(p, TG_I64, TG_SHAPE(N), ys);
    tg_tensor *bx = tg_tensor_new(p, TG_F32, TG_SHAPE(B, 2, 3));
    tg_tensor *by = tg_tensor_new(p, TG_I64, TG_SHAPE(B));
    tg_batcher_opts o = tg_batcher_defaults();
    o.batch_size = B;
    o.seed = 3;
    tg_batcher *b = tg_batcher_new(p, N, &o);
    tu_assert_ok(p);
    long allocs = h.allocs;
    size_t used = tg_ctx_bytes_used(p);
    for (int e = 0; e < 5; e++) {
        const int64_t *idx;
        int64_t m;
        while ((m = tg_batcher_next(b, &idx)) > 0) {
            ck_assert_int_eq(tg_gather_rows(p, bx, x, idx, m), TG_OK);
            ck_assert_int_eq(tg_gather_rows(p, by, y, idx, m), TG_OK);
            const float *bv = tg_data(bx);
            const int64_t *yv = tg_data(by);
            for (int64_t i = 0; i < m; i++) {
                ck_assert_int_eq(yv[i], 100 + idx[i]);
                for (int j = 0; j < 6; j++) ck_assert_float_eq(bv[i * 6 + j], idx[i] * 10 + j);
            }
        }
    }
    ck_assert_int_eq(h.allocs, allocs); /* no allocation per batch or epoch */
    ck_assert_uint_eq(tg_ctx_bytes_used(p), used);

    /* errors, with dst unchanged */
    const int64_t out_of_range[2] = {1, N};
    ck_assert_int_eq(tg_gather_rows(p, bx, x, out_of_range, 2), TG_ERR_INVALID);
    expect_error(p, TG_ERR_INVALID, "tg_gather_rows: idx[1] = 10 is outside [0, 10)", NULL, NULL);
    const int64_t ok2[2] = {0, 1};
    ck_assert_int_eq(tg_gather_rows(p, bx, y, ok2, 2), TG_ERR_DTYPE);
    tg_ctx_clear_error(p);
    ck_assert_int_eq(tg_gather_rows(p, bx, x, ok2, B + 1), TG_ERR_SHAPE);
    tg_ctx_clear_error(p);
    tg_tensor *wrong = tg_tensor_new(p, TG_F32, TG_SHAPE(B, 3, 2));
    ck_assert_int_eq(tg_gather_rows(p, wrong, x, ok2, 2), TG_ERR_SHAPE);
    expect_error(p, TG_ERR_SHAPE, "[4,3,2]", NULL, NULL);
    ck_assert_int_eq(tg_gather_rows(p, bx, tg_transpose(p, x, 1, 2), ok2, 2), TG_ERR_SHAPE);
    tg_ctx_clear_error(p);
    tg_tensor *xt = tg_transpose(p, tg_tensor_new(p, TG_F32, TG_SHAPE(N, 3, 2)), 1, 2);
    ck_assert_int_eq(tg_gather_rows(p, bx, xt, ok2, 2), TG_ERR_INVALID);
    expect_error(p, TG_ERR_INVALID, "contiguous", NULL, NULL);
    ck_assert_int_eq(tg_gather_rows(p, x, x, ok2, 2), TG_ERR_INVALID);
    expect_error(p, TG_ERR_INVALID, "share storage", NULL, NULL);
    ck_assert_int_eq(tg_gather_rows(p, bx, x, NULL, 2), TG_ERR_INVALID);
    tg_ctx_clear_error(p);
    ck_assert_int_eq(tg_gather_rows(p, bx, x, ok2, -1), TG_ERR_INVALID);
    tg_ctx_clear_error(p);
    ck_assert_int_eq(tg_gather_rows(NULL, bx, x, ok2, 2), TG_ERR_INVALID);
    ck_assert_int_eq(tg_gather_rows(p, bx, x, NULL, 0), TG_OK);
    tg_ctx_free(p);
    tu_alloc_assert_no_leak(&h);
}
END_TEST

Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *tc = tu_tcase("idx");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_idx_tiny_plain_and_gzip);
    tcase_add_test(tc, test_idx_element_types);
    tcase_add_test(tc, test_idx_damaged_files);
    tcase_add_test(tc, test_idx_truncated_and_flipped_everywhere);
    tcase_add_test(tc, test_idx_hostile_headers);
    tcase_add_test(tc, test_idx_alloc_failure);
    suite_add_tcase(s, tc);
    tc = tu_tcase("fashion_mnist");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_idx_fashion_mnist);
    suite_add_tcase(s, tc);
    tc = tu_tcase("csv");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_csv_iris);
    tcase_add_test(tc, test_csv_dialects);
    tcase_add_test(tc, test_csv_errors);
    tcase_add_test(tc, test_csv_damage_everywhere);
    suite_add_tcase(s, tc);
    tc = tu_tcase("text");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_text_bytes);
    tcase_add_test(tc, test_text_utf8);
    tcase_add_test(tc, test_vocab_new);
    tcase_add_test(tc, test_text_and_batcher_alloc_failure);
    suite_add_tcase(s, tc);
    tc = tu_tcase("batch");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_batcher_epochs);
    tcase_add_test(tc, test_batcher_determinism);
    tcase_add_test(tc, test_batcher_state_restore);
    tcase_add_test(tc, test_gather_rows);
    suite_add_tcase(s, tc);
    return s;
}
