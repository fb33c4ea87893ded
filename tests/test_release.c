/*
 * test_release.c - tg_backward_release: the backward that gives the
 * forward's memory back as the walk goes. Checked here: the gradients are
 * bit for bit those of tg_backward, with less memory; a released tensor
 * refuses every read (accessors, ops, a second backward) with a clear
 * error; tg_retain and the loss keep their values; a custom op on the tape
 * turns releasing off; a walk that runs out of memory anywhere changes no
 * .grad and leaks nothing. That each op's backward reads only what
 * tg__ops_reads says is checked op by op in test_opgrad.c.
 *
 * And tg_recompute_later, which gives activations back in the forward: the
 * same bits again, with or without release, with less memory; recomputed
 * tensors read their values again; second order through them; misuse
 * refused with clear errors; out of memory inside a recompute.
 *
 * The net (a small CNN with a transformer block and a gated head):
 * x [8,1,12,12] -> conv 3x3 (4 channels, pad 1) -> relu -> max pool 2 ->
 * flatten -> linear 144->64 -> gelu -> layer norm -> self-attention
 * (2 x 4 tokens, causal) + residual -> tanh -> linear 64->32 -> sigmoid ->
 * linear 32->10 -> cross-entropy.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "test_util.h"
#include "tensor/tensor_impl.h" /* tg__get_flat */

enum { N_PARAMS = 10 };

typedef struct {
    tg_tensor *p[N_PARAMS]; /* w1 b1 w2 b2 lnw lnb w3 b3 w4 b4 */
} net;

typedef struct {
    tg_tensor *loss, *relu, *conv, *logits, *h, *gelu, *tanh;
} fwd;

static tg_tensor *filled(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape, uint32_t seed,
                         double scale)
{
    return tu_lcg_tensor(c, dt, ndim, shape, seed, scale, false);
}

static void net_init(tg_ctx *c, tg_dtype dt, net *m)
{
    const struct {
        int nd;
        int64_t s[4];
        double scale;
    } spec[N_PARAMS] = {
        {4, {4, 1, 3, 3}, 0.5}, {1, {4}, 0.1},  {2, {64, 144}, 0.1}, {1, {64}, 0.1},
        {1, {64}, 1.0},         {1, {64}, 0.1}, {2, {32, 64}, 0.15}, {1, {32}, 0.1},
        {2, {10, 32}, 0.2},     {1, {10}, 0.1},
    };
    for (int i = 0; i < N_PARAMS; i++) {
        m->p[i] = filled(c, dt, spec[i].nd, spec[i].s, 11u + (uint32_t)i, spec[i].scale);
        ck_assert_ptr_nonnull(m->p[i]);
        tg_set_requires_grad(m->p[i], true);
    }
}

/* tg_recompute_later(t) once t's last forward reader ran, with drop */
static void give_back(bool drop, tg_tensor *t)
{
    if (drop) ck_assert_int_eq(tg_recompute_later(t), TG_OK);
}

/* The forward in s; NULL members on error (on s). With drop, every
 * activation that can be is given back by tg_recompute_later after its last
 * use: the relu's (no backward reads it), the gelu's, the layer norm's,
 * the attention's (read by no backward; its op cannot recompute), the
 * tanh's and the sigmoid's. */
static fwd net_forward_drop(tg_ctx *s, const net *m, tg_dtype dt, bool drop)
{
    fwd f = {0};
    tg_tensor *const *p = m->p;
    tg_tensor *x = filled(s, dt, TG_SHAPE(8, 1, 12, 12), 5, 1.0);
    int64_t lab[8] = {1, 3, 5, 7, 9, 0, 2, 4};
    tg_tensor *labels = tg_tensor_from(s, TG_I64, TG_SHAPE(8), lab);
    tg_conv2d_opts co = tg_conv2d_defaults();
    co.padding[0] = co.padding[1] = 1;
    tg_pool2d_opts po = tg_pool2d_defaults();
    po.kernel[0] = po.kernel[1] = 2;
    f.conv = tg_conv2d(s, x, p[0], p[1], &co);
    f.relu = tg_relu(s, f.conv);
    tg_tensor *h = tg_linear(s, tg_flatten(s, tg_max_pool2d(s, f.relu, &po), 1, -1), p[2], p[3]);
    give_back(drop, f.relu);
    f.gelu = tg_gelu(s, h);
    h = tg_layer_norm(s, f.gelu, 1, (const int64_t[]){64}, p[4], p[5], 1e-5);
    give_back(drop, f.gelu);
    f.h = h;
    tg_tensor *q = tg_reshape(s, h, TG_SHAPE(2, 4, 64));
    tg_tensor *att = tg_sdpa(s, q, q, q, NULL, true, 0.125);
    tg_tensor *a = tg_reshape(s, att, TG_SHAPE(8, 64));
    f.tanh = tg_tanh(s, tg_add(s, a, h));
    give_back(drop, f.h);
    give_back(drop, att);
    tg_tensor *sg = tg_sigmoid(s, tg_linear(s, f.tanh, p[6], p[7]));
    give_back(drop, f.tanh);
    h = tg_linear(s, sg, p[8], p[9]);
    give_back(drop, sg);
    f.logits = h;
    f.loss = tg_cross_entropy(s, h, labels);
    return f;
}

static fwd net_forward(tg_ctx *s, const net *m, tg_dtype dt)
{
    return net_forward_drop(s, m, dt, false);
}

/* Every parameter's gradient, as doubles, into g (cap entries); then
 * zeroes the gradients. Returns how many. */
/* The gradients of the np tensors p, flattened in order into g (at most
 * cap), each then zeroed; how many were written. */
static int64_t take_grads_of(tg_tensor *const *p, int np, double *g, int64_t cap)
{
    int64_t at = 0;
    for (int i = 0; i < np; i++) {
        tg_tensor *gi = tg_grad(p[i]);
        ck_assert_ptr_nonnull(gi);
        int64_t n = tg_numel(gi);
        for (int64_t k = 0; k < n; k++) {
            ck_assert_int_lt(at, cap);
            g[at++] = tg__get_flat(gi, k);
        }
        tg_zero_grad(p[i]);
    }
    return at;
}

static int64_t take_grads(net *m, double *g, int64_t cap)
{
    return take_grads_of(m->p, N_PARAMS, g, cap);
}

enum { MAX_G = 20000 };

