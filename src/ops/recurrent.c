/*
 * recurrent.c - the LSTM cell (one step, fused) and the LSTM layer (a
 * whole sequence, one op), each forward beside its backward.
 *
 * Both keep PyTorch's gate order i, f, g, o and formulas:
 *   c' = sigmoid(f) c + sigmoid(i) tanh(g),  h' = sigmoid(o) tanh(c').
 * f32 goes through the vectorisable fastmath.h functions (with AVX2 and
 * AVX-512 copies of the loops), f64 through libm. When the gradient is
 * itself recorded, both backwards are built from ops, so second order
 * works.
 *
 * Node arguments: LSTM_CELL: nothing saved (the backward recomputes the
 * activations from the gates, an input). LSTM: iv[0] = the flags as
 * recorded (TG_LSTM_RECOMPUTE also when the gates were not kept),
 * saved[0] = the gates' activations (B, T, 4H) unless TG_LSTM_RECOMPUTE,
 * saved[1] = the cell states (B, T, H) unless TG_LSTM_CELLS (then y[1]
 * holds them).
 */
#include "../core/arena_mark.h"
#include "fastmath.h"
#include "ops_impl.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#define NEED(i) (n->in[i] && n->in[i]->requires_grad)

/* ====================================================================== */
/* lstm_cell                                                              */
/* ====================================================================== */

/* The activations i, f, g, o of gate row gr into ar[0, 4H), each gate a
 * loop of its own (so each vectorises). */
#define LSTM_ACT(T, SIG, TANH)                                                          \
    for (int64_t j = 0; j < 2 * H; j++) ar[j] = SIG(gr[j]);                             \
    for (int64_t j = 2 * H; j < 3 * H; j++) ar[j] = TANH(gr[j]);                        \
    for (int64_t j = 3 * H; j < 4 * H; j++) ar[j] = SIG(gr[j]);

/* The fused cell over B rows: gates (B, 4H) i, f, g, o and cell (B, H) to
 * y = (h', c') (2, B, H). A row's activations and tanh(c') go to ar, one
 * row of scratch (5H): backward recomputes them from the gates, so a step
 * keeps only its gates and y. f32 uses the vectorisable fastmath.h
 * functions (and AVX2/AVX-512 copies), f64 libm. */
#define LSTM_FWD(T, SIG, TANH)                                                          \
    for (int64_t b = 0; b < B; b++) {                                                   \
        const T *restrict gr = (const T *)pg + b * 4 * H;                               \
        const T *restrict cr = (const T *)pc + b * H;                                   \
        T *restrict ar = (T *)pa;                                                       \
        T *restrict hr = (T *)py + b * H, *restrict nr = (T *)py + (B + b) * H;         \
        LSTM_ACT(T, SIG, TANH)                                                          \
        for (int64_t j = 0; j < H; j++) nr[j] = ar[H + j] * cr[j] + ar[j] * ar[2 * H + j]; \
        for (int64_t j = 0; j < H; j++) {                                               \
            ar[4 * H + j] = TANH(nr[j]);                                                \
            hr[j] = ar[3 * H + j] * ar[4 * H + j];                                      \
        }                                                                               \
    }

