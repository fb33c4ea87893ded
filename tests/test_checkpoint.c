/*
 * test_checkpoint.c - tg_checkpoint_save / tg_checkpoint_load: a run's
 * whole state round-trips; resuming from a checkpoint continues
 * bit-exactly as the uninterrupted run (across an epoch boundary, with
 * dropout drawing from the step context's RNG); every refusal (missing,
 * truncated or corrupt file, another architecture, another optimizer,
 * another data set size, a newer format) leaves model, optimizer, batcher
 * and RNG exactly as they were; a plain weights file restores a model.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tapegrad.h>

#include "test_util.h"

enum { N = 50, IN = 6, HID = 16, OUT = 3, BATCH = 8 };

/* A small classifier run: data, model (linear, batch norm, relu, dropout,
 * linear), Adam, a shuffling batcher; p persistent, s reset every step. */
typedef struct {
    tg_ctx *p, *s;
    tg_model *m;
    tg_module *net;
    tg_optim *o;
    tg_batcher *b;
    tg_tensor *x, *y, *bx, *by;
} run;

static void run_init(run *r, uint64_t seed, int64_t hid, bool sgd)
{
    tg_ctx_opts co = tg_ctx_defaults();
    co.seed = seed;
    co.n_threads = 1;
    r->p = tg_ctx_new_opts(&co);
    r->s = tg_ctx_new_opts(&co);
    ck_assert_ptr_nonnull(r->p);
    ck_assert_ptr_nonnull(r->s);
    /* the same data whatever the seed */
    tg_ctx_seed(r->p, 42);
    r->x = tg_randn(r->p, TG_F32, 2, (int64_t[]){N, IN});
    int64_t lab[N];
    for (int i = 0; i < N; i++) lab[i] = (i * 7) % OUT;
    r->y = tg_tensor_from(r->p, TG_I64, 1, (int64_t[]){N}, lab);
    r->bx = tg_tensor_new(r->p, TG_F32, 2, (int64_t[]){BATCH, IN});
    r->by = tg_tensor_new(r->p, TG_I64, 1, (int64_t[]){BATCH});
    tg_ctx_seed(r->p, seed);
    r->m = tg_model_new(r->p);
    r->net = tg_nn_sequential_new(r->m, "net");
    tg_nn_sequential_add(r->net, tg_nn_linear_new(r->m, "fc1", IN, hid, true));
    tg_nn_sequential_add(r->net, tg_nn_batch_norm1d_new(r->m, "bn", hid, 1e-5, 0.1, true));
    tg_nn_sequential_add(r->net, tg_nn_relu_new(r->m));
    tg_nn_sequential_add(r->net, tg_nn_dropout_new(r->m, "drop", 0.3));
    tg_nn_sequential_add(r->net, tg_nn_linear_new(r->m, "fc2", hid, OUT, true));
    tu_assert_ok(r->p);
    tg_model_set_training(r->m, true);
    if (sgd) {
        tg_sgd_opts so = tg_sgd_defaults();
        so.lr = 0.05;
        so.momentum = 0.9;
        r->o = tg_sgd_new(r->p, tg_model_params(r->m), tg_model_nparams(r->m), &so);
    } else {
        tg_adam_opts ao = tg_adam_defaults();
        ao.lr = 0.01;
        r->o = tg_adam_new(r->p, tg_model_params(r->m), tg_model_nparams(r->m), &ao);
    }
    tg_batcher_opts bo = tg_batcher_defaults();
    bo.batch_size = BATCH;
    bo.seed = seed + 1;
    r->b = tg_batcher_new(r->p, N, &bo);
    tu_assert_ok(r->p);
}

static void run_free(run *r)
{
    tg_ctx_free(r->s);
    tg_ctx_free(r->p);
}

/* One training step on the next batch (starting the next epoch when the
 * current one is done). */