/* Same bits as tg_backward with release, with tg_recompute_later and with
 * both, and the step arena's high-water lower each time: with release the
 * conv's output, the relu's and the others go back to the free list and
 * hold the gradients; with tg_recompute_later outputs go back in the
 * forward, and the next outputs of their size take them. (With both, the
 * blocks given back in the forward can serve other sizes in the backward
 * than release alone would; which is less depends on the net.) */
static void same_grads_less_memory(tg_dtype dt)
{
    tg_ctx *p = tu_ctx();
    net m;
    net_init(p, dt, &m);
    static double want[MAX_G], got[MAX_G];
    size_t bytes[4], fwd_bytes[4];
    int64_t n[4];
    for (int r = 0; r < 4; r++) {
        bool release = r & 1, drop = r & 2;
        tg_ctx *s = tu_ctx();
        fwd f = net_forward_drop(s, &m, dt, drop);
        tu_assert_ok(s);
        ck_assert(tg_is_released(f.gelu) == drop);
        fwd_bytes[r] = tg_ctx_bytes_used(s);
        ck_assert_int_eq(release ? tg_backward_release(s, f.loss) : tg_backward(s, f.loss),
                         TG_OK);
        bytes[r] = tg_ctx_bytes_used(s);
        n[r] = take_grads(&m, r ? got : want, MAX_G);
        ck_assert(tg_is_released(f.relu) == (release || drop));
        ck_assert(tg_is_released(f.gelu) == release); /* recomputed, then released again */
        ck_assert(!tg_is_released(f.loss));
        tg_ctx_free(s);
        if (!r) continue;
        ck_assert_int_eq(n[0], n[r]);
        for (int64_t k = 0; k < n[0]; k++)
            ck_assert_msg(memcmp(&want[k], &got[k], sizeof got[k]) == 0,
                          "run %d: gradient element %lld: %.17g, %.17g without release or "
                          "recompute", r, (long long)k, got[k], want[k]);
    }
    /* at least the relu's gradient (with release) or the linear's output
     * (with tg_recompute_later) took a block given back, the conv's output
     * or the relu's, of 8*4*12*12 elements */
    size_t es = dt == TG_F64 ? 8 : 4, block = 8 * 4 * 12 * 12 * es;
    ck_assert_msg(bytes[1] + block <= bytes[0], "step arena %zu bytes with release, %zu without",
                  bytes[1], bytes[0]);
    ck_assert_msg(fwd_bytes[2] < fwd_bytes[0],
                  "forward arena %zu bytes with tg_recompute_later, %zu without", fwd_bytes[2],
                  fwd_bytes[0]);
    ck_assert_msg(bytes[2] < bytes[0], "step arena %zu bytes with tg_recompute_later, %zu without",
                  bytes[2], bytes[0]);
    tg_ctx_free(p);
}

START_TEST(test_same_grads_less_memory_f64)
{
    same_grads_less_memory(TG_F64);
}
END_TEST

START_TEST(test_same_grads_less_memory_f32)
{
    same_grads_less_memory(TG_F32);
}
END_TEST

/* gelu_linear's backward under release writes x's gradient over x, an
 * activation nothing else reads (tg__ops_overwrites): no (R, in) tensor is
 * made, so the step arena stays at least that much below a walk whose x is
 * retained; the gradients are tg_backward's bit for bit whether x is taken
 * or kept (retained, or read by another backward: the product of case 2),
 * at 1 and at 3 threads.
 * x = linear(h) is [256, 32]; in case 3 an add also takes x (without
 * reading it), so x's gradient is a sum. */
START_TEST(test_gelu_linear_takes_its_input)
{
    const tg_dtype dt = _i ? TG_F32 : TG_F64;
    const size_t es = dt == TG_F64 ? 8 : 4;
    tg_ctx *p = tu_ctx();
    tg_tensor *prm[5] = {
        filled(p, dt, TG_SHAPE(256, 16), 3, 1.0), filled(p, dt, TG_SHAPE(32, 16), 4, 0.3),
        filled(p, dt, TG_SHAPE(32), 5, 0.1), filled(p, dt, TG_SHAPE(8, 32), 6, 0.2),
        filled(p, dt, TG_SHAPE(8), 7, 0.1)};
    for (int i = 0; i < 5; i++) tg_set_requires_grad(prm[i], true);
    static double want[8192], got[8192];
    size_t used[4][3];
    for (int cs = 0; cs < 4; cs++)
        for (int run = 0; run < 3; run++) { /* plain; release; release at 3 threads */
            const bool release = run > 0;
            tg_ctx *s = tu_ctx();
            tu_assert_status(tg_ctx_set_threads(s, run == 2 ? 3 : 1), TG_OK);
            tg_tensor *x = tg_linear(s, prm[0], prm[1], prm[2]);
            tg_tensor *y = tg_gelu_linear(s, x, prm[3], prm[4]);
            tg_tensor *loss = tg_sum(s, tg_square(s, y));
            if (cs == 1) tg_retain(x);
            if (cs == 2) loss = tg_add(s, loss, tg_sum(s, tg_mul(s, x, x)));
            if (cs == 3) loss = tg_add(s, loss, tg_sum(s, tg_add(s, x, prm[2])));
            tu_assert_ok(s);
            ck_assert_int_eq(release ? tg_backward_release(s, loss) : tg_backward(s, loss), TG_OK);
            used[cs][run] = tg_ctx_bytes_used(s);
            int64_t n = take_grads_of(prm, 5, release ? got : want, 8192);
            for (int64_t k = 0; release && k < n; k++)
                ck_assert_msg(memcmp(&want[k], &got[k], sizeof got[k]) == 0,
                              "case %d run %d: gradient element %lld: %.17g, tg_backward %.17g",
                              cs, run, (long long)k, got[k], want[k]);
            /* a retained x keeps its values; the others die with the walk */
            ck_assert(tg_is_released(x) == (release && cs != 1));
            tg_ctx_free(s);
        }
    const size_t dx = 256 * 32 * es;
    ck_assert_msg(used[0][1] + dx <= used[1][1] && used[0][1] + dx <= used[0][0],
                  "step arena %zu bytes with release, %zu with x retained, %zu without release",
                  used[0][1], used[1][1], used[0][0]);
    tg_ctx_free(p);
}
END_TEST

/* A released tensor keeps its shape but refuses every read; the loss and a
 * retained tensor keep their values. */
