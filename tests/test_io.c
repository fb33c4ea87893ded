/*
 * test_io.c - checkpoints (safetensors) and .npy files: round trips in
 * every dtype and layout, files written by PyTorch's safetensors and by
 * NumPy, and every kind of damage: truncation at every length, a flipped
 * byte at every header position, and hand-made corruptions, each giving a
 * status and a message, never a crash.
 */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tapegrad.h"
#include "test_util.h"

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tg-io-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            unlink(p);
        }
    if (d) closedir(d);
    rmdir(tmpdir);
}

static const char *tmp_path(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

static int count_files(void)
{
    int n = 0;
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

static const char *data_path(const char *rel)
{
    static char p[1024];
    const char *dir = getenv("TG_DATA_DIR");
    snprintf(p, sizeof p, "%s/%s", dir ? dir : "tests/data", rel);
    return p;
}

static void assert_same(const tg_tensor *a, const tg_tensor *b)
{
    ck_assert_int_eq(tg_tensor_dtype(a), tg_tensor_dtype(b));
    ck_assert_int_eq(tg_ndim(a), tg_ndim(b));
    for (int i = 0; i < tg_ndim(a); i++) ck_assert_int_eq(tg_shape(a)[i], tg_shape(b)[i]);
    size_t n = (size_t)tg_numel(a) * tg_dtype_size(tg_tensor_dtype(a));
    unsigned char *x = malloc(n + 1), *y = malloc(n + 1);
    ck_assert_int_eq(tg_copy_out(a, x, n), TG_OK);
    ck_assert_int_eq(tg_copy_out(b, y, n), TG_OK);
    ck_assert(memcmp(x, y, n) == 0);
    free(x);
    free(y);
}

/* ---- round trips -------------------------------------------------------- */

START_TEST(test_safetensors_round_trip)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *t[5];
    t[0] = tg_randn(c, TG_F32, TG_SHAPE(3, 4));
    t[1] = tg_transpose(c, tg_randn(c, TG_F64, TG_SHAPE(2, 5)), 0, 1); /* strided */
    t[2] = tg_arange(c, TG_I64, -3, 9, 2);
    t[3] = tg_scalar(c, TG_F32, 2.5);
    t[4] = tg_tensor_new(c, TG_F64, TG_SHAPE(0, 7));
    const char *names[5] = {"layer.weight", "layer.transposed", "counts", "scalar", "empty"};
    const char *keys[2] = {"epoch", "note"}, *vals[2] = {"7", "quote \" and \\ and \xc3\xa9"};
    const char *path = tmp_path("model.safetensors");
    ck_assert_int_eq(tg_safetensors_write(c, path, 5, t, names, 2, keys, vals), TG_OK);
    ck_assert_int_eq(count_files(), 1); /* no temporary left behind */

    tg_ctx *r = tu_ctx();
    tg_safetensors *f = tg_safetensors_read(r, path);
    ck_assert_msg(f != NULL, "%s", tg_ctx_errmsg(r));
    ck_assert_int_eq(tg_safetensors_count(f), 5);
    for (int i = 0; i < 5; i++) {
        tg_tensor *got = tg_safetensors_find(f, names[i]);
        ck_assert_ptr_nonnull(got);
        ck_assert_str_eq(tg_tensor_name(got), names[i]);
        ck_assert(tg_is_contiguous(got));
        assert_same(t[i], got);
    }
    ck_assert_str_eq(tg_safetensors_meta(f, "epoch"), "7");
    ck_assert_str_eq(tg_safetensors_meta(f, "note"), vals[1]);
    ck_assert_ptr_null(tg_safetensors_meta(f, "missing"));
    ck_assert_int_eq(tg_safetensors_meta_count(f), 2);
    ck_assert_ptr_null(tg_safetensors_tensor(f, 5));
    ck_assert_ptr_null(tg_safetensors_name(f, -1));

    /* names from the tensors themselves; overwrite the existing file */
    tg_tensor_set_name(t[0], "a");
    tg_tensor_set_name(t[2], "b");
    tg_tensor *two[2] = {t[0], t[2]};
    ck_assert_int_eq(tg_safetensors_write(c, path, 2, two, NULL, 0, NULL, NULL), TG_OK);
    f = tg_safetensors_read(r, path);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(tg_safetensors_count(f), 2);
    assert_same(t[2], tg_safetensors_find(f, "b"));
    ck_assert_int_eq(count_files(), 1);
    tg_ctx_free(r);
    tg_ctx_free(c);
}
END_TEST

/* A file written by PyTorch's safetensors (tools/make_safetensors_golden.py). */
START_TEST(test_safetensors_torch_written)
{
    tg_ctx *c = tu_ctx();
    tg_safetensors *f = tg_safetensors_read(c, data_path("safetensors/torch_written.safetensors"));
    ck_assert_msg(f != NULL, "%s", tg_ctx_errmsg(c));
    ck_assert_int_eq(tg_safetensors_count(f), 5);
    tg_tensor *w = tg_safetensors_find(f, "fc1.weight");
    ck_assert_int_eq(tg_tensor_dtype(w), TG_F32);
    ck_assert_int_eq(tg_ndim(w), 2);
    const double wv[6] = {-0.5, -0.25, 0.0, 0.25, 0.5, 0.75}; /* arange(6)/4 - 0.5 */
    for (int i = 0; i < 6; i++) ck_assert_double_eq(tg_get(w, (int64_t[]){i / 3, i % 3}), wv[i]);
    tg_tensor *b = tg_safetensors_find(f, "fc1.bias");
    ck_assert_double_eq(tg_get(b, (int64_t[]){1}), -2.25);
    tg_tensor *s = tg_safetensors_find(f, "scale");
    ck_assert_int_eq(tg_ndim(s), 0);
    ck_assert_int_eq(tg_tensor_dtype(s), TG_F64);
    ck_assert_double_eq(tg_item(s), 3.0);
    tg_tensor *k = tg_safetensors_find(f, "counts");
    ck_assert_int_eq(tg_tensor_dtype(k), TG_I64);
    int64_t kv[3];
    ck_assert_int_eq(tg_copy_out(k, kv, sizeof kv), TG_OK);
    ck_assert_int_eq(kv[0], 7);
    ck_assert_int_eq(kv[1], -1);
    ck_assert_int_eq(kv[2], (int64_t)1 << 40);
    ck_assert_int_eq(tg_numel(tg_safetensors_find(f, "empty")), 0);
    ck_assert_str_eq(tg_safetensors_meta(f, "format"), "pt");
    ck_assert_str_eq(tg_safetensors_meta(f, "epoch"), "3");
    tg_ctx_free(c);
}
END_TEST

/* ---- damage ------------------------------------------------------------- */

static unsigned char *valid_file(size_t *len)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *t[2] = {tg_randn(c, TG_F32, TG_SHAPE(2, 3)), tg_arange(c, TG_I64, 0, 4, 1)};
    const char *names[2] = {"w", "idx"};
    const char *k = "epoch", *v = "1";
    const char *path = tmp_path("valid.safetensors");
    ck_assert_int_eq(tg_safetensors_write(c, path, 2, t, names, 1, &k, &v), TG_OK);
    tg_ctx_free(c);
    return tu_slurp(path, len);
}

