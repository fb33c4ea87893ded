/*
 * contract_app.c - a user program written only against the core API
 * contract of DESIGN.md section 8 (plus tg_ctx_bytes_reserved), to prove
 * that an installed tapegrad works:
 *
 *     cc contract_app.c $(pkg-config --cflags --libs tapegrad)
 *
 * ./dev.sh install-check builds it that way against a temporary install,
 * shared and static; meson also builds it in-tree as the contract_app test
 * (so it runs under ASan and valgrind too). It checks:
 *   1. the seed example of issue 2 in TG_F64, value and gradients to 1e-12,
 *      and that a second backward accumulates into .grad;
 *   2. broadcast gradients of add, summed back to each input's shape;
 *   3. cross-entropy, value and gradient, and its stability at logits 1e4;
 *   4. clear, sticky errors ("tg_matmul: [3,4] @ [5,6]: ...");
 *   5. 10,000 training-step cycles (reset + forward + backward) on a step
 *      context, with parameters in a persistent one, without growth.
 * Prints every failed check and exits non-zero if there was one.
 *
 * Deliberately uses no <math.h>: the pkg-config line above is the whole
 * link line, and a user program should not need -lm to use tapegrad.
 * Expected values are written out, with the formula they come from.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

static int n_checks, n_failed;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        n_checks++;                                                                       \
        if (!(cond)) {                                                                    \
            n_failed++;                                                                   \
            fprintf(stderr, "contract_app: FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

/* A fatal check: the rest of the program depends on it. */
#define REQUIRE(cond, ...)                                      \
    do {                                                        \
        CHECK(cond, __VA_ARGS__);                               \
        if (!(cond)) {                                          \
            fprintf(stderr, "contract_app: cannot continue\n"); \
            exit(EXIT_FAILURE);                                 \
        }                                                       \
    } while (0)

static double absd(double x) { return x < 0 ? -x : x; }

/* |a - b| <= tol, false for NaN. */
static bool close_to(double a, double b, double tol) { return absd(a - b) <= tol; }

static bool is_finite(double x) { return x == x && x - x == 0.0; }

/* Copies the n elements of an F64 tensor out; false (after a failed check)
 * when t is NULL or has another dtype or size. */
static bool read_f64(const tg_tensor *t, double *out, int64_t n, const char *what)
{
    CHECK(t != NULL, "%s is NULL", what);
    if (t == NULL) return false;
    CHECK(tg_tensor_dtype(t) == TG_F64, "%s has dtype %d, not TG_F64", what,
          (int)tg_tensor_dtype(t));
    CHECK(tg_numel(t) == n, "%s has %lld elements, expected %lld", what, (long long)tg_numel(t),
          (long long)n);
    if (tg_tensor_dtype(t) != TG_F64 || tg_numel(t) != n) return false;
    tg_status s = tg_copy_out(t, out, (size_t)n * sizeof(double));
    CHECK(s == TG_OK, "tg_copy_out(%s): %s", what, tg_status_str(s));
    return s == TG_OK;
}

/* Checks the n elements of t against want to tol. */
static void check_values(const tg_tensor *t, const double *want, int64_t n, double tol,
                         const char *what)
{
    double got[16];
    if (n > 16 || !read_f64(t, got, n, what)) return;
    for (int64_t i = 0; i < n; i++) {
        CHECK(close_to(got[i], want[i], tol), "%s[%lld] = %.17g, expected %.17g (tol %g)", what,
              (long long)i, got[i], want[i], tol);
    }
}

static void check_shape(const tg_tensor *t, int ndim, const int64_t *shape, const char *what)
{
    CHECK(t != NULL && tg_ndim(t) == ndim, "%s has ndim %d, expected %d", what, t ? tg_ndim(t) : -1,
          ndim);
    if (t == NULL || tg_ndim(t) != ndim) return;
    for (int i = 0; i < ndim; i++) {
        CHECK(tg_shape(t)[i] == shape[i], "%s: dim %d is %lld, expected %lld", what, i,
              (long long)tg_shape(t)[i], (long long)shape[i]);
    }
}