START_TEST(test_released_refuses_reads)
{
    tg_ctx *p = tu_ctx(), *s = tu_ctx();
    net m;
    net_init(p, TG_F64, &m);
    fwd f = net_forward(s, &m, TG_F64);
    tu_assert_ok(s);
    tg_retain(f.logits);
    double loss = tg_item(f.loss);
    static double logits[80];
    ck_assert_int_eq(tg_copy_out(f.logits, logits, sizeof logits), TG_OK);
    ck_assert_int_eq(tg_backward_release(s, f.loss), TG_OK);

    ck_assert(tg_is_released(f.relu) && tg_is_released(f.conv));
    ck_assert(!tg_is_released(f.logits) && !tg_is_released(NULL));
    ck_assert_int_eq(tg_ndim(f.relu), 4);
    ck_assert_int_eq(tg_shape(f.relu)[1], 4);
    ck_assert(isnan(tg_get(f.relu, (const int64_t[]){0, 0, 0, 0})));
    ck_assert_ptr_null(tg_data(f.relu));
    static double buf[8 * 4 * 12 * 12];
    tu_assert_status(tg_copy_out(f.relu, buf, sizeof buf), TG_ERR_MISUSE);
    tu_assert_status(tg_copy_in(f.relu, buf, sizeof buf), TG_ERR_MISUSE);

    ck_assert(tg_item(f.loss) == loss);
    static double again[80];
    ck_assert_int_eq(tg_copy_out(f.logits, again, sizeof again), TG_OK);
    ck_assert(memcmp(logits, again, sizeof again) == 0);
    tu_assert_ok(s);

    /* an op given a released tensor fails, naming it */
    ck_assert_ptr_null(tg_relu(s, f.relu));
    tu_assert_status(tg_ctx_status(s), TG_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(s), "tg_backward_release"));
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(s), "tg_relu"));
    tg_ctx_free(s);
    tg_ctx_free(p);
}
END_TEST

/* A second backward through the released graph is refused and changes no
 * gradient; after a reset the next step runs as usual. */
START_TEST(test_second_backward_refused)
{
    tg_ctx *p = tu_ctx(), *s = tu_ctx();
    net m;
    net_init(p, TG_F64, &m);
    fwd f = net_forward(s, &m, TG_F64);
    ck_assert_int_eq(tg_backward_release(s, f.loss), TG_OK);
    static double g1[MAX_G], g2[MAX_G];
    int64_t n = take_grads(&m, g1, MAX_G);
    for (int i = 0; i < N_PARAMS; i++) {
        tg_tensor *gi = tg_grad(m.p[i]);
        ck_assert_int_eq(tg_copy_out(tg_grad(m.p[i]), g2, (size_t)tg_numel(gi) * 8), TG_OK);
    }
    tu_assert_status(tg_backward(s, f.loss), TG_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(s), "earlier tg_backward_release"));
    for (int i = 0; i < N_PARAMS; i++) {
        double z[64 * 144];
        tg_tensor *gi = tg_grad(m.p[i]);
        ck_assert_int_eq(tg_copy_out(gi, z, (size_t)tg_numel(gi) * 8), TG_OK);
        for (int64_t k = 0; k < tg_numel(gi); k++) ck_assert(z[k] == 0.0);
    }
    tg_ctx_clear_error(s);
    tg_ctx_reset(s);
    f = net_forward(s, &m, TG_F64);
    ck_assert_int_eq(tg_backward_release(s, f.loss), TG_OK);
    ck_assert_int_eq(take_grads(&m, g2, MAX_G), n);
    ck_assert(memcmp(g1, g2, (size_t)n * sizeof *g1) == 0);
    tg_ctx_free(s);
    tg_ctx_free(p);
}
END_TEST

static tg_tensor *keep_fwd(tg_ctx *c, tg_tensor *const *in, int n, void *state, tg_tensor **saved)
{
    (void)n, (void)saved;
    *(tg_tensor **)state = in[0]; /* the kind of thing a user's state may do */
    return tg_scale(c, in[0], 2.0);
}

static void keep_bwd(tg_ctx *c, const tg_custom_ctx *k, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *kept = *(tg_tensor **)k->state;
    double v = tg_get(kept, (const int64_t[]){0, 0, 0, 0}); /* NaN once released */
    dx[0] = tg_scale(c, dout, 2.0 + 0.0 * v);
}

static const tg_custom_op keep_op = {"keep", 1, keep_fwd, keep_bwd};

/* With a custom op on the tape nothing is released: its state may hold any
 * tensor, here the relu's output, which its backward reads. */
START_TEST(test_custom_op_releases_nothing)
{
    tg_ctx *p = tu_ctx(), *s = tu_ctx();
    net m;
    net_init(p, TG_F64, &m);
    fwd f = net_forward(s, &m, TG_F64);
    tg_tensor *kept = NULL;
    tg_tensor *extra = tg_custom(s, &keep_op, &f.relu, 1, &kept);
    tg_tensor *loss = tg_add(s, f.loss, tg_mean(s, extra));
    tu_assert_ok(s);
    ck_assert_int_eq(tg_backward_release(s, loss), TG_OK);
    ck_assert(!tg_is_released(f.relu) && !tg_is_released(f.conv) && !tg_is_released(f.h));
    ck_assert(isfinite(tg_get(tg_grad(m.p[0]), (const int64_t[]){0, 0, 0, 0})));
    tg_ctx_free(s);
    tg_ctx_free(p);
}
END_TEST

/* Out of memory at every point of a releasing walk: after the forward,
 * fillers eat the arena's free space (one more each round, five under
 * valgrind) and every later allocation fails. A failed backward leaves
 * every .grad as it was, a successful one gives the same gradients, and
 * nothing leaks. With drop, the forward gave activations back
 * (tg_recompute_later), so the failures also hit the recomputes. */