static void run_step(run *r)
{
    const int64_t *idx;
    int64_t m = tg_batcher_next(r->b, &idx);
    if (m == 0) m = tg_batcher_next(r->b, &idx);
    ck_assert_int_gt(m, 0);
    tg_gather_rows(r->p, r->bx, r->x, idx, m);
    tg_gather_rows(r->p, r->by, r->y, idx, m);
    tg_tensor *xb = m < BATCH ? tg_slice(r->s, r->bx, 0, 0, m, 1) : r->bx;
    tg_tensor *yb = m < BATCH ? tg_slice(r->s, r->by, 0, 0, m, 1) : r->by;
    tg_tensor *loss = tg_cross_entropy(r->s, tg_module_forward(r->s, r->net, xb), yb);
    tg_backward(r->s, loss);
    tu_assert_ok(r->s);
    tu_assert_status(tg_optim_step(r->o), TG_OK);
    tg_optim_zero_grad(r->o);
    tg_ctx_reset(r->s);
}

/* Everything the run's future depends on, as bytes: parameters, buffers,
 * optimizer state, batcher state, the step context's RNG. */
typedef struct {
    unsigned char *bytes;
    size_t n;
} snapshot;

static void snap_add(snapshot *sn, const void *p, size_t n)
{
    sn->bytes = realloc(sn->bytes, sn->n + n);
    ck_assert_ptr_nonnull(sn->bytes);
    memcpy(sn->bytes + sn->n, p, n);
    sn->n += n;
}

static void snap_tensor(snapshot *sn, const tg_tensor *t)
{
    size_t n = (size_t)tg_numel(t) * tg_dtype_size(tg_tensor_dtype(t));
    unsigned char *buf = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(buf);
    tu_assert_status(tg_copy_out(t, buf, n), TG_OK);
    snap_add(sn, buf, n);
    free(buf);
}

static snapshot snap(run *r)
{
    snapshot sn = {NULL, 0};
    for (int i = 0; i < tg_model_nparams(r->m); i++) snap_tensor(&sn, tg_model_param(r->m, i));
    for (int i = 0; i < tg_model_nbuffers(r->m); i++) snap_tensor(&sn, tg_model_buffer(r->m, i));
    int n = tg_optim_state_count(r->o);
    ck_assert_int_gt(n, 0);
    for (int i = 0; i < n; i++) {
        tg_tensor *t;
        tu_assert_status(tg_optim_state_get(r->o, i, NULL, &t), TG_OK);
        snap_tensor(&sn, t);
    }
    tg_batcher_state bs = tg_batcher_get_state(r->b);
    snap_add(&sn, &bs, sizeof bs);
    uint64_t w[4];
    tg_ctx_get_rng(r->s, w);
    snap_add(&sn, w, sizeof w);
    return sn;
}

static void snap_assert_equal(const snapshot *a, const snapshot *b, const char *what)
{
    size_t at = 0;
    while (a->n == b->n && at < a->n && a->bytes[at] == b->bytes[at]) at++;
    ck_assert_msg(a->n == b->n && at == a->n, "%s: the state differs (sizes %zu, %zu; byte %zu of %zu)",
                  what, a->n, b->n, at, a->n);
}

static void snap_assert_differ(const snapshot *a, const snapshot *b, const char *what)
{
    ck_assert_msg(a->n != b->n || memcmp(a->bytes, b->bytes, a->n) != 0,
                  "%s: the state did not change", what);
}

static tg_checkpoint ck_of(run *r)
{
    tg_checkpoint ck = {r->m, r->o, r->b, r->s, 0, NULL, NULL};
    return ck;
}

static char tmpdir[] = "/tmp/tg_ckpt_XXXXXX";

static void setup(void) { ck_assert_ptr_nonnull(mkdtemp(tmpdir)); }

static void teardown(void)
{
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    memcpy(tmpdir + strlen(tmpdir) - 6, "XXXXXX", 6);
}

static const char *path_of(const char *name)
{
    static char buf[4][128];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 128, "%s/%s", tmpdir, name);
    return p;
}

/* ---------------------------------------------------------------------- */