static inline double sigmoid_d(double x)
{
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

TG__VEC_CLONES static void lstm_fwd_f32(int64_t B, int64_t H, const char *pg, const char *pc,
                                        char *py, char *pa)
{
    LSTM_FWD(float, tg__sigmoidf, tg__tanhf)
}

static void lstm_fwd_f64(int64_t B, int64_t H, const char *pg, const char *pc, char *py, char *pa)
{
    LSTM_FWD(double, sigmoid_d, tanh)
}

/* gates is (B, 4H) in PyTorch's order i, f, g, o; cell is (B, H); y is (2, B, H) */
/* y[0] = h' = o tanh(c'), y[1] = c' = f cell + i g, i f o sigmoids, g tanh */
tg_tensor *tg_lstm_cell(tg_ctx *c, tg_tensor *gates, tg_tensor *cell)
{
    const char *fn = "tg_lstm_cell";
    tg_tensor *in[2] = {gates, cell};
    if (!tg__check_inputs(c, fn, 2, in) || !tg__check_same_dtype(c, fn, gates, cell))
        return NULL;
    if (gates->ndim != 2 || cell->ndim != 2 || gates->shape[0] != cell->shape[0] ||
        gates->shape[1] != 4 * cell->shape[1]) {
        char a[128], b[128];
        tg__fail(c, TG_ERR_SHAPE, "%s: gates %s, cell %s: need gates [B, 4H] and cell [B, H]",
                 fn, tg__fmt_shape(a, sizeof a, gates->ndim, gates->shape),
                 tg__fmt_shape(b, sizeof b, cell->ndim, cell->shape));
        return NULL;
    }
    int64_t B = cell->shape[0], H = cell->shape[1];
    tg_tensor *y = tg__empty(c, fn, cell->dtype, 3, (const int64_t[]){2, B, H});
    if (!y) return NULL;
    tg__arena_pos m = tg__arena_mark(c); /* dense copies of strided inputs are scratch */
    tg_tensor *gd = tg__dense(c, fn, gates), *cd = tg__dense(c, fn, cell);
    char *pa = tg__arena_alloc(c, (size_t)(5 * H) * tg__esize(cell->dtype));
    if (!tg__ok(c)) return NULL;
    if (cell->dtype == TG_F32) lstm_fwd_f32(B, H, tg__ptr(gd), tg__ptr(cd), tg__ptr(y), pa);
    else lstm_fwd_f64(B, H, tg__ptr(gd), tg__ptr(cd), tg__ptr(y), pa);
    tg__arena_rewind(c, m);
    tg__node *n;
    if (tg__record(c, TG_OP_LSTM_CELL, y, 2, in, &n)) return NULL;
    return y;
}

/* The cell's chain rule with ops (differentiable again), from its gates G
 * (B, 4H), previous cell cp (B, H) and the gradients dh, dc of h' and c':
 * *dG (when dG) and *dcp (when dcp). */
static void cell_backward_ops(tg_ctx *c, tg_tensor *G, tg_tensor *cp, tg_tensor *dh,
                              tg_tensor *dc, tg_tensor **dG, tg_tensor **dcp)
{
    int64_t H = cp->shape[1];
    tg_tensor *i = tg_sigmoid(c, tg_slice(c, G, 1, 0, H, 1));
    tg_tensor *f = tg_sigmoid(c, tg_slice(c, G, 1, H, 2 * H, 1));
    tg_tensor *g = tg_tanh(c, tg_slice(c, G, 1, 2 * H, 3 * H, 1));
    tg_tensor *o = tg_sigmoid(c, tg_slice(c, G, 1, 3 * H, 4 * H, 1));
    tg_tensor *tc = tg_tanh(c, tg_add(c, tg_mul(c, f, cp), tg_mul(c, i, g)));
    /* 1 - t^2 and s (1 - s), the derivatives of tanh and sigmoid */
#define DTANH(t) tg_add_scalar(c, tg_neg(c, tg_square(c, t)), 1.0)
#define DSIG(s) tg_mul(c, s, tg_add_scalar(c, tg_neg(c, s), 1.0))
    tg_tensor *dct = tg_mul(c, tg_mul(c, dh, o), DTANH(tc));
    if (dc) dct = tg_add(c, dc, dct);
    if (dG) {
        tg_tensor *parts[4] = {tg_mul(c, tg_mul(c, dct, g), DSIG(i)),
                               tg_mul(c, tg_mul(c, dct, cp), DSIG(f)),
                               tg_mul(c, tg_mul(c, dct, i), DTANH(g)),
                               tg_mul(c, tg_mul(c, dh, tc), DSIG(o))};
        *dG = tg_concat(c, parts, 4, 1);
    }
#undef DTANH
#undef DSIG
    if (dcp) *dcp = tg_mul(c, dct, f);
}

/* The backward with ops: the cell rebuilt from the inputs, then the chain
 * rule of the forward's formula. */
static void lstm_cell_backward_ops(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *dh = tg_squeeze(c, tg_slice(c, dout, 0, 0, 1, 1), 0);
    tg_tensor *dc = tg_squeeze(c, tg_slice(c, dout, 0, 1, 2, 1), 0);
    cell_backward_ops(c, n->in[0], n->in[1], dh, dc, NEED(0) ? &dx[0] : NULL,
                      NEED(1) ? &dx[1] : NULL);
}

/* One row's d gates and d cell from its activations ar (i, f, g, o,
 * tanh(c')) and cell row cr; d c' = dc + dh o tanh'(c') in both. Functions
 * with restrict parameters, so the loops vectorise. */
#define LSTM_DROWS(T, SFX)                                                              \
    static inline void lstm_dgates_##SFX(int64_t H, const T *restrict ar,               \
                                         const T *restrict cr, const T *restrict dh,    \
                                         const T *restrict dc, T *restrict di,          \
                                         T *restrict df, T *restrict dgg, T *restrict dov) \
    {                                                                                   \
        for (int64_t j = 0; j < H; j++) {                                               \
            T i = ar[j], f = ar[H + j], g = ar[2 * H + j], o = ar[3 * H + j];           \
            T tc = ar[4 * H + j];                                                       \
            T dct = dc[j] + dh[j] * o * (1 - tc * tc);                                  \
            di[j] = dct * g * i * (1 - i);                                              \
            df[j] = dct * cr[j] * f * (1 - f);                                          \
            dgg[j] = dct * i * (1 - g * g);                                             \
            dov[j] = dh[j] * tc * o * (1 - o);                                          \
        }                                                                               \
    }                                                                                   \
    static inline void lstm_dcell_##SFX(int64_t H, const T *restrict ar,                \
                                        const T *restrict dh, const T *restrict dc,     \
                                        T *restrict dcp)                                \
    {                                                                                   \
        for (int64_t j = 0; j < H; j++) {                                               \
            T o = ar[3 * H + j], tc = ar[4 * H + j];                                    \
            dcp[j] = (dc[j] + dh[j] * o * (1 - tc * tc)) * ar[H + j];                   \
        }                                                                               \
    }