static tg_tensor *f64(tg_ctx *c, int ndim, const int64_t *shape, const double *data)
{
    return tg_tensor_from(c, TG_F64, ndim, shape, data);
}

static tg_tensor *param(tg_ctx *c, int ndim, const int64_t *shape, const double *data)
{
    tg_tensor *p = f64(c, ndim, shape, data);
    if (p != NULL) tg_set_requires_grad(p, true);
    return p;
}

/* ====================================================================== */
/* 1. The seed example                                                    */
/* ====================================================================== */

/* The parameters, in a persistent context. */
typedef struct {
    tg_tensor *w1, *b1, *w2, *b2;
} seed_params;

static seed_params seed_params_new(tg_ctx *P)
{
    seed_params p;
    p.w1 = param(P, TG_SHAPE(2, 1), (const double[]){0.1, 0.2});
    p.b1 = param(P, TG_SHAPE(1, 1), (const double[]){0.4});
    p.w2 = param(P, TG_SHAPE(1, 1), (const double[]){0.3});
    p.b2 = param(P, TG_SHAPE(1, 1), (const double[]){0.5});
    return p;
}

/* One forward pass in the step context S:
 *   y1 = tanh(x @ w1 + b1), y2 = tanh(y1 @ w2 + b2), L = 0.5 * (y2 - t)^2
 * with x = [0.5, 0.3] as [1,2] and t = 1. Returns L ([1,1]) or NULL; one
 * check at the end is enough, errors are sticky. y2_out may be NULL. */
static tg_tensor *seed_forward(tg_ctx *S, const seed_params *p, tg_tensor **y2_out)
{
    tg_tensor *x = f64(S, TG_SHAPE(1, 2), (const double[]){0.5, 0.3});
    tg_tensor *t = f64(S, TG_SHAPE(1, 1), (const double[]){1.0});
    tg_tensor *half = f64(S, TG_SHAPE(1, 1), (const double[]){0.5});

    tg_tensor *y1 = tg_tanh(S, tg_add(S, tg_matmul(S, x, p->w1), p->b1));
    tg_tensor *y2 = tg_tanh(S, tg_add(S, tg_matmul(S, y1, p->w2), p->b2));
    tg_tensor *d = tg_sub(S, y2, t);
    tg_tensor *L = tg_mul(S, half, tg_mul(S, d, d));
    if (y2_out != NULL) *y2_out = y2;
    return L;
}

/* Values from issue 2, item 10 (z1 = 0.51; the y1 = 0.69, L = 0.0041 of a
 * widely copied write-up are arithmetic slips). */
static const double SEED_Y2 = 0.5655688752169572;
static const double SEED_L = 0.09436520109012986;
static const double SEED_DW1[2] = {-0.03453243632739421, -0.020719461796436526};
static const double SEED_DB1 = -0.06906487265478842;
static const double SEED_DW2 = -0.13885491633092126;
static const double SEED_DB2 = -0.29547044346059315;

static void check_seed_grads(const seed_params *p, double scale)
{
    const double dw1[2] = {scale * SEED_DW1[0], scale * SEED_DW1[1]};
    const double db1 = scale * SEED_DB1, dw2 = scale * SEED_DW2, db2 = scale * SEED_DB2;
    check_values(tg_grad(p->w1), dw1, 2, 1e-12, "dL/dw1");
    check_values(tg_grad(p->b1), &db1, 1, 1e-12, "dL/db1");
    check_values(tg_grad(p->w2), &dw2, 1, 1e-12, "dL/dw2");
    check_values(tg_grad(p->b2), &db2, 1, 1e-12, "dL/db2");
    check_shape(tg_grad(p->w1), TG_SHAPE(2, 1), "dL/dw1");
}