START_TEST(test_resume_bit_exact)
{
    /* 11 steps straight (an epoch is 7 batches, the last of 2 samples) */
    run a;
    run_init(&a, 7, HID, false);
    for (int i = 0; i < 11; i++) run_step(&a);
    snapshot want = snap(&a);

    /* 5 steps, save, then a fresh run of another seed loads and does 6 */
    run b;
    run_init(&b, 7, HID, false);
    for (int i = 0; i < 5; i++) run_step(&b);
    const char *meta_k[] = {"epoch", "model"}, *meta_v[] = {"0", "test-mlp"};
    tg_checkpoint ck = ck_of(&b);
    ck.n_meta = 2, ck.meta_keys = meta_k, ck.meta_values = meta_v;
    size_t used = tg_ctx_bytes_used(b.p);
    tu_assert_status(tg_checkpoint_save(b.p, path_of("a.safetensors"), &ck), TG_OK);
    ck_assert_uint_eq(tg_ctx_bytes_used(b.p), used); /* nothing left in the arena */
    run_free(&b);

    run c;
    run_init(&c, 99, HID, false);
    snapshot fresh = snap(&c);
    ck = ck_of(&c);
    tu_assert_status(tg_checkpoint_load(c.p, path_of("a.safetensors"), &ck), TG_OK);
    snapshot loaded = snap(&c);
    snap_assert_differ(&fresh, &loaded, "load");
    ck_assert_int_eq(tg_optim_step_count(c.o), 5);
    for (int i = 0; i < 6; i++) run_step(&c);
    snapshot got = snap(&c);
    snap_assert_equal(&want, &got, "resumed run against the uninterrupted one");

    /* the file is an ordinary safetensors file with our metadata */
    tg_safetensors *f = tg_safetensors_read(c.s, path_of("a.safetensors"));
    ck_assert_ptr_nonnull(f);
    ck_assert_str_eq(tg_safetensors_meta(f, "format"), "tapegrad.checkpoint");
    ck_assert_str_eq(tg_safetensors_meta(f, "format_version"), "1");
    ck_assert_str_eq(tg_safetensors_meta(f, "optimizer"), "adam");
    ck_assert_str_eq(tg_safetensors_meta(f, "model"), "test-mlp");
    ck_assert_ptr_nonnull(tg_safetensors_find(f, "fc1.weight"));
    ck_assert_ptr_nonnull(tg_safetensors_find(f, "bn.running_var"));
    ck_assert_ptr_nonnull(tg_safetensors_find(f, "optim.fc2.bias.exp_avg_sq"));
    ck_assert_ptr_nonnull(tg_safetensors_find(f, "optim.step"));
    ck_assert_ptr_nonnull(tg_safetensors_find(f, "batcher.state"));
    ck_assert_ptr_nonnull(tg_safetensors_find(f, "rng.state"));
    tg_ctx_reset(c.s);

    free(want.bytes);
    free(fresh.bytes);
    free(loaded.bytes);
    free(got.bytes);
    run_free(&a);
    run_free(&c);
}
END_TEST

/* Each refusal: a status (want, or any error for TG_OK), a message (that
 * contains needle, unless NULL), and the run's state unchanged. */
static void assert_refused(run *r, const char *path, tg_status want, const char *needle)
{
    snapshot before = snap(r);
    tg_checkpoint ck = ck_of(r);
    tg_status st = tg_checkpoint_load(r->p, path, &ck);
    if (want != TG_OK) tu_assert_status(st, want);
    ck_assert_int_ne(st, TG_OK);
    const char *msg = tg_ctx_errmsg(r->p);
    ck_assert_msg(msg[0] != '\0', "no message");
    ck_assert_msg(!needle || strstr(msg, needle) != NULL, "message '%s' lacks '%s'", msg, needle);
    tg_ctx_clear_error(r->p);
    tg_ctx_clear_error(r->s);
    snapshot after = snap(r);
    snap_assert_equal(&before, &after, path);
    free(before.bytes);
    free(after.bytes);
}