LSTM_DROWS(float, f32)
LSTM_DROWS(double, f64)

/* Backward over B rows: a row's activations recomputed into ar as forward
 * made them (the same bits), tanh(c') from y's c'. */
#define LSTM_BWD(T, SIG, TANH, SFX)                                                     \
    for (int64_t b = 0; b < B; b++) {                                                   \
        const T *restrict gr = (const T *)pg + b * 4 * H;                               \
        const T *restrict cr = (const T *)pc + b * H;                                   \
        const T *restrict nr = (const T *)py + (B + b) * H;                             \
        const T *dh = (const T *)pd + b * H, *dc = (const T *)pd + (B + b) * H;         \
        T *restrict ar = (T *)pa;                                                       \
        LSTM_ACT(T, SIG, TANH)                                                          \
        for (int64_t j = 0; j < H; j++) ar[4 * H + j] = TANH(nr[j]);                    \
        if (pdg) {                                                                      \
            T *dg = (T *)pdg + b * 4 * H;                                               \
            lstm_dgates_##SFX(H, ar, cr, dh, dc, dg, dg + H, dg + 2 * H, dg + 3 * H);   \
        }                                                                               \
        if (pdc) lstm_dcell_##SFX(H, ar, dh, dc, (T *)pdc + b * H);                     \
    }

TG__VEC_CLONES static void lstm_bwd_f32(int64_t B, int64_t H, const char *pg, const char *pc,
                                        const char *py, const char *pd, char *pdg, char *pdc,
                                        char *pa)
{
    LSTM_BWD(float, tg__sigmoidf, tg__tanhf, f32)
}

static void lstm_bwd_f64(int64_t B, int64_t H, const char *pg, const char *pc, const char *py,
                         const char *pd, char *pdg, char *pdc, char *pa)
{
    LSTM_BWD(double, sigmoid_d, tanh, f64)
}

/* dout is (2, B, H): d gates (B, 4H) and d cell (B, H) in one pass over the
 * saved activations */
void tg__lstm_cell_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (c->grad_enabled) {
        lstm_cell_backward_ops(c, n, dout, dx);
        return;
    }
    const char *fn = "tg_lstm_cell";
    tg_tensor *cp = n->in[1];
    int64_t B = cp->shape[0], H = cp->shape[1];
    tg_tensor *dg = NEED(0) ? tg__empty(c, fn, cp->dtype, 2, (const int64_t[]){B, 4 * H}) : NULL;
    tg_tensor *dc = NEED(1) ? tg__empty(c, fn, cp->dtype, 2, (const int64_t[]){B, H}) : NULL;
    if (!tg__ok(c)) return;
    tg__arena_pos m = tg__arena_mark(c); /* dense copies of strided tensors are scratch */
    tg_tensor *gd = tg__dense(c, fn, n->in[0]), *cd = tg__dense(c, fn, cp),
              *dd = tg__dense(c, fn, dout);
    char *pa = tg__arena_alloc(c, (size_t)(5 * H) * tg__esize(cp->dtype));
    if (!tg__ok(c)) return;
    const char *pg = tg__ptr(gd), *pc = tg__ptr(cd), *py = tg__ptr(n->out), *pd = tg__ptr(dd);
    char *pdg = dg ? tg__ptr(dg) : NULL, *pdc = dc ? tg__ptr(dc) : NULL;
    if (cp->dtype == TG_F32) lstm_bwd_f32(B, H, pg, pc, py, pd, pdg, pdc, pa);
    else lstm_bwd_f64(B, H, pg, pc, py, pd, pdg, pdc, pa);
    tg__arena_rewind(c, m);
    dx[0] = dg;
    dx[1] = dc;
}

/* ====================================================================== */
/* lstm: a whole layer over a sequence                                     */
/* ====================================================================== */

/* The layer's sizes and its inputs' data, dense. Row (b, t) of the
 * sequences is b T + t. */
typedef struct {
    tg_ctx *c;
    bool f64;
    int64_t B, T, I, H;
    const char *x, *wih, *whh, *bih, *bhh, *h0, *c0; /* NULL when absent */
    char *G;                                         /* (B, T, 4H) */
    const char *yh, *yc;                             /* h and c: (B, T, H) each */
    const char *zero;                                /* H zeros */
    size_t es;
} lstm_run;

/* r for the inputs in (dense copies of strided ones, and H zeros, in c's
 * arena), gates G, hidden states y (B, T, H) and cell states cs (B, T, H)
 * (views into one (2, B, T, H) y with TG_LSTM_CELLS). False on error (on
 * c). */
