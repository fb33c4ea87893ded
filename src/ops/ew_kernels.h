/*
 * ew_kernels.h - elementwise kernel macros and the forward drivers shared by
 * the elementwise ops (src/ops/elementwise.c, math.c, activation.c; the
 * drivers live in math.c). Library-internal.
 *
 * A kernel runs over one strided run (see iter.h): p[0] is the contiguous
 * output, p[1..] the inputs with byte strides s[1..] (0 for a broadcast
 * operand). Scalar arguments reach a kernel through aux, a const double[4]
 * (P0, P1 inside the expression). Every output element depends only on its
 * own input elements, so results are bit-identical whatever the split over
 * threads.
 */
#ifndef TG_OPS_EW_KERNELS_H
#define TG_OPS_EW_KERNELS_H

#include "ops_impl.h"

#include <math.h>

/* relu's rule, for tg_relu and tg_conv2d_relu alike: positive values and
 * NaN pass, everything else (-0 too) becomes +0 */
#define TG__RELU(T, X) (((X) > 0 || (X) != (X)) ? (X) : (T)0)

/* o = EXPR(A, B, P0, P1) over a run; fast paths for contiguous and scalar
 * operands. */
#define EW_BIN_KERNEL(NAME, T, EXPR)                                   \
    static void NAME(int64_t n, char **p, const int64_t *s, void *aux) \
    {                                                                  \
        const double *P_ = aux;                                        \
        const T P0 = P_ ? (T)P_[0] : (T)0, P1 = P_ ? (T)P_[1] : (T)0;  \
        (void)P0;                                                      \
        (void)P1;                                                      \
        T *o = (T *)p[0];                                              \
        const int64_t es = (int64_t)sizeof(T);                         \
        if (s[1] == es && s[2] == es) {                                \
            const T *x = (const T *)p[1], *y = (const T *)p[2];        \
            for (int64_t i = 0; i < n; i++) {                          \
                T A = x[i], B = y[i];                                  \
                o[i] = (EXPR);                                         \
            }                                                          \
        } else if (s[1] == es && s[2] == 0) {                          \
            const T *x = (const T *)p[1];                              \
            const T B = *(const T *)p[2];                              \
            for (int64_t i = 0; i < n; i++) {                          \
                T A = x[i];                                            \
                o[i] = (EXPR);                                         \
            }                                                          \
        } else if (s[1] == 0 && s[2] == es) {                          \
            const T A = *(const T *)p[1];                              \
            const T *y = (const T *)p[2];                              \
            for (int64_t i = 0; i < n; i++) {                          \
                T B = y[i];                                            \
                o[i] = (EXPR);                                         \
            }                                                          \
        } else {                                                       \
            for (int64_t i = 0; i < n; i++) {                          \
                T A = *(const T *)(p[1] + i * s[1]);                   \
                T B = *(const T *)(p[2] + i * s[2]);                   \
                o[i] = (EXPR);                                         \
            }                                                          \
        }                                                              \
    }

/* o = EXPR(X, P0, P1) over a run. */
#define EW_UN_KERNEL(NAME, T, EXPR)                                    \
    static void NAME(int64_t n, char **p, const int64_t *s, void *aux) \
    {                                                                  \
        const double *P_ = aux;                                        \
        const T P0 = P_ ? (T)P_[0] : (T)0, P1 = P_ ? (T)P_[1] : (T)0;  \
        (void)P0;                                                      \
        (void)P1;                                                      \
        T *o = (T *)p[0];                                              \
        if (s[1] == (int64_t)sizeof(T)) {                              \
            const T *x = (const T *)p[1];                              \
            for (int64_t i = 0; i < n; i++) {                          \
                T X = x[i];                                            \
                o[i] = (EXPR);                                         \
            }                                                          \
        } else {                                                       \
            for (int64_t i = 0; i < n; i++) {                          \
                T X = *(const T *)(p[1] + i * s[1]);                   \
                o[i] = (EXPR);                                         \
            }                                                          \
        }                                                              \
    }

/* f32 and f64 kernels of one op: NAME_f32 and NAME_f64. The f32 expression
 * calls the float functions of <math.h> (expf, erff, ...). */
