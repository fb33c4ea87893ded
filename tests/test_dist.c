/*
 * test_dist.c - the parts of data-parallel training that need no MPI
 * process group: the sharded batcher (every rank's slice of every global
 * batch, against one process at world times the batch; the padded rank;
 * weights; state saved at one world size and restored at another) and the
 * contract of tg_dist_* in this build (TG_EXPECT_MPI, set by meson, says
 * whether the build has MPI: without it tg_dist_init must fail with
 * TG_ERR_UNSUPPORTED and a message saying how to get MPI). The
 * collectives themselves run under mpirun in tests/test_dist_mpi.c.
 */
#include <check.h>
#include <string.h>

#include "tapegrad.h"
#include "test_util.h"

/* One epoch of `world` sharded batchers side by side against one batcher
 * at batch world * bs: same steps, and each global batch is the
 * concatenation of the ranks' slices, with weights m / M. */
static void check_epoch(tg_batcher *one, tg_batcher **ranks, int world, int64_t bs)
{
    const int64_t *gidx, *idx;
    int64_t M, steps = 0;
    while ((M = tg_batcher_next(one, &gidx)) > 0) {
        int64_t at = 0;
        double wsum = 0;
        for (int r = 0; r < world; r++) {
            int64_t m = tg_batcher_next(ranks[r], &idx);
            ck_assert_int_ge(m, 1);
            ck_assert_int_le(m, bs);
            double w = tg_batcher_weight(ranks[r]);
            wsum += w;
            if (w == 0) {
                /* padding: one sample of the batch, counting nothing */
                ck_assert_int_lt(M, world);
                ck_assert_int_eq(m, 1);
                ck_assert_int_eq(idx[0], gidx[0]);
                continue;
            }
            ck_assert_double_eq_tol(w, (double)m / (double)M, 1e-15);
            ck_assert_int_le(at + m, M);
            ck_assert_mem_eq(idx, gidx + at, (size_t)m * sizeof *idx);
            at += m;
        }
        ck_assert_int_eq(at, M);
        ck_assert_double_eq_tol(wsum, 1.0, 1e-12);
        steps++;
    }
    for (int r = 0; r < world; r++) {
        ck_assert_int_eq(tg_batcher_next(ranks[r], &idx), 0); /* the same step ends it */
        ck_assert_ptr_null(idx);
        ck_assert_double_eq(tg_batcher_weight(ranks[r]), 0);
        ck_assert_int_eq(tg_batcher_batches(ranks[r]), steps);
    }
    ck_assert_int_eq(tg_batcher_batches(one), steps);
}

START_TEST(test_shards_equal_one_process)
{
    tg_ctx *c = tu_ctx();
    const int64_t ns[] = {0, 1, 2, 5, 33, 37, 64, 100};
    const int64_t bss[] = {1, 3, 4, 8};
    for (int world = 1; world <= 4; world++)
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
            for (size_t j = 0; j < sizeof bss / sizeof bss[0]; j++)
                for (int drop = 0; drop < 2; drop++)
                    for (int shuffle = 0; shuffle < 2; shuffle++) {
                        tg_batcher_opts o = tg_batcher_defaults();
                        o.batch_size = bss[j] * world;
                        o.drop_last = drop;
                        o.shuffle = shuffle;
                        o.seed = 11;
                        tg_batcher *one = tg_batcher_new(c, ns[i], &o);
                        tg_batcher *ranks[4];
                        o.batch_size = bss[j];
                        o.world = world;
                        for (int r = 0; r < world; r++) {
                            o.rank = r;
                            ranks[r] = tg_batcher_new(c, ns[i], &o);
                        }
                        tu_assert_ok(c);
                        for (int e = 0; e < 3; e++) check_epoch(one, ranks, world, bss[j]);
                        tg_ctx_reset(c);
                    }
    tg_ctx_free(c);
}
END_TEST