static bool lstm_setup(lstm_run *r, tg_ctx *c, const char *fn, tg_tensor *const *in,
                       tg_tensor *G, const char *y, const char *cs)
{
    tg_tensor *d[7];
    for (int k = 0; k < 7; k++) d[k] = tg__dense(c, fn, in[k]);
    tg_dtype dt = in[0]->dtype;
    size_t es = tg__esize(dt);
    int64_t B = in[0]->shape[0], T = in[0]->shape[1], H = in[2]->shape[1];
    char *zero = tg__arena_calloc(c, (size_t)H, es);
    if (!tg__ok(c) || !G || !cs) return false;
    const char *p[7];
    for (int k = 0; k < 7; k++) p[k] = d[k] ? tg__ptr(d[k]) : NULL;
    *r = (lstm_run){c, dt == TG_F64, B, T, in[0]->shape[2], H, p[0], p[1], p[2], p[3], p[4],
                    p[5], p[6], tg__ptr(G), y, cs, zero, es};
    return true;
}

/* Row b of the state before step t: h_{t-1} / c_{t-1}, h0 / c0 at t = 0
 * (zeros when absent). */
static const char *prev_row(const lstm_run *r, const char *seq, const char *s0, int64_t b,
                            int64_t t)
{
    if (t > 0) return seq + ((b * r->T + t - 1) * r->H) * (int64_t)r->es;
    return s0 ? s0 + (b * r->H) * (int64_t)r->es : r->zero;
}

/* The gates of every step before the recurrence: G = x W_ih^T + b_ih +
 * b_hh, one GEMM over the B T rows onto rows pre-filled with the biases. */
static void lstm_input_gates(const lstm_run *r)
{
    int64_t R = r->B * r->T, G4 = 4 * r->H;
    double beta = r->bih || r->bhh ? 1.0 : 0.0;
    if (beta != 0.0) {
        if (r->f64) {
            double *row = (double *)(void *)r->G;
            const double *a = (const double *)(const void *)r->bih;
            const double *b = (const double *)(const void *)r->bhh;
            for (int64_t j = 0; j < G4; j++) row[j] = (a ? a[j] : 0.0) + (b ? b[j] : 0.0);
        } else {
            float *row = (float *)(void *)r->G;
            const float *a = (const float *)(const void *)r->bih;
            const float *b = (const float *)(const void *)r->bhh;
            for (int64_t j = 0; j < G4; j++) row[j] = (a ? a[j] : 0.0f) + (b ? b[j] : 0.0f);
        }
        tg__repeat_row(r->G, (size_t)G4 * r->es, R);
    }
    tg__gemm(r->c, r->f64, false, true, R, G4, r->I, 1.0, r->x, r->I, r->wih, r->I, beta, r->G,
             G4);
}

/* Step t's gates += h_{t-1} W_hh^T (nothing at t = 0 without h0). */
static void lstm_hidden_gates(const lstm_run *r, int64_t t)
{
    int64_t G4 = 4 * r->H;
    const char *h;
    int64_t ldh;
    if (t > 0) {
        h = r->yh + ((t - 1) * r->H) * (int64_t)r->es;
        ldh = r->T * r->H;
    } else if (r->h0) {
        h = r->h0;
        ldh = r->H;
    } else {
        return;
    }
    tg__gemm(r->c, r->f64, false, true, r->B, G4, r->H, 1.0, h, ldh, r->whh, r->H, 1.0,
             r->G + (t * G4) * (int64_t)r->es, r->T * G4);
}

/* Step t's cell over the B rows: the gates' activations in place, then
 * c_t and h_t into y (h only when yh is writable: the backward's
 * recompute has them already). */
#define LSTM_STEP(T_, SIG, TANH)                                                        \
    for (int64_t b = 0; b < B; b++) {                                                   \
        T_ *restrict ar = (T_ *)(void *)G + (b * T + t) * 4 * H;                        \
        const T_ *restrict cp = (const T_ *)(const void *)cprev[b];                     \
        T_ *restrict cr = (T_ *)(void *)yc + (b * T + t) * H;                           \
        for (int64_t j = 0; j < 2 * H; j++) ar[j] = SIG(ar[j]);                         \
        for (int64_t j = 2 * H; j < 3 * H; j++) ar[j] = TANH(ar[j]);                    \
        for (int64_t j = 3 * H; j < 4 * H; j++) ar[j] = SIG(ar[j]);                     \
        if (!yh) continue;                                                              \
        T_ *restrict hr = (T_ *)(void *)yh + (b * T + t) * H;                           \
        for (int64_t j = 0; j < H; j++) cr[j] = ar[H + j] * cp[j] + ar[j] * ar[2 * H + j]; \
        for (int64_t j = 0; j < H; j++) hr[j] = ar[3 * H + j] * TANH(cr[j]);            \
    }

TG__VEC_CLONES static void lstm_step_f32(int64_t B, int64_t T, int64_t H, int64_t t, char *G,
                                         const char *const *cprev, char *yc, char *yh)
{
    LSTM_STEP(float, tg__sigmoidf, tg__tanhf)
}