static void test_seed(void)
{
    tg_ctx *P = tg_ctx_new(), *S = tg_ctx_new();
    REQUIRE(P != NULL && S != NULL, "tg_ctx_new() returned NULL");
    seed_params p = seed_params_new(P);
    REQUIRE(tg_ctx_status(P) == TG_OK, "parameters: %s", tg_ctx_errmsg(P));

    tg_tensor *y2 = NULL;
    tg_tensor *L = seed_forward(S, &p, &y2);
    CHECK(L != NULL, "seed forward failed: %s", tg_ctx_errmsg(S));
    if (L != NULL) {
        CHECK(tg_numel(L) == 1, "L has %lld elements", (long long)tg_numel(L));
        CHECK(close_to(tg_item(y2), SEED_Y2, 1e-12), "y2 = %.17g, expected %.17g", tg_item(y2),
              SEED_Y2);
        CHECK(close_to(tg_item(L), SEED_L, 1e-12), "L = %.17g, expected %.17g", tg_item(L), SEED_L);
        CHECK(tg_grad(p.w1) == NULL, "w1 has a gradient before any backward");
        tg_status s = tg_backward(S, L);
        CHECK(s == TG_OK, "tg_backward: %s: %s", tg_status_str(s), tg_ctx_errmsg(S));
        check_seed_grads(&p, 1.0);
    }

    /* Gradients live in the parameters' context and survive a step reset;
     * a second backward accumulates into them. */
    tg_ctx_reset(S);
    check_seed_grads(&p, 1.0);
    L = seed_forward(S, &p, NULL);
    tg_status s = tg_backward(S, L);
    CHECK(s == TG_OK, "second tg_backward: %s: %s", tg_status_str(s), tg_ctx_errmsg(S));
    check_seed_grads(&p, 2.0);
    tg_zero_grad(p.w1);
    check_values(tg_grad(p.w1), (const double[]){0.0, 0.0}, 2, 0.0, "dL/dw1 after tg_zero_grad");

    tg_ctx_free(S);
    tg_ctx_free(P);
}

/* ====================================================================== */
/* 2. Broadcast gradients                                                 */
/* ====================================================================== */

/* L = sum((a + b + c) * w) with a [2,3], b [3], c [2,1] and a constant
 * w [2,3] = [[1,-2,3],[-4,5,-6]]:
 *   dL/da = w, dL/db = sum of w over rows = [-3,3,-3],
 *   dL/dc = sum of w over columns = [[2],[-5]],
 *   L = 111 - 244 + 399 - 856 + 1125 - 1416 = -881. */