static void fail_inside_release_walk(bool drop)
{
    tg_ctx *p = tu_ctx();
    net m;
    net_init(p, TG_F64, &m);
    static double g1[MAX_G], now[MAX_G];
    int64_t n;
    {
        tg_ctx *s = tu_ctx();
        ck_assert_int_eq(tg_backward_release(s, net_forward_drop(s, &m, TG_F64, drop).loss),
                         TG_OK);
        n = take_grads(&m, g1, MAX_G);
        tg_ctx_free(s);
    }
    int failed = 0, round;
    int every = tu_under_valgrind() ? (drop ? 25 : 5) : 1; /* each round is a whole step */
    for (round = 0; round < 100000; round += every) {
        tu_alloc h = {0};
        tg_ctx *s = tu_alloc_ctx(&h, 4096);
        ck_assert_ptr_nonnull(s);
        tg_tensor *loss = net_forward_drop(s, &m, TG_F64, drop).loss;
        tu_assert_ok(s);
        long after_forward = h.allocs;
        for (int i = 0; i < round; i++)
            ck_assert_ptr_nonnull(tg_tensor_new(s, TG_F64, TG_SHAPE(96)));
        bool fillers_grew = h.allocs != after_forward;
        h.fail_at = h.allocs + 1;
        h.fail_rest = true;
        tg_status rc = tg_backward_release(s, loss);
        ck_assert_int_eq(take_grads(&m, now, MAX_G), n); /* and back to zero */
        if (rc == TG_OK) {
            for (int64_t i = 0; i < n; i++)
                ck_assert_msg(now[i] == g1[i], "round %d: element %lld", round, (long long)i);
        } else {
            tu_assert_status(rc, TG_ERR_NOMEM);
            for (int64_t i = 0; i < n; i++)
                ck_assert_msg(now[i] == 0.0, "round %d: a failed backward changed a gradient",
                              round);
            failed++;
        }
        tg_ctx_free(s);
        tu_alloc_assert_no_leak(&h);
        if (fillers_grew) break;
    }
    ck_assert_int_lt(round, 100000);
    ck_assert_msg(failed >= 3, "only %d backwards failed", failed);
    tg_ctx_free(p);
}

START_TEST(test_fail_inside_release_walk)
{
    fail_inside_release_walk(false);
}
END_TEST

START_TEST(test_fail_inside_recompute)
{
    fail_inside_release_walk(true);
}
END_TEST

/* ---- tg_recompute_later ---------------------------------------------------- */

/* Given back, a tensor refuses reads until a backward recomputes it; after
 * a plain backward it holds the same values again. */
START_TEST(test_recompute_reads_again)
{
    tg_ctx *p = tu_ctx(), *s = tu_ctx();
    net m;
    net_init(p, TG_F64, &m);
    fwd f = net_forward(s, &m, TG_F64);
    tu_assert_ok(s);
    static double before[8 * 64], after[8 * 64];
    ck_assert_int_eq(tg_copy_out(f.gelu, before, sizeof before), TG_OK);
    ck_assert_int_eq(tg_recompute_later(f.gelu), TG_OK);
    ck_assert_int_eq(tg_recompute_later(f.gelu), TG_OK); /* once is enough; twice is no error */
    ck_assert(tg_is_released(f.gelu));
    ck_assert(isnan(tg_get(f.gelu, (const int64_t[]){0, 0})));
    ck_assert_ptr_null(tg_data(f.gelu));
    ck_assert_ptr_null(tg_relu(s, f.gelu));
    tu_assert_status(tg_ctx_status(s), TG_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(s), "tg_recompute_later"));
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(s), "tg_relu"));
    tg_ctx_clear_error(s);
    ck_assert_int_eq(tg_backward(s, f.loss), TG_OK);
    ck_assert(!tg_is_released(f.gelu));
    ck_assert_int_eq(tg_copy_out(f.gelu, after, sizeof after), TG_OK);
    ck_assert(memcmp(before, after, sizeof after) == 0);
    tg_ctx_free(s);
    tg_ctx_free(p);
}
END_TEST

static void give_back_bwd(tg_ctx *c, const tg_custom_ctx *k, tg_tensor *dout, tg_tensor **dx)
{
    /* refused: a backward is running */
    tu_assert_status(tg_recompute_later(*(tg_tensor **)k->state), TG_ERR_MISUSE);
    (void)c, (void)dout, (void)dx;
}

/* keep_op's forward: its state holds the input */
static const tg_custom_op give_back_op = {"give_back", 1, keep_fwd, give_back_bwd};

/* What tg_recompute_later refuses, each with its status and a message
 * naming the problem; a refused call gives nothing back. */
START_TEST(test_recompute_refusals)
{
    tu_assert_status(tg_recompute_later(NULL), TG_ERR_INVALID);
    const struct {
        const char *what, *msg;
        tg_status want;
    } cases[] = {
        {"leaf", "not the output of an op", TG_ERR_MISUSE},
        {"grad mode off", "not the output of an op", TG_ERR_MISUSE},
        {"view", "shares its memory", TG_ERR_MISUSE},
        {"retained", "tg_retain", TG_ERR_MISUSE},
        {"dropout", "cannot recompute", TG_ERR_UNSUPPORTED},
        {"after reset", "not the output of an op", TG_ERR_MISUSE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tg_ctx *c = tu_ctx();
        tg_tensor *x = filled(c, TG_F64, TG_SHAPE(16, 32), 3, 1.0);
        tg_set_requires_grad(x, true);
        tg_tensor *y = tg_tanh(c, x), *t = NULL;
        switch (i) {
        case 0: t = x; break;
        case 1:
            tg_set_grad_enabled(c, false);
            t = tg_tanh(c, x);
            tg_set_grad_enabled(c, true);
            break;
        case 2: t = tg_reshape(c, y, TG_SHAPE(32, 16)); break;
        case 3: t = y; tg_retain(y); break;
        case 4:
            t = tg_dropout(c, y, 0.5, true);
            ck_assert_ptr_nonnull(tg_mul(c, t, t)); /* whose backward reads it */
            break;
        case 5: tg_ctx_reset(c); t = y; break;
        }
        tu_assert_ok(c);
        tu_assert_status(tg_recompute_later(t), cases[i].want);
        ck_assert_msg(strstr(tg_ctx_errmsg(c), cases[i].msg) != NULL, "%s: %s", cases[i].what,
                      tg_ctx_errmsg(c));
        ck_assert_msg(!tg_is_released(t), "%s: given back although refused", cases[i].what);
        tg_ctx_free(c);
    }
    /* dropout's output that no backward reads goes back */
    tg_ctx *c = tu_ctx();
    tg_tensor *x = filled(c, TG_F64, TG_SHAPE(16, 32), 3, 1.0);
    tg_set_requires_grad(x, true);
    tg_tensor *d = tg_dropout(c, x, 0.5, true), *loss = tg_sum(c, tg_add(c, d, x));
    ck_assert_int_eq(tg_recompute_later(d), TG_OK);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK);
    ck_assert(tg_is_released(d));
    tg_ctx_free(c);
    /* during a backward */
    c = tu_ctx();
    x = filled(c, TG_F64, TG_SHAPE(16, 32), 3, 1.0);
    tg_set_requires_grad(x, true);
    tg_tensor *held = NULL, *u = tg_tanh(c, x);
    loss = tg_sum(c, tg_custom(c, &give_back_op, &u, 1, &held));
    tu_assert_ok(c);
    tg_status rc = tg_backward(c, loss);
    ck_assert(rc == TG_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "during a backward"));
    ck_assert(!tg_is_released(u));
    tg_ctx_free(c);
}
END_TEST