static void lstm_step_f64(int64_t B, int64_t T, int64_t H, int64_t t, char *G,
                          const char *const *cprev, char *yc, char *yh)
{
    LSTM_STEP(double, sigmoid_d, tanh)
}

/* The forward's recurrence: G holds the input gates (lstm_input_gates) and
 * ends holding every step's activations; y gets h and c when write_y
 * (else y holds them already and only the activations are remade). cprev
 * is B pointers of scratch. */
static void lstm_recur(const lstm_run *r, const char **cprev, bool write_y)
{
    for (int64_t t = 0; t < r->T; t++) {
        lstm_hidden_gates(r, t);
        for (int64_t b = 0; b < r->B; b++) cprev[b] = prev_row(r, r->yc, r->c0, b, t);
        char *yc = (char *)r->yc, *yh = write_y ? (char *)r->yh : NULL;
        if (r->f64) lstm_step_f64(r->B, r->T, r->H, t, r->G, cprev, yc, yh);
        else lstm_step_f32(r->B, r->T, r->H, t, r->G, cprev, yc, yh);
    }
}

static bool lstm_shape_ok(tg_ctx *c, const char *fn, tg_tensor *const *in)
{
    const tg_tensor *x = in[0], *wih = in[1], *whh = in[2];
    bool ok = x->ndim == 3 && wih->ndim == 2 && whh->ndim == 2 && whh->shape[1] >= 1 &&
              whh->shape[0] == 4 * whh->shape[1] && wih->shape[0] == whh->shape[0] &&
              wih->shape[1] == x->shape[2] && x->shape[0] >= 1 && x->shape[1] >= 1 &&
              x->shape[2] >= 1;
    for (int k = 3; k < 5 && ok; k++)
        ok = !in[k] || (in[k]->ndim == 1 && in[k]->shape[0] == whh->shape[0]);
    for (int k = 5; k < 7 && ok; k++)
        ok = !in[k] || (in[k]->ndim == 2 && in[k]->shape[0] == x->shape[0] &&
                        in[k]->shape[1] == whh->shape[1]);
    if (ok) return true;
    static const char *const names[7] = {"x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0"};
    char msg[512];
    int len = 0;
    for (int k = 0; k < 7 && len < (int)sizeof msg; k++) {
        char s[96] = "none";
        if (in[k]) tg__fmt_shape(s, sizeof s, in[k]->ndim, in[k]->shape);
        len += snprintf(msg + len, sizeof msg - (size_t)len, "%s%s %s", k ? ", " : "", names[k],
                        s);
    }
    tg__fail(c, TG_ERR_SHAPE,
             "%s: %s: need x [B, T, I], w_ih [4H, I], w_hh [4H, H], b_ih and b_hh [4H], h0 "
             "and c0 [B, H], every size at least 1",
             fn, msg);
    return false;
}

/* x is (B, T, I); w_ih (4H, I); w_hh (4H, H); b_ih, b_hh (4H) or NULL; h0,
 * c0 (B, H) or NULL (zeros); y is (B, T, H) h_1..h_T, or with
 * TG_LSTM_CELLS (2, B, T, H): y[0] h_1..h_T, y[1] c_1..c_T. */