static void write_bytes(const char *path, const unsigned char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_refusals_change_nothing)
{
    run r;
    run_init(&r, 3, HID, false);
    for (int i = 0; i < 3; i++) run_step(&r);
    tg_checkpoint ck = ck_of(&r);
    tu_assert_status(tg_checkpoint_save(r.p, path_of("good.safetensors"), &ck), TG_OK);
    for (int i = 0; i < 2; i++) run_step(&r); /* move on, so a load would change things */

    assert_refused(&r, path_of("missing.safetensors"), TG_ERR_IO, "missing.safetensors");

    size_t n;
    unsigned char *good = tu_slurp(path_of("good.safetensors"), &n);
    /* truncated at many points: never loads, never changes anything */
    for (size_t cut = 0; cut < n; cut += n / 13 + 1) {
        write_bytes(path_of("cut.safetensors"), good, cut);
        assert_refused(&r, path_of("cut.safetensors"), TG_OK, NULL);
    }
    /* a corrupt header */
    unsigned char *bad = malloc(n);
    memcpy(bad, good, n);
    bad[9] = '[';
    write_bytes(path_of("corrupt.safetensors"), bad, n);
    assert_refused(&r, path_of("corrupt.safetensors"), TG_ERR_FORMAT, "corrupt.safetensors");
    free(bad);
    free(good);

    /* another architecture: a hidden size of 12 */
    run other;
    run_init(&other, 3, 12, false);
    ck = ck_of(&other);
    tu_assert_status(tg_checkpoint_save(other.p, path_of("other.safetensors"), &ck), TG_OK);
    assert_refused(&r, path_of("other.safetensors"), TG_ERR_SHAPE, "fc1.weight");
    run_free(&other);

    /* another optimizer: SGD's state has no exp_avg */
    run sgd;
    run_init(&sgd, 3, HID, true);
    run_step(&sgd);
    ck = ck_of(&sgd);
    tu_assert_status(tg_checkpoint_save(sgd.p, path_of("sgd.safetensors"), &ck), TG_OK);
    assert_refused(&r, path_of("sgd.safetensors"), TG_ERR_INVALID, "momentum_buffer");
    run_free(&sgd);

    /* the batcher of another data set size: the optimizer and model would
     * load, the batcher refuses, and nothing is written at all */
    run small;
    run_init(&small, 3, HID, false);
    tg_batcher_opts bo = tg_batcher_defaults();
    bo.batch_size = BATCH;
    small.b = tg_batcher_new(small.p, N - 1, &bo);
    ck = ck_of(&small);
    tu_assert_status(tg_checkpoint_save(small.p, path_of("small.safetensors"), &ck), TG_OK);
    assert_refused(&r, path_of("small.safetensors"), TG_ERR_INVALID, "batcher");
    run_free(&small);

    /* a newer format version */
    tg_tensor *w = tg_model_find(r.m, "fc1.weight");
    const char *k1[] = {"format_version"}, *v1[] = {"2"};
    tu_assert_status(tg_safetensors_write(r.s, path_of("v2.safetensors"), 1, &w, NULL, 1, k1, v1),
                     TG_OK);
    assert_refused(&r, path_of("v2.safetensors"), TG_ERR_FORMAT, "version 2");

    /* a file without the optimizer's state */
    tu_assert_status(tg_safetensors_write(r.s, path_of("w.safetensors"), tg_model_nparams(r.m),
                                          tg_model_params(r.m), NULL, 0, NULL, NULL),
                     TG_OK);
    assert_refused(&r, path_of("w.safetensors"), TG_ERR_INVALID, "running_mean");

    /* the state still saves and loads after all of that */
    ck = ck_of(&r);
    tu_assert_status(tg_checkpoint_load(r.p, path_of("good.safetensors"), &ck), TG_OK);
    ck_assert_int_eq(tg_optim_step_count(r.o), 3);
    run_free(&r);
}
END_TEST