/* An input of the op to recompute, changed in place after the forward, is
 * refused by the backward (the recompute would differ); .grad untouched. */
START_TEST(test_recompute_input_changed)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = filled(c, TG_F64, TG_SHAPE(16, 32), 3, 1.0);
    tg_set_requires_grad(x, true);
    tg_tensor *u = tg_scale(c, x, 0.5), *y = tg_tanh(c, u);
    tg_tensor *loss = tg_sum(c, tg_mul(c, y, y));
    ck_assert_int_eq(tg_recompute_later(y), TG_OK);
    static double buf[16 * 32];
    ck_assert_int_eq(tg_copy_out(u, buf, sizeof buf), TG_OK);
    ck_assert_int_eq(tg_copy_in(u, buf, sizeof buf), TG_OK); /* same values, a new version */
    tu_assert_status(tg_backward(c, loss), TG_ERR_MISUSE);
    ck_assert_ptr_nonnull(strstr(tg_ctx_errmsg(c), "modified in place"));
    ck_assert_ptr_null(tg_grad(x));
    tg_ctx_free(c);
}
END_TEST

/* loss(x) = sum(tanh(gelu(x) W)^2): the gradient with a graph, then the
 * gradient of its squared sum (second order), with gelu's and tanh's
 * outputs given back and recomputed, and a chain given back (gelu's output
 * read only by the recompute of the linear's): the same bits. */
START_TEST(test_recompute_second_order)
{
    static double want[8 * 32 + 16 * 32], got[8 * 32 + 16 * 32];
    for (int drop = 0; drop < 2; drop++) {
        tg_ctx *c = tu_ctx();
        tg_tensor *x = filled(c, TG_F64, TG_SHAPE(8, 32), 3, 1.0);
        tg_tensor *w = filled(c, TG_F64, TG_SHAPE(16, 32), 4, 0.3);
        tg_set_requires_grad(x, true);
        tg_set_requires_grad(w, true);
        tg_tensor *g = tg_gelu(c, x), *h = tg_linear(c, g, w, NULL), *t = tg_tanh(c, h);
        tg_tensor *loss = tg_sum(c, tg_mul(c, t, t));
        if (drop) {
            ck_assert_int_eq(tg_recompute_later(t), TG_OK);
            ck_assert_int_eq(tg_recompute_later(h), TG_OK);
            ck_assert_int_eq(tg_recompute_later(g), TG_OK);
        }
        tg_tensor *gw = NULL;
        ck_assert_int_eq(tg_grad_of(c, 1, &loss, NULL, 1, &w, true, &gw), TG_OK);
        ck_assert_int_eq(tg_backward(c, tg_sum(c, tg_mul(c, gw, gw))), TG_OK);
        double *to = drop ? got : want;
        ck_assert_int_eq(tg_copy_out(tg_grad(x), to, 8 * 32 * sizeof *to), TG_OK);
        ck_assert_int_eq(tg_copy_out(tg_grad(w), to + 8 * 32, 16 * 32 * sizeof *to), TG_OK);
        tg_ctx_free(c);
    }
    ck_assert(memcmp(want, got, sizeof want) == 0);
}
END_TEST

/* Sequential gives back a child's output that no backward reads once the
 * next child has run: the relu's under the second tanh (relu's backward
 * reads its input, tanh's its output), whose block the last linear's
 * output takes.
 * The same gradients as the children called one by one, less arena; with
 * grad mode off nothing is recorded and nothing given back. */
/* seq's forward of x on c, or with !whole its nk children's one by one;
 * *bytes: the arena bytes it took. */
static tg_tensor *seq_forward(tg_ctx *c, tg_module *seq, tg_module *const *kids, int nk,
                              bool whole, tg_tensor *x, size_t *bytes)
{
    size_t before = tg_ctx_bytes_used(c);
    tg_tensor *y = x;
    if (whole) {
        y = tg_module_forward(c, seq, x);
    } else {
        for (int i = 0; i < nk; i++) y = tg_module_forward(c, kids[i], y);
    }
    tu_assert_ok(c);
    *bytes = tg_ctx_bytes_used(c) - before;
    return y;
}

/* y's elements into out (nout of them), then the gradients of sum(y * y)
 * into g (cap values: every parameter's, in order). */
static void out_and_grads(tg_ctx *c, tg_tensor *y, double *out, int64_t nout,
                          tg_tensor *const *params, int np, double *g, int64_t cap)
{
    ck_assert_int_eq(tg_numel(y), nout);
    for (int64_t k = 0; k < nout; k++) out[k] = tg__get_flat(y, k);
    ck_assert_int_eq(tg_backward(c, tg_sum(c, tg_mul(c, y, y))), TG_OK);
    ck_assert_int_eq(take_grads_of(params, np, g, cap), cap);
}

/* The fused run (1) against the children's one by one (0): the same
 * output and gradients bit for bit, and a forward at least saved bytes
 * smaller. */
static void assert_fused_same(const double *out0, const double *out1, size_t out_bytes,
                              const double *g0, const double *g1, size_t g_bytes,
                              const size_t *fwd_bytes, size_t saved)
{
    ck_assert(memcmp(out0, out1, out_bytes) == 0);
    ck_assert(memcmp(g0, g1, g_bytes) == 0);
    ck_assert_msg(fwd_bytes[1] + saved <= fwd_bytes[0],
                  "Sequential's forward took %zu bytes, the children one by one %zu",
                  fwd_bytes[1], fwd_bytes[0]);
}

/* Sequential runs a Conv2d and the ReLU after it as one tg_conv2d_relu:
 * the output and the gradients are the children's one by one, bit for bit
 * (f32 and f64), with at least the first convolution's output less in the
 * forward; an op output given to Sequential as its input stays readable
 * (it is not one of the children's outputs to give back). */
