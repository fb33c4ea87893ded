/*
 * test_recycle.c - tg_backward gives a gradient's memory back to the step
 * arena once the last node that reads it has run, so the backward's memory
 * does not grow with the depth of the graph. Checked here: the walk's
 * bytes stay flat as layers are added; the values are those of tg_grad_of
 * (which recycles nothing); a node writes its gradient over its dout when
 * nothing else holds that, tensors too small to recycle included; a custom
 * op's backward may keep the dout it was given and what it returned; a
 * backward that runs out of memory anywhere in the walk changes no .grad
 * and leaks nothing.
 *
 * The graph: L residual layers h += f_l(h) over an [R, C] activation, with
 * f_l = tanh(h * a) (a broadcast leaf shared by the layers), reshaped views
 * of it, and two shared linears, one with a weight larger than its output
 * gradient (its job is deferred to the commit) and one smaller (run during
 * the walk so that the output gradient can go); loss = sum(h * h).
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "test_util.h"

typedef struct {
    int64_t R, C;
    tg_tensor *x, *a, *w1, *b1, *w2; /* x [R, C], a [C], w1 [C, C], b1 [C], w2 [C/4, C/4] */
} net;

static tg_tensor *param(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape, uint32_t seed,
                        double scale)
{
    return tu_lcg_tensor(c, dt, ndim, shape, seed, scale, true);
}

static bool net_init(tg_ctx *c, tg_dtype dt, int64_t R, int64_t C, net *m)
{
    m->R = R;
    m->C = C;
    m->x = param(c, dt, TG_SHAPE(R, C), 1, 1.0);
    m->a = param(c, dt, TG_SHAPE(C), 2, 1.0);
    m->w1 = param(c, dt, TG_SHAPE(C, C), 3, 1.0 / (double)C);
    m->b1 = param(c, dt, TG_SHAPE(C), 4, 0.1);
    m->w2 = param(c, dt, TG_SHAPE(C / 4, C / 4), 5, 4.0 / (double)C);
    return m->x && m->a && m->w1 && m->b1 && m->w2;
}

/* f_l(h) for layer l. */
static tg_tensor *layer(tg_ctx *c, const net *m, tg_tensor *h, int l)
{
    int64_t R = m->R, C = m->C;
    tg_tensor *t = tg_tanh(c, tg_mul(c, h, m->a));
    switch (l % 4) {
    case 1: /* views: a reshape and back */
        return tg_reshape(c, tg_reshape(c, t, TG_SHAPE(R * C / 2, 2)), TG_SHAPE(R, C));
    case 2: /* dout [R, C], W [C, C] */
        return tg_linear(c, t, m->w1, m->b1);
    case 3: /* dout [4R, C/4] is larger than W [C/4, C/4] */
        return tg_reshape(c, tg_linear(c, tg_reshape(c, t, TG_SHAPE(4 * R, C / 4)), m->w2, NULL),
                          TG_SHAPE(R, C));
    default:
        return t;
    }
}

static tg_tensor *net_loss(tg_ctx *c, const net *m, int L)
{
    tg_tensor *h = m->x;
    for (int l = 0; l < L; l++) h = tg_add(c, h, layer(c, m, h, l));
    return tg_sum(c, tg_mul(c, h, h));
}

#define N_PARAMS 5
/* Elements of all the parameters of an [R, C] net. */
#define N_GRADS(R, C) ((R) * (C) + (C) + (C) * (C) + (C) + ((C) / 4) * ((C) / 4))

static tg_tensor **params_of(net *m, tg_tensor *p[N_PARAMS])
{
    p[0] = m->x, p[1] = m->a, p[2] = m->w1, p[3] = m->b1, p[4] = m->w2;
    return p;
}