tg_tensor *tg_lstm(tg_ctx *c, tg_tensor *x, tg_tensor *w_ih, tg_tensor *w_hh, tg_tensor *b_ih,
                   tg_tensor *b_hh, tg_tensor *h0, tg_tensor *c0, unsigned flags)
{
    const char *fn = "tg_lstm";
    tg_tensor *in[7] = {x, w_ih, w_hh, b_ih, b_hh, h0, c0};
    if (!tg__check_inputs(c, fn, 3, in)) return NULL;
    for (int k = 3; k < 7; k++)
        if (in[k] && !tg__check_inputs(c, fn, 1, &in[k])) return NULL;
    if (!tg__check_float(c, fn, x)) return NULL;
    for (int k = 1; k < 7; k++)
        if (in[k] && !tg__check_same_dtype(c, fn, x, in[k])) return NULL;
    if (flags & ~(unsigned)(TG_LSTM_CELLS | TG_LSTM_RECOMPUTE)) {
        tg__fail(c, TG_ERR_INVALID, "%s: unknown flags 0x%x", fn, flags);
        return NULL;
    }
    if (!lstm_shape_ok(c, fn, in)) return NULL;
    int64_t B = x->shape[0], T = x->shape[1], I = x->shape[2], H = w_hh->shape[1];
    if (B * T > INT_MAX || 4 * H > INT_MAX || I > INT_MAX) {
        tg__fail(c, TG_ERR_INVALID, "%s: matrix dims exceed the int range of BLAS", fn);
        return NULL;
    }
    tg_dtype dt = x->dtype;
    bool cells = flags & TG_LSTM_CELLS, rec = tg__wants_grad(c, 7, in);
    bool keep = rec && !(flags & TG_LSTM_RECOMPUTE);
    const int64_t ys[4] = {2, B, T, H}, bth[3] = {B, T, H}, gs[3] = {B, T, 4 * H};
    tg_tensor *y = cells ? tg__empty(c, fn, dt, 4, ys) : tg__empty(c, fn, dt, 3, bth);
    /* the cell states, when y has none: the node keeps them */
    tg_tensor *cs = rec && !cells ? tg__empty(c, fn, dt, 3, bth) : NULL;
    tg_tensor *G = keep ? tg__empty(c, fn, dt, 3, gs) : NULL;
    if (!tg__ok(c)) return NULL;
    tg__arena_pos m = tg__arena_mark(c); /* dense copies, and what is not kept, are scratch */
    if (!G) G = tg__empty(c, fn, dt, 3, gs);
    if (!cs && !cells) cs = tg__empty(c, fn, dt, 3, bth);
    lstm_run r;
    const char **cprev = tg__arena_alloc(c, (size_t)B * sizeof *cprev);
    if (!tg__ok(c)) return NULL;
    const char *pc = cells ? tg__ptr(y) + (B * T * H) * (int64_t)tg__esize(dt) : tg__ptr(cs);
    if (!lstm_setup(&r, c, fn, in, G, tg__ptr(y), pc) || !cprev) return NULL;
    lstm_input_gates(&r);
    lstm_recur(&r, cprev, true);
    tg__arena_rewind(c, m);
    tg__node *n;
    if (tg__record(c, TG_OP_LSTM, y, 7, in, &n)) return NULL;
    if (n) {
        n->iv[0] = flags | (keep ? 0u : TG_LSTM_RECOMPUTE);
        n->n_iv = 1;
        if (keep) tg__save_own(n, 0, G);
        if (!cells) tg__save_own(n, 1, cs);
    }
    return y;
}

/* The backward with ops: the layer rebuilt step by step from its inputs
 * with linear, linear_add and lstm_cell, then the chain rule through time
 * (cell_backward_ops per step, the weights' gradients as sums over the
 * steps' products). */
static void lstm_backward_ops(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *x = n->in[0], *wih = n->in[1], *whh = n->in[2];
    int64_t B = x->shape[0], T = x->shape[1], I = x->shape[2], H = whh->shape[1];
    bool cells = (unsigned)n->iv[0] & TG_LSTM_CELLS;
    tg_tensor **G = tg__arena_alloc(c, (size_t)(4 * T) * sizeof *G);
    if (!G) return;
    tg_tensor **hp = G + T, **cp = G + 2 * T, **dG = G + 3 * T;
    tg_tensor *P = tg_linear(c, x, wih, n->in[3]); /* (B, T, 4H) */
    tg_tensor *h = n->in[5] ? n->in[5] : tg_tensor_new(c, x->dtype, TG_SHAPE(B, H));
    tg_tensor *cc = n->in[6] ? n->in[6] : tg_tensor_new(c, x->dtype, TG_SHAPE(B, H));
    for (int64_t t = 0; t < T && tg__ok(c); t++) {
        hp[t] = h;
        cp[t] = cc;
        G[t] = tg_linear_add(c, h, whh, n->in[4], tg_squeeze(c, tg_slice(c, P, 1, t, t + 1, 1), 1));
        tg_tensor *hc = tg_lstm_cell(c, G[t], cc);
        h = tg_squeeze(c, tg_slice(c, hc, 0, 0, 1, 1), 0);
        cc = tg_squeeze(c, tg_slice(c, hc, 0, 1, 2, 1), 0);
    }
    tg_tensor *dh_next = NULL, *dc_next = NULL;
    for (int64_t t = T - 1; t >= 0 && tg__ok(c); t--) {
        /* dout[:, t] (h only) or dout[k][:, t] */
        tg_tensor *dh, *dc = NULL;
        if (cells) {
            tg_tensor *step = tg_squeeze(c, tg_slice(c, dout, 2, t, t + 1, 1), 2); /* (2, B, H) */
            dh = tg_squeeze(c, tg_slice(c, step, 0, 0, 1, 1), 0);
            dc = tg_squeeze(c, tg_slice(c, step, 0, 1, 2, 1), 0);
        } else {
            dh = tg_squeeze(c, tg_slice(c, dout, 1, t, t + 1, 1), 1);
        }
        if (dh_next) dh = tg_add(c, dh, dh_next);
        if (dc_next) dc = dc ? tg_add(c, dc, dc_next) : dc_next;
        cell_backward_ops(c, G[t], cp[t], dh, dc, &dG[t], &dc_next);
        dh_next = tg_matmul(c, dG[t], whh);
    }
    if (!tg__ok(c)) return;
    tg_tensor *dGs = tg_reshape(c, tg_stack(c, dG, (int)T, 1), TG_SHAPE(B * T, 4 * H));
    tg_tensor *dGt = tg_transpose(c, dGs, 0, 1);
    if (NEED(0)) dx[0] = tg_reshape(c, tg_matmul(c, dGs, wih), TG_SHAPE(B, T, I));
    if (NEED(1)) dx[1] = tg_matmul(c, dGt, tg_reshape(c, x, TG_SHAPE(B * T, I)));
    if (NEED(2))
        dx[2] = tg_matmul(c, dGt, tg_reshape(c, tg_stack(c, hp, (int)T, 1), TG_SHAPE(B * T, H)));
    if (NEED(3) || NEED(4)) {
        tg_tensor *db = tg_sum_axes(c, dGs, 1, (const int[]){0}, false);
        if (NEED(3)) dx[3] = db;
        if (NEED(4)) dx[4] = db;
    }
    if (NEED(5)) dx[5] = dh_next;
    if (NEED(6)) dx[6] = dc_next;
}