START_TEST(test_sequential_fuses_conv_relu)
{
    tg_dtype dt = _i ? TG_F64 : TG_F32;
    tg_ctx *pc = tu_ctx();
    tg_ctx_seed(pc, 3);
    tg_model *m = tg_model_new(pc);
    tu_assert_status(tg_model_set_dtype(m, dt), TG_OK);
    tg_conv2d_opts co = tg_conv2d_defaults();
    co.padding[0] = co.padding[1] = 1;
    tg_pool2d_opts po = tg_pool2d_defaults();
    po.kernel[0] = po.kernel[1] = 2;
    tg_module *seq = tg_nn_sequential_new(m, "seq");
    tg_module *kids[5] = {tg_nn_conv2d_new(m, "seq.0", 2, 4, 3, 3, &co, true), tg_nn_relu_new(m),
                          tg_nn_max_pool2d_new(m, "seq.2", &po),
                          tg_nn_conv2d_new(m, "seq.3", 4, 4, 3, 3, &co, false),
                          tg_nn_relu_new(m)};
    for (int i = 0; i < 5; i++) ck_assert_int_eq(tg_nn_sequential_add(seq, kids[i]), TG_OK);
    tu_assert_ok(pc);
    int np = tg_model_nparams(m);
    tg_tensor *const *params = tg_model_params(m);
    static double g[2][2 * 4 * 9 + 4 + 4 * 4 * 9], out[2][3 * 4 * 4 * 4];
    size_t fwd_bytes[2];
    for (int r = 0; r < 2; r++) {
        tg_ctx *c = tu_ctx();
        tg_tensor *x0 = filled(c, dt, TG_SHAPE(3, 2, 8, 8), 9, 1.0);
        tg_set_requires_grad(x0, true);
        tg_tensor *x = tg_scale(c, x0, 0.5); /* an op's output */
        tg_tensor *y = seq_forward(c, seq, kids, 5, r, x, &fwd_bytes[r]);
        ck_assert(!tg_is_released(x));
        out_and_grads(c, y, out[r], (int64_t)(sizeof out[0] / sizeof out[0][0]), params, np,
                      g[r], (int64_t)(sizeof g[0] / sizeof g[0][0]));
        tg_ctx_free(c);
    }
    assert_fused_same(out[0], out[1], sizeof out[0], g[0], g[1], sizeof g[0], fwd_bytes,
                      (size_t)3 * 4 * 8 * 8 * tg_dtype_size(dt)); /* the first conv's output */
    tg_ctx_free(pc);
}
END_TEST

/* Sequential runs a Linear and the ReLU after it as one tg_linear_relu
 * (_i / 2 == 0): the output and the gradients are the children's one by
 * one, bit for bit (f32 and f64, _i % 2), with at least the first
 * pre-activation less in the forward. A GELU and the Linear after it
 * (_i / 2 == 1) run as the two ops, not as tg_gelu_linear, which trades
 * time for memory (docs/DECISIONS.md): the same ops, the same bits, no
 * more memory. */
START_TEST(test_sequential_fuses_linear_pairs)
{
    tg_dtype dt = _i % 2 ? TG_F64 : TG_F32;
    const bool gelu = _i / 2;
    tg_ctx *pc = tu_ctx();
    tg_ctx_seed(pc, gelu ? 5 : 6);
    tg_model *m = tg_model_new(pc);
    tu_assert_status(tg_model_set_dtype(m, dt), TG_OK);
    tg_module *seq = tg_nn_sequential_new(m, "seq");
    tg_module *kids[4];
    int nk = gelu ? 3 : 4;
    if (gelu) {
        kids[0] = tg_nn_linear_new(m, "seq.0", 16, 64, true);
        kids[1] = tg_nn_gelu_new(m);
        kids[2] = tg_nn_linear_new(m, "seq.2", 64, 16, true);
    } else {
        kids[0] = tg_nn_linear_new(m, "seq.0", 16, 48, true);
        kids[1] = tg_nn_relu_new(m);
        kids[2] = tg_nn_linear_new(m, "seq.2", 48, 8, false);
        kids[3] = tg_nn_relu_new(m);
    }
    for (int i = 0; i < nk; i++) ck_assert_int_eq(tg_nn_sequential_add(seq, kids[i]), TG_OK);
    tu_assert_ok(pc);
    int np = tg_model_nparams(m);
    tg_tensor *const *params = tg_model_params(m);
    const int64_t ng = gelu ? 16 * 64 + 64 + 64 * 16 + 16 : 16 * 48 + 48 + 48 * 8;
    const int64_t nout = gelu ? 32 * 16 : 32 * 8;
    static double g[2][16 * 64 + 64 + 64 * 16 + 16], out[2][32 * 16];
    size_t fwd_bytes[2];
    for (int r = 0; r < 2; r++) {
        tg_ctx *c = tu_ctx();
        tg_tensor *x = filled(c, dt, TG_SHAPE(32, 16), 9, 1.0);
        tg_tensor *y = seq_forward(c, seq, kids, nk, r, x, &fwd_bytes[r]);
        ck_assert_int_eq(tg_tensor_op(y),
                         gelu ? TG_OP_LINEAR : (r ? TG_OP_LINEAR_RELU : TG_OP_RELU));
        out_and_grads(c, y, out[r], nout, params, np, g[r], ng);
        tg_ctx_free(c);
    }
    assert_fused_same(out[0], out[1], (size_t)nout * sizeof(double), g[0], g[1],
                      (size_t)ng * sizeof(double), fwd_bytes,
                      gelu ? 0 : (size_t)32 * 48 * tg_dtype_size(dt));
    tg_ctx_free(pc);
}
END_TEST

