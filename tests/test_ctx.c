/*
 * test_ctx.c - contexts: lifetime, defaults, sticky errors, status strings,
 * reset and arena reuse, threads, seeding and TG_NUM_THREADS.
 *
 * Everything here goes through the public API of include/tapegrad/core.h
 * (plus a few ops to make errors and workloads).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "test_util.h"

/* A [2] f32 tensor holding {x, y}. */
static tg_tensor *pair(tg_ctx *c, float x, float y)
{
    const float v[2] = {x, y};
    return tg_tensor_from(c, TG_F32, TG_SHAPE(2), v);
}

/* ---------------------------------------------------------------------- */
/* Lifetime and defaults                                                  */
/* ---------------------------------------------------------------------- */

START_TEST(test_new_free)
{
    tg_ctx *c = tg_ctx_new();
    ck_assert_ptr_nonnull(c);
    tu_assert_status(tg_ctx_status(c), TG_OK);
    ck_assert_ptr_nonnull(tg_ctx_errmsg(c));
    ck_assert_str_eq(tg_ctx_errmsg(c), "");
    ck_assert(tg_grad_enabled(c));
    ck_assert_int_ge(tg_ctx_threads(c), 1);
    ck_assert_uint_eq(tg_ctx_bytes_used(c), 0);
    tg_ctx_free(c);

    tg_ctx_free(NULL); /* a no-op */

    c = tg_ctx_new_opts(NULL); /* NULL options: defaults */
    ck_assert_ptr_nonnull(c);
    tu_assert_status(tg_ctx_status(c), TG_OK);
    tg_ctx_free(c);

    /* Many contexts at once, freed out of order, each usable on its own. */
    tg_ctx *cs[16];
    for (int i = 0; i < 16; i++) {
        cs[i] = tg_ctx_new();
        ck_assert_ptr_nonnull(cs[i]);
    }
    for (int i = 0; i < 16; i++) {
        tg_tensor *t = tg_add(cs[i], pair(cs[i], (float)i, 1), pair(cs[i], 1, (float)i));
        tu_assert_values(t, 0.0, i + 1.0, i + 1.0);
    }
    for (int i = 0; i < 16; i += 2) tg_ctx_free(cs[i]);
    for (int i = 15; i > 0; i -= 2) tg_ctx_free(cs[i]);
}
END_TEST