/* One sequence's row of LSTM_BACK: the four gate rows (i, f, g, o) as restrict
 * parameters of their own, which lets GCC vectorise the loop; with the
 * rows as offsets of one pointer it did not (the float kernel ran scalar,
 * 15% of the LSTM benchmark's step at one thread). */
#define LSTM_BACK_ROW(T_, TANH, SFX)                                                   \
    static inline void lstm_back_row_##SFX(                                            \
        int64_t H, T_ *restrict ai, T_ *restrict af, T_ *restrict ag, T_ *restrict ao, \
        const T_ *restrict ct, const T_ *restrict cp, const T_ *restrict dho,          \
        const T_ *restrict dco, const T_ *restrict dhn, T_ *restrict dcn)              \
    {                                                                                  \
        for (int64_t j = 0; j < H; j++) {                                              \
            T_ i = ai[j], f = af[j], g = ag[j], o = ao[j];                             \
            T_ tc = TANH(ct[j]);                                                       \
            T_ dh = dho[j] + dhn[j];                                                   \
            T_ dct = dco[j] + dcn[j] + dh * o * (1 - tc * tc);                         \
            ai[j] = dct * g * i * (1 - i);                                             \
            af[j] = dct * cp[j] * f * (1 - f);                                         \
            ag[j] = dct * i * (1 - g * g);                                             \
            ao[j] = dh * tc * o * (1 - o);                                             \
            dcn[j] = dct * f;                                                          \
        }                                                                              \
    }

LSTM_BACK_ROW(float, tg__tanhf, f32)
LSTM_BACK_ROW(double, tanh, f64)

/* Step t backward over the B rows, in place: G's activations of step t
 * become the gates' gradients; dcn holds d c_t from step t + 1 (zeros at
 * the last step) and becomes d c_{t-1}; dhn is d h_t from step t + 1. dy
 * is y's gradient for h, dyc for c (sc = 1), or H zeros (sc = 0). */
#define LSTM_BACK(T_, SFX)                                                              \
    for (int64_t b = 0; b < B; b++) {                                                   \
        T_ *a = (T_ *)(void *)G + (b * T + t) * 4 * H;                                  \
        lstm_back_row_##SFX(H, a, a + H, a + 2 * H, a + 3 * H,                          \
                            (const T_ *)(const void *)yc + (b * T + t) * H,             \
                            (const T_ *)(const void *)cprev[b],                         \
                            (const T_ *)(const void *)dy + (b * T + t) * H,             \
                            (const T_ *)(const void *)dyc + (b * T + t) * H * sc,       \
                            (const T_ *)(const void *)dh_next + b * H,                  \
                            (T_ *)(void *)dc_next + b * H);                             \
    }

TG__VEC_CLONES static void lstm_back_f32(int64_t B, int64_t T, int64_t H, int64_t t, char *G,
                                         const char *yc, const char *const *cprev,
                                         const char *dy, const char *dyc, int64_t sc,
                                         const char *dh_next, char *dc_next)
{
    LSTM_BACK(float, f32)
}

static void lstm_back_f64(int64_t B, int64_t T, int64_t H, int64_t t, char *G, const char *yc,
                          const char *const *cprev, const char *dy, const char *dyc, int64_t sc,
                          const char *dh_next, char *dc_next)
{
    LSTM_BACK(double, f64)
}

/* dout is y's shape: (B, T, H), or (2, B, T, H) with TG_LSTM_CELLS. The
 * gates' activations (kept, or recomputed with the forward's own calls, so
 * the same bits) turn into their gradients step by step backwards in time,
 * each step's d h_{t-1} one GEMM with W_hh; then dx and dW_ih are one GEMM
 * each over all B T rows, dW_hh one per sequence, the biases' gradient
 * dG's column sums (linear's). */