/* t (f64, any layout) copied out as doubles into a malloc'ed array. */
static double *f64s(const tg_tensor *t)
{
    double *v = malloc((size_t)tg_numel(t) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(tg_copy_out(t, v, (size_t)tg_numel(t) * sizeof *v), TG_OK);
    return v;
}

/* Every .grad of m as doubles, in parameter order; the count. */
static int64_t read_grads(net *m, double *out, int64_t cap)
{
    tg_tensor *p[N_PARAMS];
    params_of(m, p);
    int64_t k = 0;
    for (int i = 0; i < N_PARAMS; i++) {
        tg_tensor *g = tg_grad(p[i]);
        ck_assert_ptr_nonnull(g);
        int64_t n = tg_numel(g);
        ck_assert_int_le(k + n, cap);
        if (tg_tensor_dtype(g) == TG_F64) {
            double *v = f64s(g);
            memcpy(out + k, v, (size_t)n * sizeof *v);
            free(v);
        } else {
            float *v = malloc((size_t)n * sizeof *v);
            ck_assert_int_eq(tg_copy_out(g, v, (size_t)n * sizeof *v), TG_OK);
            for (int64_t j = 0; j < n; j++) out[k + j] = v[j];
            free(v);
        }
        k += n;
    }
    return k;
}

/* Bytes of c's arena that a second tg_backward of loss takes (the first
 * made .grad); frees c. */
static size_t walk_bytes(tg_ctx *c, tg_tensor *loss)
{
    tu_assert_ok(c);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK);
    size_t before = tg_ctx_bytes_used(c);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK);
    size_t used = tg_ctx_bytes_used(c) - before;
    tg_ctx_free(c);
    return used;
}

/* The net over L layers of [64, 256] f32. */
static size_t net_bytes(int L)
{
    tg_ctx *c = tu_ctx();
    net m;
    ck_assert(net_init(c, TG_F32, 64, 256, &m));
    return walk_bytes(c, net_loss(c, &m, L));
}

/* L layers h += tanh(h) / s with s of h's shape [64, 256] (not a leaf):
 * div's backward makes two full-size temporaries per layer for s's
 * gradient, which the walk gives back once the layer's node is done. */
static size_t div_chain_bytes(int L)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = param(c, TG_F32, TG_SHAPE(64, 256), 21, 1.0);
    tg_tensor *s = tg_add_scalar(c, param(c, TG_F32, TG_SHAPE(64, 256), 22, 0.5), 2.0);
    tg_tensor *h = x;
    for (int l = 0; l < L; l++) h = tg_add(c, h, tg_div(c, tg_tanh(c, h), s));
    return walk_bytes(c, tg_sum(c, h));
}

/* A layer would add several [64, 256] f32 gradients or temporaries (64 KB
 * each) if none were given back; with recycling it adds only small
 * structs. Returns the walk's bytes at the larger depth. */
static size_t assert_flat(size_t (*bytes)(int))
{
    enum { L1 = 8, L2 = 24 };
    size_t short_run = bytes(L1), long_run = bytes(L2);
    size_t act = 64 * 256 * sizeof(float);
    size_t per_layer = long_run > short_run ? (long_run - short_run) / (L2 - L1) : 0;
    ck_assert_msg(per_layer < act / 8,
                  "backward grows by %zu bytes per layer (%zu for L=%d, %zu for L=%d); one "
                  "activation is %zu", per_layer, short_run, L1, long_run, L2, act);
    return long_run;
}

START_TEST(test_backward_flat_in_depth)
{
    size_t used = assert_flat(net_bytes), act = 64 * 256 * sizeof(float);
    ck_assert_msg(used < 16 * act, "the walk over 24 layers took %zu bytes", used);
}
END_TEST

START_TEST(test_temporaries_given_back)
{
    assert_flat(div_chain_bytes);
}
END_TEST

/* tg_backward's .grad (recycling) against tg_grad_of (none), in f64, and a
 * second tg_backward adds exactly the same again. */