START_TEST(test_safetensors_truncated_everywhere)
{
    size_t len;
    unsigned char *b = valid_file(&len);
    tg_ctx *c = tu_ctx();
    for (size_t n = 0; n < len; n++) {
        tg_safetensors *f = tg_safetensors_parse(c, b, n);
        ck_assert_msg(f == NULL, "a %zu-byte prefix of a %zu-byte file parsed", n, len);
        ck_assert_int_eq(tg_ctx_status(c), TG_ERR_FORMAT);
        ck_assert_msg(strstr(tg_ctx_errmsg(c), "tg_safetensors_parse") != NULL, "%s",
                      tg_ctx_errmsg(c));
        tg_ctx_clear_error(c);
        tg_ctx_reset(c);
    }
    ck_assert_ptr_nonnull(tg_safetensors_parse(c, b, len));
    /* one byte too many: trailing garbage is refused too */
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, b, len);
    longer[len] = 0;
    ck_assert_ptr_null(tg_safetensors_parse(c, longer, len + 1));
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "trailing"));
    free(longer);
    free(b);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_safetensors_flipped_bytes)
{
    size_t len;
    unsigned char *b = valid_file(&len);
    tg_ctx *c = tu_ctx();
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)b[i] << (8 * i);
    for (size_t at = 0; at < 8 + hl; at++) {
        for (int bit = 0; bit < 8; bit++) {
            b[at] ^= (unsigned char)(1u << bit);
            tg_safetensors *f = tg_safetensors_parse(c, b, len);
            tg_status st = tg_ctx_status(c);
            ck_assert(f != NULL || st == TG_ERR_FORMAT || st == TG_ERR_DTYPE);
            ck_assert(f == NULL || st == TG_OK);
            if (!f) ck_assert(tg_ctx_errmsg(c)[0] != '\0');
            tg_ctx_clear_error(c);
            tg_ctx_reset(c);
            b[at] ^= (unsigned char)(1u << bit);
        }
    }
    free(b);
    tg_ctx_free(c);
}
END_TEST