/* The 2-rank split of 10 samples at batch 3: global batches of 6 and 4. */
START_TEST(test_shard_layout)
{
    tg_ctx *c = tu_ctx();
    tg_batcher_opts o = tg_batcher_defaults();
    o.batch_size = 3;
    o.shuffle = false;
    o.world = 2;
    o.rank = 1;
    tg_batcher *b = tg_batcher_new(c, 10, &o);
    const int64_t *idx;
    ck_assert_double_eq(tg_batcher_weight(b), 0);
    ck_assert_int_eq(tg_batcher_next(b, &idx), 3);
    ck_assert_mem_eq(idx, ((int64_t[]){3, 4, 5}), 3 * sizeof *idx);
    ck_assert_double_eq(tg_batcher_weight(b), 0.5);
    ck_assert_int_eq(tg_batcher_next(b, &idx), 2);
    ck_assert_mem_eq(idx, ((int64_t[]){8, 9}), 2 * sizeof *idx);
    ck_assert_double_eq(tg_batcher_weight(b), 0.5);
    ck_assert_int_eq(tg_batcher_next(b, &idx), 0);
    /* 7 samples over 3 ranks of batch 2: 6, then 1 sample and two paddings */
    o.batch_size = 2;
    o.world = 3;
    int64_t got[3][2];
    double w[3];
    for (int r = 0; r < 3; r++) {
        o.rank = r;
        tg_batcher *s = tg_batcher_new(c, 7, &o);
        ck_assert_int_eq(tg_batcher_batches(s), 2);
        ck_assert_int_eq(tg_batcher_next(s, &idx), 2);
        ck_assert_int_eq(tg_batcher_next(s, &idx), 1);
        got[r][0] = idx[0];
        w[r] = tg_batcher_weight(s);
        ck_assert_int_eq(tg_batcher_next(s, &idx), 0);
    }
    ck_assert_int_eq(got[0][0], 6);
    ck_assert_int_eq(got[1][0], 6);
    ck_assert_int_eq(got[2][0], 6);
    ck_assert_double_eq(w[0], 1.0);
    ck_assert_double_eq(w[1], 0.0);
    ck_assert_double_eq(w[2], 0.0);
    /* drop_last drops a partial global batch */
    o.drop_last = true;
    o.rank = 0;
    ck_assert_int_eq(tg_batcher_batches(tg_batcher_new(c, 7, &o)), 1);
    tu_assert_ok(c);
    tg_ctx_free(c);
}
END_TEST

/* A state saved at one world size continues at another: the samples still
 * to come in the epoch are the same. */
START_TEST(test_shard_state_any_world)
{
    tg_ctx *c = tu_ctx();
    tg_batcher_opts o = tg_batcher_defaults();
    o.batch_size = 4;
    o.seed = 5;
    o.world = 2;
    tg_batcher *r0 = tg_batcher_new(c, 50, &o);
    o.rank = 1;
    tg_batcher *r1 = tg_batcher_new(c, 50, &o);
    const int64_t *idx;
    for (int k = 0; k < 9; k++) { /* a whole epoch of 7 steps, then 2 */
        if (tg_batcher_next(r0, &idx) == 0) tg_batcher_next(r0, &idx);
        if (tg_batcher_next(r1, &idx) == 0) tg_batcher_next(r1, &idx);
    }
    tg_batcher_state s0 = tg_batcher_get_state(r0), s1 = tg_batcher_get_state(r1);
    ck_assert_mem_eq(&s0, &s1, sizeof s0); /* the same on every rank */
    ck_assert_int_eq(s0.epoch, 1);
    ck_assert_int_eq(s0.pos, 16);

    /* the rest of that epoch, alone at batch 8 ... */
    tg_batcher_opts a = tg_batcher_defaults();
    a.batch_size = 8;
    tg_batcher *one = tg_batcher_new(c, 50, &a);
    tu_assert_ok(c);
    ck_assert_int_eq(tg_batcher_set_state(one, &s0), TG_OK);
    int64_t rest[64], nrest = 0, m;
    while ((m = tg_batcher_next(one, &idx)) > 0) {
        memcpy(rest + nrest, idx, (size_t)m * sizeof *idx);
        nrest += m;
    }
    ck_assert_int_eq(nrest, 34);
    /* ... equals the rest over three ranks of batch 3 restored from it */
    tg_batcher *three[3];
    a.batch_size = 3;
    a.world = 3;
    for (int r = 0; r < 3; r++) {
        a.rank = r;
        three[r] = tg_batcher_new(c, 50, &a);
        ck_assert_int_eq(tg_batcher_set_state(three[r], &s0), TG_OK);
    }
    int64_t at = 0;
    for (;;) {
        int64_t got = 0;
        for (int r = 0; r < 3; r++) {
            m = tg_batcher_next(three[r], &idx);
            if (m == 0) continue;
            ck_assert_mem_eq(idx, rest + at + got, (size_t)m * sizeof *idx);
            got += m;
        }
        if (got == 0) break;
        at += got;
    }
    ck_assert_int_eq(at, nrest);
    tg_ctx_free(c);
}
END_TEST