void tg__lstm_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (c->grad_enabled) {
        lstm_backward_ops(c, n, dout, dx);
        return;
    }
    const char *fn = "tg_lstm";
    tg_tensor *x = n->in[0];
    tg_dtype dt = x->dtype;
    int64_t B = x->shape[0], T = x->shape[1], I = x->shape[2], H = n->in[2]->shape[1];
    int64_t G4 = 4 * H, R = B * T;
    for (int k = 0; k < 7; k++)
        if (NEED(k)) dx[k] = tg__empty(c, fn, dt, n->in[k]->ndim, n->in[k]->shape);
    if (!tg__ok(c)) return;
    tg__arena_pos m = tg__arena_mark(c); /* everything below is scratch */
    size_t es = tg__esize(dt);
    tg_tensor *dd = tg__dense(c, fn, dout);
    /* the kept gates become their gradients in place when the walk gives
     * them back after this node anyway; else a scratch copy does */
    unsigned flags = (unsigned)n->iv[0];
    bool cells = flags & TG_LSTM_CELLS, kept = !(flags & TG_LSTM_RECOMPUTE);
    bool inplace = kept && tg__saved_dies(c, n->saved[0]);
    tg_tensor *Gt = inplace ? n->saved[0] : tg__empty(c, fn, dt, 3, (const int64_t[]){B, T, G4});
    const char **cprev = tg__arena_alloc(c, (size_t)B * sizeof *cprev);
    char *dh_next = tg__arena_calloc(c, (size_t)(B * H), es);
    char *dc_next = tg__arena_calloc(c, (size_t)(B * H), es);
    lstm_run r;
    const char *py = tg__ptr(n->out);
    const char *pc = cells ? py + (R * H) * (int64_t)es : tg__ptr(n->saved[1]);
    if (!tg__ok(c) || !lstm_setup(&r, c, fn, n->in, Gt, py, pc)) return;
    if (kept && !inplace) {
        memcpy(r.G, tg__ptr(n->saved[0]), (size_t)(R * G4) * es);
    } else if (!kept) {
        lstm_input_gates(&r);
        lstm_recur(&r, cprev, false);
    }
    const char *dy = tg__ptr(dd), *dyc = cells ? dy + (R * H) * (int64_t)es : r.zero;
    int64_t sc = cells;
    for (int64_t t = T - 1; t >= 0; t--) {
        for (int64_t b = 0; b < B; b++) cprev[b] = prev_row(&r, r.yc, r.c0, b, t);
        if (r.f64) lstm_back_f64(B, T, H, t, r.G, r.yc, cprev, dy, dyc, sc, dh_next, dc_next);
        else lstm_back_f32(B, T, H, t, r.G, r.yc, cprev, dy, dyc, sc, dh_next, dc_next);
        if (t > 0 || NEED(5)) /* d h_{t-1} = dG_t W_hh */
            tg__gemm(c, r.f64, false, false, B, H, G4, 1.0, r.G + (t * G4) * (int64_t)es,
                     T * G4, r.whh, H, 0.0, dh_next, H);
    }
    if (NEED(5)) memcpy(tg__ptr(dx[5]), dh_next, (size_t)(B * H) * es);
    if (NEED(6)) memcpy(tg__ptr(dx[6]), dc_next, (size_t)(B * H) * es);
    if (NEED(0)) /* dx = dG W_ih */
        tg__gemm(c, r.f64, false, false, R, I, G4, 1.0, r.G, G4, r.wih, I, 0.0, tg__ptr(dx[0]),
                 I);
    if (NEED(1)) /* dW_ih = dG^T x */
        tg__gemm(c, r.f64, true, false, G4, I, R, 1.0, r.G, G4, r.x, I, 0.0, tg__ptr(dx[1]), I);
    if (NEED(2)) {
        /* dW_hh = sum over steps of dG_t^T h_{t-1}: per sequence b, its
         * steps 1..T-1 against h_0..h_{T-2}; then step 0 against h0 */
        char *dw = tg__ptr(dx[2]);
        size_t grow = (size_t)G4 * es, hrow = (size_t)H * es;
        if (T == 1 && !r.h0) memset(dw, 0, (size_t)(G4 * H) * es);
        for (int64_t b = 0; b < B && T > 1; b++)
            tg__gemm(c, r.f64, true, false, G4, H, T - 1, 1.0, r.G + (size_t)(b * T + 1) * grow,
                     G4, r.yh + (size_t)(b * T) * hrow, H, b ? 1.0 : 0.0, dw, H);
        if (r.h0)
            tg__gemm(c, r.f64, true, false, G4, H, B, 1.0, r.G, T * G4, r.h0, H,
                     T > 1 ? 1.0 : 0.0, dw, H);
    }
    if (NEED(3) || NEED(4)) {
        tg_tensor *db = NEED(3) ? dx[3] : dx[4];
        const tg__defer sums = {tg__colsum_run, r.f64, false, false, 1, G4, R, G4, 1, r.G, NULL};
        tg__colsum_run(c, &sums, db, false);
        if (NEED(3) && NEED(4)) memcpy(tg__ptr(dx[4]), tg__ptr(dx[3]), (size_t)G4 * es);
    }
    tg__arena_rewind(c, m);
}