/* A header made by hand, followed by data bytes. */
static tg_status parse_made(tg_ctx *c, const char *json, size_t data_len, const char *expect)
{
    size_t hl = strlen(json);
    unsigned char *b = calloc(1, 8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, hl);
    tg_safetensors *f = tg_safetensors_parse(c, b, 8 + hl + data_len);
    free(b);
    tg_status st = tg_ctx_status(c);
    if (expect) {
        ck_assert_msg(f == NULL, "parsed: %s", json);
        ck_assert_msg(strstr(tg_ctx_errmsg(c), expect) != NULL, "'%s' lacks '%s'",
                      tg_ctx_errmsg(c), expect);
    }
    tg_ctx_clear_error(c);
    return st;
}

START_TEST(test_safetensors_corruptions)
{
    tg_ctx *c = tu_ctx();
    /* a well-formed one first */
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, NULL), TG_OK);
    ck_assert_int_eq(parse_made(c, "[1,2]", 0, "not a JSON object"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"a\":", 0, "not a JSON object"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"a\":3}", 0, "not an object"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "BF16"), TG_ERR_DTYPE);
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0]"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "shape[0]"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dims"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "overflow"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12, "12 bytes"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "begin <= end"), TG_ERR_FORMAT);
    /* a gap, an overlap, data left over, data missing */
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "tile"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "tile"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "trailing"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "truncated"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "twice"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"__metadata__\":{\"k\":1}}", 0, "not a string"), TG_ERR_FORMAT);
    ck_assert_int_eq(parse_made(c, "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype"), TG_ERR_FORMAT);
    /* a header length beyond the file */
    unsigned char big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    ck_assert_ptr_null(tg_safetensors_parse(c, big, sizeof big));
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "header length"));
    tg_ctx_clear_error(c);
    /* an empty file is fine as a header-only "{}" with no tensors */
    ck_assert_int_eq(parse_made(c, "{}", 0, NULL), TG_OK);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_safetensors_write_errors)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *t[2] = {tg_randn(c, TG_F32, TG_SHAPE(2)), tg_randn(c, TG_F32, TG_SHAPE(3))};
    const char *dup[2] = {"x", "x"}, *empty[2] = {"x", ""}, *reserved[2] = {"x", "__metadata__"};
    const char *path = tmp_path("w.safetensors");
    ck_assert_int_eq(tg_safetensors_write(c, path, 2, t, dup, 0, NULL, NULL), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "used twice"));
    tg_ctx_clear_error(c);
    ck_assert_int_eq(tg_safetensors_write(c, path, 2, t, empty, 0, NULL, NULL), TG_ERR_INVALID);
    tg_ctx_clear_error(c);
    ck_assert_int_eq(tg_safetensors_write(c, path, 2, t, reserved, 0, NULL, NULL), TG_ERR_INVALID);
    tg_ctx_clear_error(c);
    ck_assert_int_eq(tg_safetensors_write(c, path, 2, t, NULL, 0, NULL, NULL), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "no name"));
    tg_ctx_clear_error(c);
    ck_assert_int_eq(tg_safetensors_write(c, NULL, 2, t, dup, 0, NULL, NULL), TG_ERR_INVALID);
    tg_ctx_clear_error(c);
    ck_assert_int_eq(count_files(), 0);
    /* an unwritable place: an I/O error naming the path; nothing left */
    ck_assert_int_eq(tg_safetensors_write(c, "/nonexistent-dir/x.safetensors", 1, t,
                                          (const char *[]){"x"}, 0, NULL, NULL),
                     TG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "/nonexistent-dir/x.safetensors"));
    tg_ctx_clear_error(c);
    ck_assert_int_eq(tg_safetensors_write(NULL, path, 1, t, dup, 0, NULL, NULL), TG_ERR_INVALID);
    ck_assert_ptr_null(tg_safetensors_read(c, NULL));
    tg_ctx_clear_error(c);
    ck_assert_ptr_null(tg_safetensors_read(c, tmp_path("missing")));
    ck_assert_int_eq(tg_ctx_status(c), TG_ERR_IO);
    tg_ctx_free(c);
}
END_TEST

/* ---- .npy ------------------------------------------------------------------ */