START_TEST(test_values_match_grad_of)
{
    enum { L = 11, R = 16, C = 64, NG = N_GRADS(R, C) };
    tg_ctx *c = tu_ctx();
    net m;
    ck_assert(net_init(c, TG_F64, R, C, &m));
    tg_tensor *loss = net_loss(c, &m, L);
    tu_assert_ok(c);
    tg_tensor *p[N_PARAMS], *want[N_PARAMS];
    ck_assert_int_eq(tg_grad_of(c, 1, &loss, NULL, N_PARAMS, params_of(&m, p), false, want),
                     TG_OK);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK);
    static double g1[NG], g2[NG];
    ck_assert_int_eq(read_grads(&m, g1, NG), NG);
    int64_t k = 0;
    for (int i = 0; i < N_PARAMS; i++) {
        double *w = f64s(want[i]);
        for (int64_t j = 0; j < tg_numel(want[i]); j++, k++)
            ck_assert_msg(fabs(g1[k] - w[j]) <= 1e-12 * (1.0 + fabs(w[j])),
                          "param %d element %lld: backward %.17g, grad_of %.17g", i,
                          (long long)j, g1[k], w[j]);
        free(w);
    }
    ck_assert_int_eq(tg_backward(c, loss), TG_OK);
    read_grads(&m, g2, NG);
    for (int i = 0; i < NG; i++) ck_assert_msg(g2[i] == 2 * g1[i], "element %d", i);
    tg_ctx_free(c);
}
END_TEST

/* A chain of unary ops writes each gradient over the one it reads (nothing
 * else reads it): the walk needs one activation-sized buffer, not two, and
 * the values are those of tg_grad_of, which writes nothing in place. */
START_TEST(test_unary_chain_in_place)
{
    enum { R = 64, C = 256 };
    tg_ctx *c = tu_ctx();
    tg_tensor *x = param(c, TG_F32, TG_SHAPE(R, C), 11, 2.0);
    tg_tensor *y = x;
    for (int i = 0; i < 12; i++)
        y = i % 4 == 0 ? tg_tanh(c, y) : i % 4 == 1 ? tg_sigmoid(c, y) : i % 4 == 2 ? tg_relu(c, y)
                                                                                 : tg_gelu(c, y);
    tg_tensor *loss = tg_sum(c, y);
    tu_assert_ok(c);
    tg_tensor *want;
    ck_assert_int_eq(tg_grad_of(c, 1, &loss, NULL, 1, &x, false, &want), TG_OK);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK); /* makes .grad */
    size_t before = tg_ctx_bytes_used(c), act = R * C * sizeof(float);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK);
    size_t used = tg_ctx_bytes_used(c) - before;
    ck_assert_msg(used < act + act / 2, "the walk took %zu bytes; one activation is %zu", used,
                  act);
    float *g = malloc(act), *w = malloc(act);
    ck_assert(g && w);
    ck_assert_int_eq(tg_copy_out(tg_grad(x), g, act), TG_OK);
    ck_assert_int_eq(tg_copy_out(want, w, act), TG_OK);
    for (int i = 0; i < R * C; i++) ck_assert_msg(g[i] == 2 * w[i], "element %d", i);
    free(g);
    free(w);
    tg_ctx_free(c);
}
END_TEST

/* The chain of tensors too small to give back (one to three elements): a
 * node still writes its gradient over its dout when only its own slot holds
 * that, so the walk's bytes do not grow with the number of unary and mul
 * nodes; where a dout is also held elsewhere (an add passes it to both of
 * its inputs; x * x needs two products of it) it is left alone, and the
 * values are those of tg_grad_of bit for bit. */
static tg_tensor *small_chain(tg_ctx *c, tg_tensor *x, tg_tensor *a, int L)
{
    tg_tensor *y = x;
    for (int i = 0; i < L; i++) {
        switch (i % 6) {
        case 0: y = tg_mul(c, y, a); break;     /* both inputs need a gradient */
        case 1: y = tg_tanh(c, y); break;
        case 2: y = tg_add(c, y, y); break;     /* one dout for both inputs */
        case 3: y = tg_sin(c, y); break;
        case 4: y = tg_add_scalar(c, tg_mul(c, y, y), 0.5); break; /* two products of one dout */
        default: y = tg_scale(c, tg_mul(c, a, y), 0.5); break;
        }
    }
    return tg_sum(c, y);
}