START_TEST(test_shard_errors)
{
    tg_ctx *c = tu_ctx();
    tg_batcher_opts o = tg_batcher_defaults();
    /* (rank 0, world 0) is zero-initialised options, which means world 1 */
    const int bad[][2] = {{1, 0}, {-1, 2}, {2, 2}, {3, 2}, {0, -1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o.rank = bad[i][0];
        o.world = bad[i][1];
        ck_assert_ptr_null(tg_batcher_new(c, 10, &o));
        tu_assert_status(tg_ctx_status(c), TG_ERR_INVALID);
        ck_assert_msg(strstr(tg_ctx_errmsg(c), "rank") != NULL, "%s", tg_ctx_errmsg(c));
        tg_ctx_clear_error(c);
    }
    o.rank = 0;
    o.world = 4;
    o.batch_size = INT64_MAX / 2;
    ck_assert_ptr_null(tg_batcher_new(c, 10, &o));
    tu_assert_status(tg_ctx_status(c), TG_ERR_INVALID);
    ck_assert_msg(strstr(tg_ctx_errmsg(c), "overflows") != NULL, "%s", tg_ctx_errmsg(c));
    tg_ctx_clear_error(c);
    ck_assert_double_eq(tg_batcher_weight(NULL), 0);
    /* the defaults shard nothing */
    o = tg_batcher_defaults();
    ck_assert_int_eq(o.rank, 0);
    ck_assert_int_eq(o.world, 1);
    tg_ctx_free(c);
}
END_TEST

/* What this build promises about MPI. */
START_TEST(test_dist_build)
{
    ck_assert_int_eq(tg_dist_available(), TG_EXPECT_MPI);
    ck_assert_int_eq(tg_dist_rank(NULL), 0);
    ck_assert_int_eq(tg_dist_world(NULL), 1);
    ck_assert_int_eq(tg_dist_finalize(NULL), TG_OK);
    ck_assert_int_eq(tg_dist_allreduce_grads(NULL, NULL, 0, 1.0), TG_ERR_INVALID);
    ck_assert_int_eq(tg_dist_broadcast_params(NULL, NULL, 0), TG_ERR_INVALID);
    ck_assert_int_eq(tg_dist_broadcast_model(NULL, NULL), TG_ERR_INVALID);
    ck_assert_int_eq(tg_dist_allreduce_sum(NULL, NULL, 0), TG_ERR_INVALID);
    tg_dist_opts o = tg_dist_defaults();
    ck_assert_uint_eq(o.bucket_bytes, 4u << 20);
    ck_assert_ptr_null(o.comm);
    ck_assert_str_eq(tg_status_str(TG_ERR_UNSUPPORTED), "not supported by this build");
    if (!TG_EXPECT_MPI) {
        tg_ctx *c = tu_ctx();
        ck_assert_ptr_null(tg_dist_init(c, NULL));
        tu_assert_status(tg_ctx_status(c), TG_ERR_UNSUPPORTED);
        ck_assert_msg(strstr(tg_ctx_errmsg(c), "built without MPI") != NULL, "%s",
                      tg_ctx_errmsg(c));
        ck_assert_msg(strstr(tg_ctx_errmsg(c), "-Dmpi=enabled") != NULL, "%s", tg_ctx_errmsg(c));
        /* sticky: an earlier error stays */
        tg_ctx_clear_error(c);
        tg_ctx_set_error(c, TG_ERR_IO, "first");
        ck_assert_ptr_null(tg_dist_init(c, NULL));
        ck_assert_str_eq(tg_ctx_errmsg(c), "first");
        ck_assert_ptr_null(tg_dist_init(NULL, NULL));
        tg_ctx_free(c);
    }
}
END_TEST

Suite *dist_suite(void)
{
    Suite *s = suite_create("dist");
    TCase *tc = tu_tcase("shard");
    tcase_add_test(tc, test_shards_equal_one_process);
    tcase_add_test(tc, test_shard_layout);
    tcase_add_test(tc, test_shard_state_any_world);
    tcase_add_test(tc, test_shard_errors);
    suite_add_tcase(s, tc);
    tc = tu_tcase("build");
    tcase_add_test(tc, test_dist_build);
    suite_add_tcase(s, tc);
    return s;
}