START_TEST(test_npy_round_trip_and_numpy_bytes)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *a[4] = {tg_randn(c, TG_F32, TG_SHAPE(3, 4)),
                       tg_transpose(c, tg_randn(c, TG_F64, TG_SHAPE(2, 5)), 0, 1),
                       tg_arange(c, TG_I64, 0, 7, 1), tg_scalar(c, TG_F64, -1.25)};
    for (int i = 0; i < 4; i++) {
        const char *p = tmp_path("a.npy");
        ck_assert_int_eq(tg_npy_write(c, p, a[i]), TG_OK);
        tg_tensor *b = tg_npy_read(c, p);
        ck_assert_msg(b != NULL, "%s", tg_ctx_errmsg(c));
        assert_same(a[i], b);
    }
    /* the same bytes NumPy writes for the same array */
    const float v[6] = {-0.5f, -0.25f, 0.0f, 0.25f, 0.5f, 0.75f};
    tg_tensor *w = tg_tensor_from(c, TG_F32, TG_SHAPE(2, 3), v);
    ck_assert_int_eq(tg_npy_write(c, tmp_path("w.npy"), w), TG_OK);
    size_t n1, n2;
    unsigned char *mine = tu_slurp(tmp_path("w.npy"), &n1);
    unsigned char *theirs = tu_slurp(data_path("safetensors/numpy_written.npy"), &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert(memcmp(mine, theirs, n1) == 0);
    /* and NumPy's file reads back */
    tg_tensor *r = tg_npy_parse(c, theirs, n2);
    ck_assert_ptr_nonnull(r);
    assert_same(w, r);
    /* truncated at every length: an error, never a crash */
    for (size_t k = 0; k < n2; k++) {
        ck_assert_ptr_null(tg_npy_parse(c, theirs, k));
        ck_assert_int_eq(tg_ctx_status(c), TG_ERR_FORMAT);
        tg_ctx_clear_error(c);
    }
    free(mine);
    free(theirs);
    tg_ctx_free(c);
}
END_TEST

static tg_status npy_made(tg_ctx *c, const char *dict, size_t data_len, const char *expect)
{
    unsigned char b[512] = "\x93NUMPY\x01\x00";
    size_t hl = strlen(dict);
    b[8] = (unsigned char)hl;
    b[9] = 0;
    memcpy(b + 10, dict, hl);
    tg_tensor *t = tg_npy_parse(c, b, 10 + hl + data_len);
    tg_status st = tg_ctx_status(c);
    if (expect) {
        ck_assert_msg(t == NULL, "parsed: %s", dict);
        ck_assert_msg(strstr(tg_ctx_errmsg(c), expect) != NULL, "'%s' lacks '%s'",
                      tg_ctx_errmsg(c), expect);
    }
    tg_ctx_clear_error(c);
    return st;
}

START_TEST(test_npy_corruptions)
{
    tg_ctx *c = tu_ctx();
    ck_assert_int_eq(npy_made(c, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n", 16, NULL), TG_OK);
    ck_assert_int_eq(npy_made(c, "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }\n", 16, "descr"), TG_ERR_FORMAT);
    ck_assert_int_eq(npy_made(c, "{'descr': '<f8', 'fortran_order': True, 'shape': (2,), }\n", 16, "fortran_order"), TG_ERR_FORMAT);
    ck_assert_int_eq(npy_made(c, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n", 15, "truncated"), TG_ERR_FORMAT);
    ck_assert_int_eq(npy_made(c, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, -1), }\n", 16, "shape"), TG_ERR_FORMAT);
    ck_assert_int_eq(npy_made(c, "{'descr': '<f8', 'shape': (2,), }\n", 16, "lacks"), TG_ERR_FORMAT);
    ck_assert_int_eq(npy_made(c, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }\n", 8, "8 dims"), TG_ERR_FORMAT);
    ck_assert_int_eq(npy_made(c, "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,), }\n", 8, "too large"), TG_ERR_FORMAT);
    ck_assert_int_eq(npy_made(c, "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n", 8, NULL), TG_ERR_NOMEM);
    ck_assert_int_eq(npy_made(c, "{'descr': '<f8', 'extra': 1}\n", 8, "unknown key"), TG_ERR_FORMAT);
    unsigned char v4[16] = "\x93NUMPY\x04\x00";
    ck_assert_ptr_null(tg_npy_parse(c, v4, sizeof v4));
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "version"));
    tg_ctx_clear_error(c);
    ck_assert_ptr_null(tg_npy_parse(c, "PK\x03\x04", 4));
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "magic"));
    tg_ctx_clear_error(c);
    ck_assert_int_eq(tg_npy_write(c, NULL, NULL), TG_ERR_INVALID);
    tg_ctx_free(c);
}
END_TEST

Suite *io_suite(void)
{
    Suite *s = suite_create("io");
    TCase *tc = tu_tcase("safetensors");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_safetensors_round_trip);
    tcase_add_test(tc, test_safetensors_torch_written);
    tcase_add_test(tc, test_safetensors_truncated_everywhere);
    tcase_add_test(tc, test_safetensors_flipped_bytes);
    tcase_add_test(tc, test_safetensors_corruptions);
    tcase_add_test(tc, test_safetensors_write_errors);
    suite_add_tcase(s, tc);
    tc = tu_tcase("npy");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_npy_round_trip_and_numpy_bytes);
    tcase_add_test(tc, test_npy_corruptions);
    suite_add_tcase(s, tc);
    return s;
}