static void test_broadcast(void)
{
    tg_ctx *c = tg_ctx_new();
    REQUIRE(c != NULL, "tg_ctx_new() returned NULL");
    tg_tensor *a = param(c, TG_SHAPE(2, 3), (const double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *b = param(c, TG_SHAPE(3), (const double[]){10, 20, 30});
    tg_tensor *cc = param(c, TG_SHAPE(2, 1), (const double[]){100, 200});
    tg_tensor *w = f64(c, TG_SHAPE(2, 3), (const double[]){1, -2, 3, -4, 5, -6});

    tg_tensor *abc = tg_add(c, tg_add(c, a, b), cc);
    tg_tensor *L = tg_sum(c, tg_mul(c, abc, w));
    CHECK(L != NULL, "broadcast forward failed: %s", tg_ctx_errmsg(c));
    if (L != NULL) {
        check_shape(abc, TG_SHAPE(2, 3), "a + b + c");
        CHECK(tg_ndim(L) == 0, "tg_sum gave ndim %d, expected a 0-d scalar", tg_ndim(L));
        CHECK(tg_item(L) == -881.0, "L = %.17g, expected -881", tg_item(L));
        tg_status s = tg_backward(c, L);
        CHECK(s == TG_OK, "tg_backward: %s: %s", tg_status_str(s), tg_ctx_errmsg(c));
        check_values(tg_grad(a), (const double[]){1, -2, 3, -4, 5, -6}, 6, 0.0, "dL/da");
        check_values(tg_grad(b), (const double[]){-3, 3, -3}, 3, 0.0, "dL/db");
        check_values(tg_grad(cc), (const double[]){2, -5}, 2, 0.0, "dL/dc");
        check_shape(tg_grad(b), TG_SHAPE(3), "dL/db");
        check_shape(tg_grad(cc), TG_SHAPE(2, 1), "dL/dc");
    }
    tg_ctx_free(c);
}

/* ====================================================================== */
/* 3. Cross-entropy                                                       */
/* ====================================================================== */

/* logits [[1,2,3],[1,1,1]], labels [2,0]:
 *   row 0: -log softmax_2 = log(1 + e^-1 + e^-2) = 0.4076059644443804
 *   row 1: -log softmax_0 = log 3               = 1.0986122886681098
 *   L = mean of the two = 0.7531091265562453
 *   dL/dlogits = (softmax(logits) - onehot(labels)) / 2:
 *   row 0: softmax([1,2,3]) = [0.09003057317038046, 0.24472847105479764,
 *          0.6652409557748218]; row 1: [1/3, 1/3, 1/3]. */
static void test_cross_entropy(void)
{
    tg_ctx *c = tg_ctx_new();
    REQUIRE(c != NULL, "tg_ctx_new() returned NULL");
    tg_tensor *logits = param(c, TG_SHAPE(2, 3), (const double[]){1, 2, 3, 1, 1, 1});
    tg_tensor *labels = tg_tensor_from(c, TG_I64, TG_SHAPE(2), (const int64_t[]){2, 0});
    tg_tensor *L = tg_cross_entropy(c, logits, labels);
    CHECK(L != NULL, "tg_cross_entropy failed: %s", tg_ctx_errmsg(c));
    if (L != NULL) {
        CHECK(tg_ndim(L) == 0, "tg_cross_entropy gave ndim %d, expected 0", tg_ndim(L));
        CHECK(close_to(tg_item(L), 0.7531091265562453, 1e-12), "L = %.17g", tg_item(L));
        tg_status s = tg_backward(c, L);
        CHECK(s == TG_OK, "tg_backward: %s: %s", tg_status_str(s), tg_ctx_errmsg(c));
        const double want[6] = {
            0.09003057317038046 / 2, 0.24472847105479764 / 2, (0.6652409557748218 - 1) / 2,
            (1.0 / 3 - 1) / 2,       (1.0 / 3) / 2,           (1.0 / 3) / 2,
        };
        check_values(tg_grad(logits), want, 6, 1e-12, "dL/dlogits");
    }

    /* Stable at logits of 1e4, in both floating dtypes: row 0 is right
     * with certainty (loss 0), row 1 is wrong by 2e4 (loss 2e4), so
     * L = 1e4 and dL/dlogits = [[0,0,0],[0,1,-1]] / 2. */
    for (int k = 0; k < 2; k++) {
        tg_dtype dt = k == 0 ? TG_F64 : TG_F32;
        const double vd[6] = {1e4, 0, -1e4, 0, 1e4, -1e4};
        const float vf[6] = {1e4f, 0, -1e4f, 0, 1e4f, -1e4f};
        tg_tensor *big =
            tg_tensor_from(c, dt, TG_SHAPE(2, 3), k == 0 ? (const void *)vd : (const void *)vf);
        tg_set_requires_grad(big, true);
        tg_tensor *lab = tg_tensor_from(c, TG_I64, TG_SHAPE(2), (const int64_t[]){0, 2});
        tg_tensor *Lb = tg_cross_entropy(c, big, lab);
        CHECK(Lb != NULL, "tg_cross_entropy at 1e4 (%s) failed: %s", k ? "f32" : "f64",
              tg_ctx_errmsg(c));
        if (Lb == NULL) break;
        CHECK(is_finite(tg_item(Lb)) && close_to(tg_item(Lb), 1e4, 1e-3),
              "cross-entropy at logits 1e4 (%s) = %.17g, expected 1e4", k ? "f32" : "f64",
              tg_item(Lb));
        tg_status s = tg_backward(c, Lb);
        CHECK(s == TG_OK, "tg_backward at 1e4: %s: %s", tg_status_str(s), tg_ctx_errmsg(c));
        tg_tensor *g = tg_grad(big);
        CHECK(g != NULL && tg_numel(g) == 6, "no gradient at logits 1e4");
        if (g == NULL || tg_numel(g) != 6) break;
        double gv[6];
        if (dt == TG_F64) {
            CHECK(tg_copy_out(g, gv, sizeof gv) == TG_OK, "tg_copy_out");
        } else {
            float gf[6] = {0};
            CHECK(tg_copy_out(g, gf, sizeof gf) == TG_OK, "tg_copy_out");
            for (int i = 0; i < 6; i++) gv[i] = gf[i];
        }
        const double want[6] = {0, 0, 0, 0, 0.5, -0.5};
        for (int i = 0; i < 6; i++) {
            CHECK(is_finite(gv[i]) && close_to(gv[i], want[i], 1e-6),
                  "dL/dlogits at 1e4 (%s)[%d] = %.17g, expected %g", k ? "f32" : "f64", i, gv[i],
                  want[i]);
        }
    }
    tg_ctx_free(c);
}

/* ====================================================================== */
/* 4. Errors                                                              */
/* ====================================================================== */

static void test_errors(void)
{
    tg_ctx *c = tg_ctx_new();
    REQUIRE(c != NULL, "tg_ctx_new() returned NULL");
    CHECK(tg_ctx_status(c) == TG_OK, "a new context has status %d", (int)tg_ctx_status(c));
    CHECK(tg_status_str(TG_OK) != NULL, "tg_status_str(TG_OK) is NULL");

    tg_tensor *a = tg_tensor_new(c, TG_F64, TG_SHAPE(3, 4));
    tg_tensor *b = tg_tensor_new(c, TG_F64, TG_SHAPE(5, 6));
    REQUIRE(a != NULL && b != NULL, "tg_tensor_new: %s", tg_ctx_errmsg(c));

    tg_tensor *m = tg_matmul(c, a, b);
    tg_status s = tg_ctx_status(c);
    const char *msg = tg_ctx_errmsg(c);
    CHECK(m == NULL, "tg_matmul([3,4], [5,6]) did not return NULL");
    CHECK(s != TG_OK, "tg_matmul([3,4], [5,6]) left status TG_OK");
    CHECK(tg_status_str(s) != NULL && tg_status_str(s)[0] != '\0', "tg_status_str(%d) is empty",
          (int)s);
    CHECK(msg != NULL && strstr(msg, "tg_matmul") != NULL, "message '%s' lacks 'tg_matmul'",
          msg ? msg : "(null)");
    CHECK(msg != NULL && strstr(msg, "[3,4]") != NULL && strstr(msg, "[5,6]") != NULL,
          "message '%s' lacks the shapes [3,4] and [5,6]", msg ? msg : "(null)");

    /* Sticky: NULL in, NULL out, the first error kept. */
    char first[512];
    snprintf(first, sizeof first, "%s", msg ? msg : "");
    tg_tensor *y = tg_tanh(c, tg_add(c, m, a));
    CHECK(y == NULL, "an op on a NULL input did not return NULL");
    CHECK(tg_ctx_status(c) == s, "the first error was not kept");
    CHECK(strcmp(tg_ctx_errmsg(c), first) == 0, "the first message was replaced by '%s'",
          tg_ctx_errmsg(c));
    tg_ctx_clear_error(c);
    CHECK(tg_ctx_status(c) == TG_OK, "tg_ctx_clear_error left status %d", (int)tg_ctx_status(c));

    /* Shapes that do not broadcast. */
    tg_tensor *u = tg_tensor_new(c, TG_F64, TG_SHAPE(2, 3));
    tg_tensor *v = tg_tensor_new(c, TG_F64, TG_SHAPE(4));
    CHECK(tg_add(c, u, v) == NULL && tg_ctx_status(c) != TG_OK, "[2,3] + [4] did not fail");
    CHECK(strstr(tg_ctx_errmsg(c), "tg_add") != NULL, "message '%s' lacks 'tg_add'",
          tg_ctx_errmsg(c));
    tg_ctx_clear_error(c);

    /* A loss with more than one element. */
    tg_set_requires_grad(u, true);
    tg_tensor *notscalar = tg_tanh(c, u);
    CHECK(notscalar != NULL, "tg_tanh: %s", tg_ctx_errmsg(c));
    s = tg_backward(c, notscalar);
    CHECK(s != TG_OK, "tg_backward on a [2,3] loss returned TG_OK");
    CHECK(tg_ctx_errmsg(c)[0] != '\0', "tg_backward on a [2,3] loss left no message");
    CHECK(tg_grad(u) == NULL, "a failed tg_backward wrote a gradient");

    tg_ctx_free(c);
    tg_ctx_free(NULL); /* a no-op */
}

/* ====================================================================== */
/* 5. 10,000 reset cycles                                                 */
/* ====================================================================== */

static void test_reset_cycles(void)
{
    enum { CYCLES = 10000, WARMUP = 10 };
    tg_ctx *P = tg_ctx_new(), *S = tg_ctx_new();
    REQUIRE(P != NULL && S != NULL, "tg_ctx_new() returned NULL");
    seed_params p = seed_params_new(P);
    REQUIRE(tg_ctx_status(P) == TG_OK, "parameters: %s", tg_ctx_errmsg(P));
    tg_tensor *params[4] = {p.w1, p.b1, p.w2, p.b2};

    double first_L = 0, first_g[5] = {0};
    size_t s_reserved = 0, p_reserved = 0;
    int bad = 0;
    for (int i = 0; i < CYCLES && bad == 0; i++) {
        tg_ctx_reset(S);
        for (int k = 0; k < 4; k++) {
            if (tg_grad(params[k]) != NULL) tg_zero_grad(params[k]);
        }
        tg_tensor *L = seed_forward(S, &p, NULL);
        tg_status s = L != NULL ? tg_backward(S, L) : tg_ctx_status(S);
        if (s != TG_OK) {
            CHECK(s == TG_OK, "cycle %d: %s: %s", i, tg_status_str(s), tg_ctx_errmsg(S));
            bad++;
            break;
        }
        /* The same step must give bit-identical results every time. */
        double g[5] = {0};
        int off = 0;
        for (int k = 0; k < 4; k++) {
            tg_tensor *gk = tg_grad(params[k]);
            int64_t nk = k == 0 ? 2 : 1;
            if (gk == NULL || tg_numel(gk) != nk ||
                tg_copy_out(gk, g + off, (size_t)nk * sizeof(double)) != TG_OK) {
                g[off] = -1.0; /* differs from every real gradient here */
            }
            off += (int)nk;
        }
        if (i == 0) {
            first_L = tg_item(L);
            memcpy(first_g, g, sizeof g);
            CHECK(close_to(first_L, SEED_L, 1e-12), "cycle 0: L = %.17g", first_L);
        } else if (tg_item(L) != first_L || memcmp(g, first_g, sizeof g) != 0) {
            CHECK(false, "cycle %d: L = %.17g, dw1[0] = %.17g differ from cycle 0's %.17g, %.17g",
                  i, tg_item(L), g[0], first_L, first_g[0]);
            bad++;
        }
        if (i == WARMUP - 1) {
            s_reserved = tg_ctx_bytes_reserved(S);
            p_reserved = tg_ctx_bytes_reserved(P);
        } else if (i >= WARMUP) {
            size_t sr = tg_ctx_bytes_reserved(S), pr = tg_ctx_bytes_reserved(P);
            if (sr > s_reserved || pr > p_reserved) {
                CHECK(sr <= s_reserved, "cycle %d: step context holds %zu bytes, %zu at cycle %d",
                      i, sr, s_reserved, WARMUP);
                CHECK(pr <= p_reserved,
                      "cycle %d: parameter context holds %zu bytes, %zu at cycle %d", i, pr,
                      p_reserved, WARMUP);
                bad++;
            }
        }
    }
    CHECK(s_reserved > 0, "the step context reserved no memory");
    tg_ctx_free(S);
    tg_ctx_free(P);
}

int main(void)
{
    test_seed();
    test_broadcast();
    test_cross_entropy();
    test_errors();
    test_reset_cycles();
    if (n_failed != 0) {
        fprintf(stderr, "contract_app: %d of %d checks FAILED\n", n_failed, n_checks);
        return EXIT_FAILURE;
    }
    printf("contract_app: all %d checks passed\n", n_checks);
    return EXIT_SUCCESS;
}