START_TEST(test_weights_only_and_bad_args)
{
    run r;
    run_init(&r, 5, HID, false);
    /* parameters and buffers from a plain safetensors file (as a PyTorch
     * state_dict would be written), model only */
    int np = tg_model_nparams(r.m), nb = tg_model_nbuffers(r.m);
    tg_tensor *all[16];
    for (int i = 0; i < np; i++) all[i] = tg_model_param(r.m, i);
    for (int i = 0; i < nb; i++) all[np + i] = tg_model_buffer(r.m, i);
    tu_assert_status(
        tg_safetensors_write(r.s, path_of("sd.safetensors"), np + nb, all, NULL, 0, NULL, NULL),
        TG_OK);
    run q;
    run_init(&q, 6, HID, false);
    tg_checkpoint mo = {q.m, NULL, NULL, NULL, 0, NULL, NULL};
    tu_assert_status(tg_checkpoint_load(q.p, path_of("sd.safetensors"), &mo), TG_OK);
    for (int i = 0; i < np; i++) {
        tg_tensor *d = tg_sub(q.s, tg_model_param(q.m, i), tg_model_param(r.m, i));
        tg_tensor *mx = tg_sum(q.s, tg_abs(q.s, d));
        ck_assert_ptr_nonnull(mx);
        ck_assert_double_eq(tg_item(mx), 0.0);
    }
    tg_ctx_reset(q.s);

    /* argument errors */
    tg_checkpoint ck = ck_of(&r);
    tu_assert_status(tg_checkpoint_save(NULL, "x", &ck), TG_ERR_INVALID);
    tu_assert_status(tg_checkpoint_load(NULL, "x", &ck), TG_ERR_INVALID);
    tu_assert_status(tg_checkpoint_save(r.p, NULL, &ck), TG_ERR_INVALID);
    tg_ctx_clear_error(r.p);
    tu_assert_status(tg_checkpoint_save(r.p, "x", NULL), TG_ERR_INVALID);
    tg_ctx_clear_error(r.p);
    tu_assert_status(tg_checkpoint_load(r.p, NULL, &ck), TG_ERR_INVALID);
    tg_ctx_clear_error(r.p);
    const char *k[] = {"format"}, *v[] = {"mine"};
    ck.n_meta = 1, ck.meta_keys = k, ck.meta_values = v;
    tu_assert_status(tg_checkpoint_save(r.p, path_of("m.safetensors"), &ck), TG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(r.p), "reserved"));
    tg_ctx_clear_error(r.p);
    ck.n_meta = -1;
    tu_assert_status(tg_checkpoint_save(r.p, path_of("m.safetensors"), &ck), TG_ERR_INVALID);
    tg_ctx_clear_error(r.p);
    ck_assert_int_ne(access(path_of("m.safetensors"), F_OK), 0);
    /* an unwritable place: TG_ERR_IO naming it */
    ck = ck_of(&r);
    tu_assert_status(tg_checkpoint_save(r.p, "/nonexistent-dir/c.safetensors", &ck), TG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(r.p), "/nonexistent-dir/c.safetensors"));
    tg_ctx_clear_error(r.p);
    /* a context holding an error refuses both */
    tg_ctx_set_error(r.p, TG_ERR_INVALID, "earlier");
    tu_assert_status(tg_checkpoint_save(r.p, path_of("e.safetensors"), &ck), TG_ERR_INVALID);
    ck_assert_str_eq(tg_ctx_errmsg(r.p), "earlier");
    tg_ctx_clear_error(r.p);
    /* the RNG state setter */
    uint64_t zero[4] = {0, 0, 0, 0}, w[4];
    tg_ctx_get_rng(r.s, w);
    tu_assert_status(tg_ctx_set_rng(r.s, zero), TG_ERR_INVALID);
    tg_ctx_clear_error(r.s);
    tu_assert_status(tg_ctx_set_rng(r.s, NULL), TG_ERR_INVALID);
    tg_ctx_clear_error(r.s);
    uint64_t w2[4];
    tg_ctx_get_rng(r.s, w2);
    ck_assert_mem_eq(w, w2, sizeof w);
    run_free(&q);
    run_free(&r);
}
END_TEST

Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tu_tcase("checkpoint");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_resume_bit_exact);
    tcase_add_test(tc, test_refusals_change_nothing);
    tcase_add_test(tc, test_weights_only_and_bad_args);
    suite_add_tcase(s, tc);
    return s;
}