START_TEST(test_defaults)
{
    tg_ctx_opts o = tg_ctx_defaults();
    ck_assert(o.alloc == NULL);
    ck_assert_ptr_null(o.alloc_ud);
    ck_assert_msg(o.arena_chunk == 0 || o.arena_chunk == (size_t)1 << 20,
                  "arena_chunk default %zu is neither 0 nor 1 MiB", o.arena_chunk);
    ck_assert_int_eq(o.n_threads, 0);
    ck_assert_msg(o.seed == 0x5eed, "default seed %llx", (unsigned long long)o.seed);

    /* tg_ctx_new() and tg_ctx_new_opts(&defaults) behave alike: same RNG. */
    tg_ctx *a = tu_ctx();
    tg_ctx *b = tg_ctx_new_opts(&o);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(tg_ctx_threads(a), tg_ctx_threads(b));
    ck_assert(tg_grad_enabled(b));
    double va[64], vb[64];
    tu_assert_status(tg_copy_out(tg_rand(a, TG_F64, TG_SHAPE(64)), va, sizeof va), TG_OK);
    tu_assert_status(tg_copy_out(tg_rand(b, TG_F64, TG_SHAPE(64)), vb, sizeof vb), TG_OK);
    ck_assert_mem_eq(va, vb, sizeof va);

    /* ...and the default seed is 0x5eed. */
    tg_ctx_seed(a, 0x5eed);
    tu_assert_status(tg_copy_out(tg_rand(a, TG_F64, TG_SHAPE(64)), va, sizeof va), TG_OK);
    ck_assert_mem_eq(va, vb, sizeof va);

    /* Explicit options are honoured. */
    o.n_threads = 3;
    tg_ctx *c3 = tg_ctx_new_opts(&o);
    ck_assert_ptr_nonnull(c3);
    ck_assert_int_eq(tg_ctx_threads(c3), 3);
    tg_ctx_free(c3);

    o.n_threads = -1; /* invalid: NULL */
    ck_assert_ptr_null(tg_ctx_new_opts(&o));

    tg_ctx_free(a);
    tg_ctx_free(b);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Status strings                                                         */
/* ---------------------------------------------------------------------- */

#define DESC_ENTRY(name, desc) desc,
static const char *const status_desc[] = {TG_STATUS_MAP(DESC_ENTRY)};
#undef DESC_ENTRY

START_TEST(test_status_str)
{
    ck_assert_int_eq((int)(sizeof status_desc / sizeof status_desc[0]), TG_STATUS_COUNT);
    ck_assert_int_eq(TG_OK, 0);
    for (int s = 0; s < TG_STATUS_COUNT; s++) {
        const char *str = tg_status_str((tg_status)s);
        ck_assert_ptr_nonnull(str);
        ck_assert_msg(str[0] != '\0', "tg_status_str(%d) is empty", s);
        ck_assert_str_eq(str, status_desc[s]); /* the X-macro's text */
        for (int t = 0; t < s; t++)
            ck_assert_msg(strcmp(str, tg_status_str((tg_status)t)) != 0,
                          "tg_status_str(%d) == tg_status_str(%d) == \"%s\"", s, t, str);
    }
    /* Out of range: still a valid string, never NULL. */
    const int bad[] = {TG_STATUS_COUNT, TG_STATUS_COUNT + 1, 1000, -1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *str = tg_status_str((tg_status)bad[i]);
        ck_assert_ptr_nonnull(str);
        ck_assert_msg(strlen(str) < 256, "odd string for status %d", bad[i]);
    }
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Sticky errors                                                          */
/* ---------------------------------------------------------------------- */

START_TEST(test_sticky_error)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *a = tg_full(c, TG_F32, TG_SHAPE(2, 3), 1.5);
    tg_tensor *b = tg_full(c, TG_F32, TG_SHAPE(4, 3), 2.0);
    tg_tensor *m = tg_full(c, TG_F32, TG_SHAPE(5, 6), 1.0);
    tu_assert_ok(c);

    /* The first error: shape mismatch in tg_add. */
    ck_assert_ptr_null(tg_add(c, a, b));
    tu_assert_status(tg_ctx_status(c), TG_ERR_SHAPE);
    char first[512];
    snprintf(first, sizeof first, "%s", tg_ctx_errmsg(c));
    ck_assert_msg(strstr(first, "tg_add") != NULL, "message \"%s\" does not name tg_add", first);

    /* A second failing op keeps the first error and its message. */
    ck_assert_ptr_null(tg_matmul(c, a, m));
    ck_assert_ptr_null(tg_exp(c, NULL));
    tu_assert_status(tg_ctx_status(c), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_ctx_errmsg(c), first);

    /* While the error is pending, even valid ops return NULL. */
    ck_assert_ptr_null(tg_add(c, a, a));
    ck_assert_ptr_null(tg_exp(c, a));
    ck_assert_ptr_null(tg_matmul(c, tg_transpose(c, a, 0, 1), a));
    ck_assert_ptr_null(tg_sum(c, a));
    tu_assert_status(tg_ctx_status(c), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_ctx_errmsg(c), first);

    /* The error survives a reset. */
    tg_ctx_reset(c);
    tu_assert_status(tg_ctx_status(c), TG_ERR_SHAPE);
    ck_assert_str_eq(tg_ctx_errmsg(c), first);

    /* Clearing makes the context usable again. */
    tg_ctx_clear_error(c);
    tu_assert_status(tg_ctx_status(c), TG_OK);
    ck_assert_str_eq(tg_ctx_errmsg(c), "");
    a = tg_full(c, TG_F32, TG_SHAPE(2, 3), 1.5);
    tg_tensor *s = tg_add(c, a, a);
    tu_assert_values(s, 0.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0);
    tu_assert_ok(c);

    /* A new error after the clear is recorded afresh. */
    ck_assert_ptr_null(tg_matmul(c, a, a));
    tu_assert_status(tg_ctx_status(c), TG_ERR_SHAPE);
    ck_assert_msg(strstr(tg_ctx_errmsg(c), "tg_matmul") != NULL, "message \"%s\"",
                  tg_ctx_errmsg(c));
    tg_ctx_clear_error(c);
    tg_ctx_clear_error(c); /* clearing twice is harmless */
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_tensors_before_error_stay_valid)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *a = pair(c, 1, 2);
    tg_tensor *y = tg_scale(c, a, 3.0);
    ck_assert_ptr_null(tg_add(c, a, tg_full(c, TG_F32, TG_SHAPE(3), 0.0)));
    tu_assert_status(tg_ctx_status(c), TG_ERR_SHAPE);
    /* Inspection works regardless of the error. */
    tu_assert_values(y, 0.0, 3.0, 6.0);
    tg_ctx_clear_error(c);
    tu_assert_values(tg_add(c, y, a), 0.0, 4.0, 8.0);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_set_error)
{
    tg_ctx *c = tu_ctx();
    tg_status rc = tg_ctx_set_error(c, TG_ERR_IO, "loader: cannot read %s (line %d)", "x.bin", 7);
    tu_assert_status(rc, TG_ERR_IO);
    tu_assert_status(tg_ctx_status(c), TG_ERR_IO);
    ck_assert_msg(strstr(tg_ctx_errmsg(c), "loader: cannot read x.bin (line 7)") != NULL,
                  "message \"%s\"", tg_ctx_errmsg(c));

    /* A second error returns its own status but keeps the first. */
    rc = tg_ctx_set_error(c, TG_ERR_FORMAT, "second %d", 2);
    tu_assert_status(rc, TG_ERR_FORMAT);
    tu_assert_status(tg_ctx_status(c), TG_ERR_IO);
    ck_assert_ptr_null(strstr(tg_ctx_errmsg(c), "second"));

    /* Ops refuse to run while it is pending. */
    ck_assert_ptr_null(tg_add(c, pair(c, 1, 2), pair(c, 3, 4)));
    tg_ctx_clear_error(c);
    tu_assert_ok(c);
    tu_assert_values(tg_add(c, pair(c, 1, 2), pair(c, 3, 4)), 0.0, 4.0, 6.0);

    /* A very long message is truncated, not overflowed. */
    static char longmsg[4096];
    memset(longmsg, 'x', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    tg_ctx_set_error(c, TG_ERR_INVALID, "user: %s", longmsg);
    tu_assert_status(tg_ctx_status(c), TG_ERR_INVALID);
    size_t len = strlen(tg_ctx_errmsg(c));
    ck_assert_uint_gt(len, 5);
    ck_assert_uint_lt(len, sizeof longmsg - 1);
    ck_assert(strncmp(tg_ctx_errmsg(c), "user: xxx", 9) == 0);
    tg_ctx_clear_error(c);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Reset and arena reuse                                                  */
/* ---------------------------------------------------------------------- */

START_TEST(test_reset)
{
    tg_ctx *c = tu_ctx();
    ck_assert(tg_set_grad_enabled(c, false)); /* previous mode: on */
    ck_assert(!tg_grad_enabled(c));
    tg_tensor *t = tg_rand(c, TG_F32, TG_SHAPE(100, 100));
    ck_assert_ptr_nonnull(tg_exp(c, t));
    tu_assert_ok(c);
    ck_assert_uint_ge(tg_ctx_bytes_used(c), 2 * 100 * 100 * sizeof(float));
    ck_assert_uint_ge(tg_ctx_bytes_reserved(c), tg_ctx_bytes_used(c));
    size_t reserved = tg_ctx_bytes_reserved(c);

    tg_ctx_reset(c);
    ck_assert_uint_eq(tg_ctx_bytes_used(c), 0);
    ck_assert(!tg_grad_enabled(c));                        /* grad mode is kept */
    ck_assert_uint_ge(tg_ctx_bytes_reserved(c), reserved); /* memory is kept */
    ck_assert(!tg_set_grad_enabled(c, true));
    ck_assert(tg_grad_enabled(c));
    tg_ctx_reset(c);
    ck_assert(tg_grad_enabled(c));

    /* Usable after reset, with the recording machinery too. */
    tg_tensor *w = pair(c, 1, 2);
    tg_set_requires_grad(w, true);
    tg_tensor *l = tg_sum(c, tg_mul(c, w, w));
    tu_assert_status(tg_backward(c, l), TG_OK);
    tu_assert_values(tg_grad(w), 0.0, 2.0, 4.0);
    tg_ctx_reset(c);
    ck_assert_uint_eq(tg_ctx_bytes_used(c), 0);
    tu_assert_ok(c);

    /* Resetting an empty or fresh context is fine, repeatedly. */
    tg_ctx *d = tu_ctx();
    for (int i = 0; i < 3; i++) tg_ctx_reset(d);
    ck_assert_uint_eq(tg_ctx_bytes_used(d), 0);
    tg_ctx_free(d);
    tg_ctx_free(c);
}
END_TEST

/* Tensors of many sizes, a long recorded chain (so the tape grows), and a
 * backward: the same bytes every time. */
static void workload(tg_ctx *c)
{
    tg_tensor *w = tg_full(c, TG_F32, TG_SHAPE(64, 32), 0.01);
    tg_set_requires_grad(w, true);
    tg_tensor *x = tg_full(c, TG_F32, TG_SHAPE(16, 64), 0.5);
    tg_tensor *h = tg_matmul(c, x, w);
    for (int i = 0; i < 300; i++) h = tg_add_scalar(c, tg_scale(c, h, 0.999), 0.001);
    for (int n = 1; n < 6000; n *= 3)
        ck_assert_ptr_nonnull(tg_tensor_new(c, TG_F64, 1, &(int64_t){n}));
    tg_tensor *loss = tg_mean(c, tg_tanh(c, h));
    tu_assert_status(tg_backward(c, loss), TG_OK);
    tu_assert_ok(c);
}

START_TEST(test_reserved_stops_growing)
{
    tg_ctx_opts o = tg_ctx_defaults();
    o.arena_chunk = 4096; /* small first block: the workload must grow it */
    tg_ctx *c = tg_ctx_new_opts(&o);
    ck_assert_ptr_nonnull(c);

    enum { ROUNDS = 20 };
    size_t reserved[ROUNDS], used[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        tg_ctx_reset(c);
        ck_assert_uint_eq(tg_ctx_bytes_used(c), 0);
        workload(c);
        used[i] = tg_ctx_bytes_used(c);
        reserved[i] = tg_ctx_bytes_reserved(c);
        ck_assert_uint_ge(reserved[i], used[i]);
    }
    ck_assert_uint_gt(used[0], 4096); /* it did grow */
    for (int i = 1; i < ROUNDS; i++) {
        ck_assert_msg(used[i] == used[1], "round %d used %zu bytes, round 1 %zu", i, used[i],
                      used[1]);
        /* The blocks were merged on the first reset after growth: no growth
         * in any later round. */
        ck_assert_msg(reserved[i] == reserved[1],
                      "round %d reserved %zu bytes, round 1 %zu (round 0 %zu)", i, reserved[i],
                      reserved[1], reserved[0]);
    }
    tg_ctx_free(c);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Threads                                                                */
/* ---------------------------------------------------------------------- */

START_TEST(test_threads_get_set)
{
    tg_ctx *c = tu_ctx();
    tu_assert_status(tg_ctx_set_threads(c, 2), TG_OK);
    ck_assert_int_eq(tg_ctx_threads(c), 2);
    tu_assert_status(tg_ctx_set_threads(c, 1), TG_OK);
    ck_assert_int_eq(tg_ctx_threads(c), 1);
    tu_assert_status(tg_ctx_set_threads(c, 4), TG_OK);
    ck_assert_int_eq(tg_ctx_threads(c), 4);

    tu_assert_status(tg_ctx_set_threads(c, 0), TG_ERR_INVALID);
    ck_assert_int_eq(tg_ctx_threads(c), 4); /* unchanged */
    tg_ctx_clear_error(c);
    tu_assert_status(tg_ctx_set_threads(c, -3), TG_ERR_INVALID);
    ck_assert_int_eq(tg_ctx_threads(c), 4);
    tg_ctx_clear_error(c);

    /* Still works, and the thread count can change after use. */
    tu_assert_values(tg_add(c, pair(c, 1, 2), pair(c, 3, 4)), 0.0, 4.0, 6.0);
    tu_assert_status(tg_ctx_set_threads(c, 1), TG_OK);
    tu_assert_values(tg_add(c, pair(c, 1, 2), pair(c, 3, 4)), 0.0, 4.0, 6.0);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* Saves and restores TG_NUM_THREADS so the test leaves the environment as
 * it found it even without fork (CK_FORK=no under valgrind). */
START_TEST(test_env_threads)
{
    const char *old = getenv("TG_NUM_THREADS");
    char saved[64] = "";
    bool had = old != NULL;
    if (had) snprintf(saved, sizeof saved, "%s", old);

    ck_assert_int_eq(setenv("TG_NUM_THREADS", "3", 1), 0);
    tg_ctx *c = tu_ctx();
    int n3 = tg_ctx_threads(c);
    tg_ctx_free(c);

    ck_assert_int_eq(setenv("TG_NUM_THREADS", "1", 1), 0);
    c = tu_ctx();
    int n1 = tg_ctx_threads(c);
    tg_ctx_free(c);

    /* An explicit option wins over the environment. */
    tg_ctx_opts o = tg_ctx_defaults();
    o.n_threads = 2;
    c = tg_ctx_new_opts(&o);
    ck_assert_ptr_nonnull(c);
    int n2 = tg_ctx_threads(c);
    tg_ctx_free(c);

    /* Garbage in the environment: still a usable count. */
    ck_assert_int_eq(setenv("TG_NUM_THREADS", "lots", 1), 0);
    c = tu_ctx();
    int ng = tg_ctx_threads(c);
    tg_ctx_free(c);

    if (had) setenv("TG_NUM_THREADS", saved, 1);
    else unsetenv("TG_NUM_THREADS");

    ck_assert_int_eq(n3, 3);
    ck_assert_int_eq(n1, 1);
    ck_assert_int_eq(n2, 2);
    ck_assert_int_ge(ng, 1);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Seeding                                                                */
/* ---------------------------------------------------------------------- */

enum { NRAND = 257 };

static void draw(tg_ctx *c, tg_dtype dt, bool normal, void *out)
{
    tg_tensor *t = normal ? tg_randn(c, dt, TG_SHAPE(NRAND)) : tg_rand(c, dt, TG_SHAPE(NRAND));
    ck_assert_ptr_nonnull(t);
    tu_assert_status(tg_copy_out(t, out, NRAND * tg_dtype_size(dt)), TG_OK);
}

START_TEST(test_seed)
{
    const tg_dtype dt = (_i & 1) ? TG_F64 : TG_F32;
    const bool normal = (_i & 2) != 0;
    const size_t nb = NRAND * tg_dtype_size(dt);
    double a[NRAND], b[NRAND], d[NRAND], e[NRAND];

    tg_ctx *c = tu_ctx();
    tg_ctx_seed(c, 42);
    draw(c, dt, normal, a);
    draw(c, dt, normal, d); /* the stream moves on */
    ck_assert(memcmp(a, d, nb) != 0);
    tg_ctx_seed(c, 42);
    draw(c, dt, normal, b);
    ck_assert_mem_eq(a, b, nb); /* reseeding reproduces */
    draw(c, dt, normal, e);
    ck_assert_mem_eq(d, e, nb);

    tg_ctx_seed(c, 43);
    draw(c, dt, normal, b);
    ck_assert(memcmp(a, b, nb) != 0); /* another seed, other values */

    /* Seeding survives reset; the seed option equals tg_ctx_seed. */
    tg_ctx_reset(c);
    tg_ctx_seed(c, 42);
    draw(c, dt, normal, b);
    ck_assert_mem_eq(a, b, nb);

    tg_ctx_opts o = tg_ctx_defaults();
    o.seed = 42;
    tg_ctx *c2 = tg_ctx_new_opts(&o);
    ck_assert_ptr_nonnull(c2);
    draw(c2, dt, normal, b);
    ck_assert_mem_eq(a, b, nb);

    /* Independent contexts: drawing from one does not move the other. */
    tg_ctx *c3 = tu_ctx();
    tg_ctx_seed(c3, 42);
    tg_ctx_seed(c2, 42);
    draw(c2, dt, normal, b);
    draw(c3, dt, normal, e);
    ck_assert_mem_eq(a, e, nb);

    /* Thread count does not change the values. */
    tg_ctx_set_threads(c3, 1);
    tg_ctx_seed(c3, 42);
    draw(c3, dt, normal, e);
    ck_assert_mem_eq(a, e, nb);

    tg_ctx_free(c);
    tg_ctx_free(c2);
    tg_ctx_free(c3);
}
END_TEST

Suite *ctx_suite(void)
{
    Suite *s = suite_create("ctx");

    TCase *tc = tcase_create("lifetime");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_new_free);
    tcase_add_test(tc, test_defaults);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_status_str);
    tcase_add_test(tc, test_sticky_error);
    tcase_add_test(tc, test_tensors_before_error_stay_valid);
    tcase_add_test(tc, test_set_error);
    suite_add_tcase(s, tc);

    tc = tcase_create("reset");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_reset);
    tcase_add_test(tc, test_reserved_stops_growing);
    suite_add_tcase(s, tc);

    tc = tcase_create("threads");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_threads_get_set);
    tcase_add_test(tc, test_env_threads);
    suite_add_tcase(s, tc);

    tc = tcase_create("seed");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_seed, 0, 4);
    suite_add_tcase(s, tc);

    return s;
}