START_TEST(test_sequential_gives_back_unread)
{
    tg_ctx *pc = tu_ctx();
    tg_model *m = tg_model_new(pc);
    tg_module *seq = tg_nn_sequential_new(m, "seq");
    /* no pair Sequential fuses (a Linear before a ReLU would be one op) */
    tg_module *kids[5] = {tg_nn_linear_new(m, "seq.0", 32, 64, true), tg_nn_tanh_new(m),
                          tg_nn_relu_new(m), tg_nn_tanh_new(m),
                          tg_nn_linear_new(m, "seq.4", 64, 64, true)};
    for (int i = 0; i < 5; i++) ck_assert_int_eq(tg_nn_sequential_add(seq, kids[i]), TG_OK);
    tu_assert_ok(pc);
    int np = tg_model_nparams(m);
    tg_tensor *const *params = tg_model_params(m);
    static double g[2][64 * 64 + 64 * 32 + 128];
    size_t fwd_bytes[2];
    for (int r = 0; r < 2; r++) {
        tg_ctx *c = tu_ctx();
        tg_tensor *x = filled(c, TG_F32, TG_SHAPE(64, 32), 9, 1.0);
        tg_tensor *y = seq_forward(c, seq, kids, 5, r, x, &fwd_bytes[r]);
        ck_assert_int_eq(tg_backward(c, tg_sum(c, y)), TG_OK);
        int64_t cap = (int64_t)(sizeof g[0] / sizeof g[0][0]);
        ck_assert_int_eq(take_grads_of(params, np, g[r], cap), cap);
        tg_ctx_free(c);
    }
    ck_assert(memcmp(g[0], g[1], sizeof g[0]) == 0);
    ck_assert_msg(fwd_bytes[1] + 64 * 64 * 4 <= fwd_bytes[0],
                  "Sequential's forward took %zu bytes, the children one by one %zu",
                  fwd_bytes[1], fwd_bytes[0]);
    tg_ctx *c = tu_ctx();
    tg_set_grad_enabled(c, false);
    tg_tensor *y = tg_module_forward(c, seq, filled(c, TG_F32, TG_SHAPE(64, 32), 9, 1.0));
    tu_assert_ok(c);
    ck_assert(!tg_is_released(y) && isfinite(tg_item(tg_sum(c, y))));
    tg_ctx_free(c);
    tg_ctx_free(pc);
}
END_TEST

/* The np tensors p (their .grad with grad), flattened in order into v. */
static void values_of(tg_tensor *const *p, int np, bool grad, double *v)
{
    for (int k = 0, at = 0; k < np; k++) {
        const tg_tensor *t = grad ? tg_grad(p[k]) : p[k];
        ck_assert_ptr_nonnull(t);
        for (int64_t i = 0; i < tg_numel(t); i++) v[at++] = tg__get_flat(t, i);
    }
}

/* A node that leaves a job for the commit keeps only what the job reads.
 * MLP 64 -> 512 (relu) -> 512 (relu) -> 10 on 128 rows, the ReLUs fused
 * (tg_linear_relu), cross-entropy. Under release (released memory poisoned
 * with NaNs): fc2's job (dW2 = dy2^T h1) keeps h1, but h2, which fc2's
 * backward reads as its output, is released; fc3's dW3 is made at once,
 * since deferring it would keep h2 (256 KB) for a gradient of 20 KB, and
 * fc2's input gradient dh1 takes h2's memory (no new 256 KB). The
 * gradients are tg_backward's bit for bit. tg_backward_step's scratch for
 * dW2's blocks (256 KB) costs no more than that: its step arena grows
 * less than half a block more than the releasing walk's (which makes no
 * scratch), and it steps as release / tg_optim_step does, to rounding. */
START_TEST(test_jobs_keep_only_what_they_read)
{
    enum { R = 128, IN = 64, H = 512, OUT = 10, NP = 6, N = H * IN + H + H * H + H + OUT * H + OUT };
    tg_ctx *pc = tu_ctx();
    const int64_t shape[NP][2] = {{H, IN}, {H, 0}, {H, H}, {H, 0}, {OUT, H}, {OUT, 0}};
    tg_tensor *p[2][NP]; /* the same values twice: run 2 steps the second */
    for (int k = 0; k < 2 * NP; k++) {
        tg_tensor *t = filled(pc, TG_F32, shape[k % NP][1] ? 2 : 1, shape[k % NP],
                              41u + (uint32_t)(k % NP), 0.05);
        tg_set_requires_grad(t, true);
        p[k / NP][k % NP] = t;
    }
    tu_assert_ok(pc);
    int64_t lab[R];
    for (int i = 0; i < R; i++) lab[i] = (i * 7) % OUT;
    static double g[2][N], v[2][N];
    size_t grew[3];
    const size_t min = tg__release_min;
    tg__release_poison = true;
    tg__release_min = 1;
    tg_adam_opts ao = tg_adam_defaults();
    for (int run = 0; run < 3; run++) { /* tg_backward, release, tg_backward_step */
        tg_tensor *const *q = p[run == 2];
        tg_ctx *s = tu_ctx();
        tg_tensor *x = filled(s, TG_F32, TG_SHAPE(R, IN), 9, 1.0);
        tg_tensor *h1 = tg_linear_relu(s, x, q[0], q[1]);
        tg_tensor *h2 = tg_linear_relu(s, h1, q[2], q[3]);
        tg_tensor *loss = tg_cross_entropy(s, tg_linear(s, h2, q[4], q[5]),
                                           tg_tensor_from(s, TG_I64, TG_SHAPE(R), lab));
        tu_assert_ok(s);
        const size_t fwd = tg_ctx_bytes_used(s);
        tg_optim *o = run ? tg_adam_new(pc, q, NP, &ao) : NULL;
        ck_assert(!run || o);
        tu_assert_status(run == 0   ? tg_backward(s, loss)
                         : run == 1 ? tg_backward_release(s, loss)
                                    : tg_backward_step(s, loss, o),
                         TG_OK);
        grew[run] = tg_ctx_bytes_used(s) - fwd;
        ck_assert(tg_is_released(h2) == (run > 0));
        ck_assert(!tg_is_released(h1));
        if (run == 0) ck_assert_int_eq(take_grads_of(q, NP, g[0], N), N);
        if (run == 1) {
            values_of(q, NP, true, g[1]);
            tu_assert_status(tg_optim_step(o), TG_OK);
        }
        if (run) values_of(q, NP, false, v[run - 1]);
        tg_optim_free(o);
        tg_ctx_free(s);
    }
    tg__release_min = min;
    tg__release_poison = false;
    ck_assert(memcmp(g[0], g[1], sizeof g[0]) == 0);
    for (int64_t i = 0; i < N; i++)
        ck_assert_msg(fabs(v[0][i] - v[1][i]) <= 2e-5 * fmax(1.0, fabs(v[0][i])),
                      "parameter element %lld: %.9g after tg_backward_step, %.9g after "
                      "tg_optim_step", (long long)i, v[1][i], v[0][i]);
    /* release: fc2's dh1 on h2's memory (dW3 and a few headers more) */
    ck_assert_msg(grew[1] + (size_t)R * H * 4 <= grew[0] + (size_t)OUT * H * 4 + 4096,
                  "the releasing walk took %zu bytes, tg_backward's %zu", grew[1], grew[0]);
    ck_assert_msg(grew[2] < grew[1] + (size_t)R * H * 4 / 2,
                  "tg_backward_step's walk took %zu bytes, the releasing one %zu", grew[2],
                  grew[1]);
    tg_ctx_free(pc);
}
END_TEST