/* A chain of L tanh, sin and mul-by-a-constant nodes on three elements. */
static size_t small_unary_bytes(int L)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = param(c, TG_F64, TG_SHAPE(3), 31, 1.0);
    tg_tensor *k = tg_full(c, TG_F64, TG_SHAPE(3), 0.9);
    tg_tensor *y = x;
    for (int i = 0; i < L; i++)
        y = i % 3 == 0 ? tg_tanh(c, y) : i % 3 == 1 ? tg_sin(c, y) : tg_mul(c, y, k);
    return walk_bytes(c, tg_sum(c, y));
}

START_TEST(test_small_chain_in_place)
{
    enum { L = 60 };
    tg_ctx *c = tu_ctx();
    tg_tensor *x = param(c, TG_F64, TG_SHAPE(3), 31, 1.0);
    tg_tensor *a = param(c, TG_F64, TG_SHAPE(3), 32, 1.0);
    tg_tensor *loss = small_chain(c, x, a, L);
    tu_assert_ok(c);
    tg_tensor *in[2] = {x, a}, *want[2];
    ck_assert_int_eq(tg_grad_of(c, 1, &loss, NULL, 2, in, false, want), TG_OK);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK);
    for (int i = 0; i < 2; i++) {
        double *g = f64s(tg_grad(in[i])), *w = f64s(want[i]);
        for (int j = 0; j < 3; j++)
            ck_assert_msg(g[j] == w[j] && isfinite(w[j]) && w[j] != 0,
                          "input %d element %d: backward %.17g, grad_of %.17g", i, j, g[j], w[j]);
        free(g);
        free(w);
    }
    tg_ctx_free(c);
    /* a node that made its own gradient would add a tensor (struct, storage
     * and data: over 200 bytes) per node; in place, only the walk's own
     * tables (a few words per node) grow */
    size_t short_run = small_unary_bytes(60), long_run = small_unary_bytes(240);
    size_t per_node = long_run > short_run ? (long_run - short_run) / 180 : 0;
    ck_assert_msg(per_node < 64, "the walk grows by %zu bytes per node (%zu for 60, %zu for 240)",
                  per_node, short_run, long_run);
}
END_TEST

/* ---- a custom op whose backward keeps what it sees -------------------- */

typedef struct {
    tg_tensor *dout; /* as given to the backward */
    tg_tensor *dx;   /* as returned */
} stash;

static tg_tensor *stash_fwd(tg_ctx *c, tg_tensor *const *in, int n, void *state,
                            tg_tensor **saved)
{
    (void)n, (void)state, (void)saved;
    return tg_scale(c, in[0], 1.0);
}

static void stash_bwd(tg_ctx *c, const tg_custom_ctx *k, tg_tensor *dout, tg_tensor **dx)
{
    stash *s = k->state;
    s->dout = dout;
    s->dx = dx[0] = tg_scale(c, dout, 2.0);
}

static const tg_custom_op stash_op = {"stash", 1, stash_fwd, stash_bwd};

/* The gradients around the custom op have its dout's size, so without
 * care the walk would reuse its memory for the nodes walked after it. */