#define EW_BIN_PAIR(name, EXPR_F, EXPR_D)    \
    EW_BIN_KERNEL(name##_f32, float, EXPR_F) \
    EW_BIN_KERNEL(name##_f64, double, EXPR_D)
#define EW_UN_PAIR(name, EXPR_F, EXPR_D)    \
    EW_UN_KERNEL(name##_f32, float, EXPR_F) \
    EW_UN_KERNEL(name##_f64, double, EXPR_D)

typedef struct {
    tg__ew_kernel f32, f64;
} tg__kpair;

#define EW_KP(name) ((tg__kpair){name##_f32, name##_f64})

/* ---- drivers (src/ops/math.c) ------------------------------------------ */

/*
 * y = k(x; p[0], p[1]) for a float x, recorded as op with n->f[0..3] =
 * p[0..3] (p may be NULL: all zero). Errors name fn.
 */
tg_tensor *tg__ew_unary(tg_ctx *c, const char *fn, tg_op op, tg__kpair k, tg_tensor *x,
                        const double *p);

/*
 * y = k(a, b; p) over the broadcast shape of a and b (same float dtype),
 * recorded as op with n->f = p. TG_ERR_SHAPE naming both shapes when they
 * do not broadcast.
 */
tg_tensor *tg__ew_binary(tg_ctx *c, const char *fn, tg_op op, tg__kpair k, tg_tensor *a,
                         tg_tensor *b, const double *p);

/*
 * Constants for backward rules: k applied to x (unary) or to a and b
 * (broadcast shape), never recorded, so their derivative is zero, as masks
 * and subgradient weights need (docs/DECISIONS.md). fn names the op whose
 * backward asks, for out-of-memory messages.
 */
tg_tensor *tg__ew_const1(tg_ctx *c, const char *fn, tg__kpair k, tg_tensor *x, const double *p);
tg_tensor *tg__ew_const2(tg_ctx *c, const char *fn, tg__kpair k, tg_tensor *a, tg_tensor *b,
                         const double *p);

/* The constant 0/1 mask [x > 0] of x's shape and dtype (relu's and elu's
 * backward rules). */
tg_tensor *tg__positive_mask(tg_ctx *c, const char *fn, tg_tensor *x);

/* where(mask, dout, 0): dout where the 0/1 mask is nonzero, exact zeros
 * elsewhere (even where dout is inf or NaN), differentiable in dout. */
tg_tensor *tg__ew_masked(tg_ctx *c, tg_tensor *mask, tg_tensor *dout);

/* A backward rule with no graph to record (grad mode off, anomaly mode off,
 * which checks every op of a composite rule): the rule's ops fused into one
 * kernel k over (a, b) that does the same floating-point operations in the
 * same order, so the gradient has the composite's bits at a fraction of its
 * per-op cost. With create_graph the composite runs, so the gradient stays
 * differentiable. a is the backward's dout and FUSED its last read of it:
 * the result may be written over dout when the backward driver says that
 * nothing else reads it (tg__ew_grad). */
#define NO_GRAPH(c) (!(c)->grad_enabled && !(c)->anomaly)
#define FUSED(c, fn, k, a, b) tg__ew_grad(c, fn, EW_KP(k), a, b)

/* True when the driver offers dout to be written over (c->spare_dout: only
 * the running node's backward reads it) and it is contiguous; the offer is
 * then used up. The caller writes a result of dout's shape and dtype into
 * it, reading each element before writing it. */
static inline bool tg__take_spare(tg_ctx *c, const tg_tensor *dout)
{
    if (dout != c->spare_dout || !tg__contig(dout)) return false;
    c->spare_dout = NULL;
    return true;
}

/* tg__ew_const2(c, fn, k, dout, b, NULL), written into dout itself when
 * dout is c->spare_dout (the driver's offer: only this node's backward reads
 * it), contiguous and of b's shape and dtype; the offer is then used up. */
tg_tensor *tg__ew_grad(tg_ctx *c, const char *fn, tg__kpair k, tg_tensor *dout, tg_tensor *b);

#endif /* TG_OPS_EW_KERNELS_H */