/* Out of memory anywhere in a releasing walk whose linear_relu layers
 * land input gradients on their outputs and leave weight gradients for
 * the commit, and in tg_backward_step's commit (its scratch): MLP 8 -> 32
 * (relu) -> 32 (relu) -> 4 on 16 rows, f64, every storage releasable. The
 * arena's chunk allocations fail from each point of the walk on in turn
 * (filler tensors move the point): a failed call leaves every .grad, or
 * every parameter, as it was; a successful one gives the same values as
 * with memory to spare; nothing leaks. */
START_TEST(test_fail_inside_jobs_walk)
{
    enum { R = 16, IN = 8, H = 32, OUT = 4, NP = 6, N = H * IN + H + H * H + H + OUT * H + OUT };
    const bool step = _i;
    tg_ctx *pc = tu_ctx();
    const int64_t shape[NP][2] = {{H, IN}, {H, 0}, {H, H}, {H, 0}, {OUT, H}, {OUT, 0}};
    tg_tensor *p[NP];
    for (int k = 0; k < NP; k++) {
        p[k] = filled(pc, TG_F64, shape[k][1] ? 2 : 1, shape[k], 51u + (uint32_t)k, 0.3);
        tg_set_requires_grad(p[k], true);
    }
    tu_assert_ok(pc);
    int64_t lab[R];
    for (int i = 0; i < R; i++) lab[i] = i % OUT;
    const size_t min = tg__release_min;
    tg__release_min = 1;
    static double want[N], start[N], now[N];
    values_of(p, NP, false, start);
    const tg_adam_opts ao = tg_adam_defaults();
    int failed = 0, round;
    int every = tu_under_valgrind() ? 3 : 1;
    for (round = -1; round < 100000; round += round < 0 ? 1 : every) {
        tg_ctx *oc = tu_ctx(); /* a fresh optimizer each round: the first step */
        tg_optim *o = tg_adam_new(oc, p, NP, &ao);
        ck_assert_ptr_nonnull(o);
        tu_alloc h = {0};
        tg_ctx *s = tu_alloc_ctx(&h, 4096);
        ck_assert_ptr_nonnull(s);
        tg_tensor *x = filled(s, TG_F64, TG_SHAPE(R, IN), 9, 1.0);
        tg_tensor *h2 = tg_linear_relu(s, tg_linear_relu(s, x, p[0], p[1]), p[2], p[3]);
        tg_tensor *loss = tg_cross_entropy(s, tg_linear(s, h2, p[4], p[5]),
                                           tg_tensor_from(s, TG_I64, TG_SHAPE(R), lab));
        tu_assert_ok(s);
        long after_forward = h.allocs;
        for (int i = 0; i < round; i++)
            ck_assert_ptr_nonnull(tg_tensor_new(s, TG_F64, TG_SHAPE(96)));
        bool fillers_grew = h.allocs != after_forward;
        if (round >= 0) { /* round -1: memory to spare, the values wanted */
            h.fail_at = h.allocs + 1;
            h.fail_rest = true;
        }
        tg_status rc = step ? tg_backward_step(s, loss, o) : tg_backward_release(s, loss);
        for (int k = 0, at = 0; k < NP; at += (int)tg_numel(p[k]), k++) {
            const tg_tensor *g = tg_grad(p[k]);
            ck_assert(!step || !g);
            for (int64_t i = 0; i < tg_numel(p[k]); i++)
                now[at + i] = step ? tg__get_flat(p[k], i) : g ? tg__get_flat(g, i) : 0.0;
            if (!step) tg_zero_grad(p[k]);
            else /* back to where they were */
                ck_assert_int_eq(tg_copy_in(p[k], start + at,
                                            (size_t)tg_numel(p[k]) * sizeof(double)),
                                 TG_OK);
        }
        if (round < 0) {
            tu_assert_status(rc, TG_OK);
            memcpy(want, now, sizeof want);
        } else if (rc == TG_OK) {
            for (int64_t i = 0; i < N; i++)
                ck_assert_msg(now[i] == want[i], "round %d: element %lld", round, (long long)i);
        } else {
            tu_assert_status(rc, TG_ERR_NOMEM);
            for (int64_t i = 0; i < N; i++)
                ck_assert_msg(now[i] == (step ? start[i] : 0.0),
                              "round %d: a failed walk changed %s %lld", round,
                              step ? "parameter element" : "gradient element", (long long)i);
            failed++;
        }
        tg_ctx_free(s);
        tu_alloc_assert_no_leak(&h);
        tg_optim_free(o);
        tg_ctx_free(oc);
        if (fillers_grew) break;
    }
    tg__release_min = min;
    ck_assert_int_lt(round, 100000);
    ck_assert_msg(failed >= 3, "only %d walks failed", failed);
    tg_ctx_free(pc);
}
END_TEST

Suite *release_suite(void)
{
    Suite *s = suite_create("release");
    TCase *tc = tu_tcase("release");
    tcase_add_test(tc, test_same_grads_less_memory_f64);
    tcase_add_test(tc, test_same_grads_less_memory_f32);
    tcase_add_test(tc, test_released_refuses_reads);
    tcase_add_loop_test(tc, test_gelu_linear_takes_its_input, 0, 2);
    tcase_add_test(tc, test_second_backward_refused);
    tcase_add_test(tc, test_recompute_reads_again);
    tcase_add_test(tc, test_recompute_refusals);
    tcase_add_test(tc, test_recompute_input_changed);
    tcase_add_test(tc, test_recompute_second_order);
    tcase_add_test(tc, test_fail_inside_recompute);
    tcase_add_test(tc, test_sequential_gives_back_unread);
    tcase_add_loop_test(tc, test_sequential_fuses_conv_relu, 0, 2);
    tcase_add_loop_test(tc, test_sequential_fuses_linear_pairs, 0, 4);
    tcase_add_test(tc, test_custom_op_releases_nothing);
    tcase_add_test(tc, test_fail_inside_release_walk);
    tcase_add_test(tc, test_jobs_keep_only_what_they_read);
    tcase_add_loop_test(tc, test_fail_inside_jobs_walk, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}