START_TEST(test_custom_keeps_dout)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = param(c, TG_F64, TG_SHAPE(32, 64), 7, 1.0);
    stash s = {NULL, NULL};
    tg_tensor *h = x;
    for (int i = 0; i < 4; i++) h = tg_tanh(c, h);
    tg_tensor *mid = tg_custom(c, &stash_op, &h, 1, &s);
    tg_tensor *y = mid;
    for (int i = 0; i < 4; i++) y = tg_tanh(c, tg_add(c, y, h));
    tg_tensor *loss = tg_sum(c, tg_mul(c, y, y));
    tu_assert_ok(c);
    tg_tensor *want;
    ck_assert_int_eq(tg_grad_of(c, 1, &loss, NULL, 1, &mid, false, &want), TG_OK);
    ck_assert_int_eq(tg_backward(c, loss), TG_OK);
    ck_assert(s.dout && s.dx);
    double *w = f64s(want), *d = f64s(s.dout), *dx = f64s(s.dx);
    for (int64_t j = 0; j < tg_numel(want); j++) {
        ck_assert_msg(d[j] == w[j], "dout element %lld: %.17g, want %.17g", (long long)j, d[j],
                      w[j]);
        ck_assert_msg(dx[j] == 2 * w[j], "dx element %lld", (long long)j);
    }
    free(w);
    free(d);
    free(dx);
    tg_ctx_free(c);
}
END_TEST

/* Backwards whose arena runs out at every point of the walk, with tensors
 * large enough to be recycled: after the forward, fillers eat the arena's
 * free space (one more each round) and every later allocation of the hook
 * fails. A failed backward leaves every .grad as it was, a successful one
 * doubles it, and nothing leaks. The rounds stop once the fillers
 * themselves need a new block. */
START_TEST(test_fail_inside_walk)
{
    enum { L = 5, R = 8, C = 64, NG = N_GRADS(R, C) };
    tg_ctx *p = tu_ctx();
    net m;
    ck_assert(net_init(p, TG_F64, R, C, &m));
    {
        tg_ctx *s = tu_ctx();
        ck_assert_int_eq(tg_backward(s, net_loss(s, &m, L)), TG_OK);
        tg_ctx_free(s);
    }
    static double g1[NG], now[NG];
    read_grads(&m, g1, NG);
    tg_tensor *pp[N_PARAMS];
    params_of(&m, pp);
    int failed = 0, round;
    for (round = 0; round < 100000; round++) {
        tu_alloc h = {0};
        tg_ctx *s = tu_alloc_ctx(&h, 512);
        ck_assert_ptr_nonnull(s);
        tg_tensor *loss = net_loss(s, &m, L);
        tu_assert_ok(s);
        long after_forward = h.allocs;
        for (int i = 0; i < round; i++) ck_assert_ptr_nonnull(tg_tensor_new(s, TG_F64, TG_SHAPE(128)));
        bool fillers_grew = h.allocs != after_forward;
        h.fail_at = h.allocs + 1;
        h.fail_rest = true;
        tg_status rc = tg_backward(s, loss);
        read_grads(&m, now, NG);
        if (rc == TG_OK) {
            for (int i = 0; i < NG; i++)
                ck_assert_msg(now[i] == 2 * g1[i], "round %d: element %d", round, i);
            for (int i = 0; i < N_PARAMS; i++) tg_zero_grad(pp[i]);
            tg_ctx *s1 = tu_ctx();
            ck_assert_int_eq(tg_backward(s1, net_loss(s1, &m, L)), TG_OK);
            tg_ctx_free(s1);
        } else {
            tu_assert_status(rc, TG_ERR_NOMEM);
            ck_assert_msg(memcmp(now, g1, sizeof now) == 0,
                          "round %d: a failed backward changed a gradient", round);
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
END_TEST

Suite *recycle_suite(void)
{
    Suite *s = suite_create("recycle");
    TCase *tc = tu_tcase("recycle");
    tcase_add_test(tc, test_backward_flat_in_depth);
    tcase_add_test(tc, test_temporaries_given_back);
    tcase_add_test(tc, test_values_match_grad_of);
    tcase_add_test(tc, test_unary_chain_in_place);
    tcase_add_test(tc, test_small_chain_in_place);
    tcase_add_test(tc, test_custom_keeps_dout);
    tcase_add_test(tc, test_fail_inside_walk);
    suite_add_tcase(s, tc);
    return s;
}
