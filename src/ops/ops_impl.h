/*
 * ops_impl.h - what op families share: the registry entry, the backward
 * signature and input checks. Library-internal.
 */
#ifndef TG_OPS_IMPL_H
#define TG_OPS_IMPL_H

#include "../autograd/tape.h"
#include "../tensor/iter.h"
#include "tapegrad/autograd.h"
#include "tapegrad/ops.h"

#include <string.h>

/*
 * Backward of one node: given dout (the gradient of the node's output, in
 * the output's shape), sets dx[i] for every input i that requires grad, and
 * leaves the others NULL. Written with tapegrad's own ops, in c, so that
 * with grad mode on (create_graph) the gradient is itself recorded. dx[i]
 * may have a broadcast shape: the engine sums it back to the input's shape.
 * Errors are recorded on c (the engine checks after every node).
 */
typedef void (*tg__backward_fn)(tg_ctx *c, const tg__node *n, tg_tensor *dout,
                                tg_tensor **dx);

typedef struct {
    const char *name;
    int arity;
    unsigned flags;
    tg__backward_fn backward;
} tg__opdef;

#define TG__OP_DECL(E, name, arity, flags)                                     \
    void tg__##name##_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout,  \
                               tg_tensor **dx);
TG_OP_MAP(TG__OP_DECL)
#undef TG__OP_DECL

extern const tg__opdef tg__ops[TG_OP_COUNT];

/* Whether f32 2x2 max pooling and its backward may run their AVX-512
 * kernels where the CPU has AVX-512 (pool.c; true, false where they are not
 * built). Tests turn it off to check the portable kernels on such a CPU
 * too. */
extern bool tg__maxp22_wide;

/*
 * The data an op's backward reads when tg_backward runs it (no graph; the
 * accumulating or no-graph backward where the op has one), for
 * tg_backward_release: TG__READS, plus TG__IN(j) for each input j whose
 * elements it reads, plus TG__OUT when it reads its output's. Reading only
 * a tensor's shape or dtype does not count. An op without an entry (0) is
 * taken to read all its inputs and its output. Saved tensors always count
 * as read. A wrong entry makes a backward read released memory: the
 * release tests of test_opgrad.c compare every op's gradients with and
 * without release, with every storage releasable and released memory
 * filled with NaNs (tg__release_poison).
 */
#define TG__READS (1u << 31)
#define TG__OUT (1u << 30)
#define TG__IN(j) (1u << (j))
extern const uint32_t tg__ops_reads[TG_OP_COUNT];

/*
 * The inputs (TG__IN(j)) whose memory an op's backward without a graph
 * can take for that input's gradient, reading each element of the input
 * before it writes the gradient's there. A releasing walk
 * (tg_backward_release) offers an input when no other node reads its
 * storage and it is a contiguous activation the walk would release right
 * after the node (see tg__take_input); the gradient then costs no memory of
 * its own, as the input's dies. Checked like tg__ops_reads, by the release
 * tests of test_opgrad.c (poisoned memory, gradients compared with a plain
 * walk's).
 */
extern const uint32_t tg__ops_overwrites[TG_OP_COUNT];

/*
 * In a no-graph backward: a contiguous tensor of x's shape and dtype on
 * x's memory when the walk offers x (tg__ops_overwrites), for the
 * backward to write x's gradient into, reading x's elements first; NULL
 * otherwise (the backward allocates as usual). The offer is used up. x's
 * storage is released from then on (tg_is_released), and the result's is
 * the walk's, given back when its gradient dies.
 */
tg_tensor *tg__take_input(tg_ctx *c, const tg_tensor *x);

/*
 * An op's forward run again from its node, for tg_recompute_later: a new
 * tensor (grad mode is off, so nothing is recorded) with the values the
 * node's output had, computed from n->in and the arguments the op stored
 * on n (f, iv); NULL with the error on c. The backward walk moves its data
 * under the given-back storage, so it must have the output's dtype, shape
 * and strides (the walk checks). An op without an entry (NULL) cannot
 * recompute: dropout (its draw), ops whose output is a view or written in
 * place, custom ops. The drop test of test_opgrad.c checks every entry:
 * the gradients with the output given back and recomputed must equal the
 * plain ones bit for bit.
 */
typedef tg_tensor *(*tg__remake_fn)(tg_ctx *c, const tg__node *n);
extern const tg__remake_fn tg__ops_remake[TG_OP_COUNT];

/*
 * Optional accumulating backward of an op, for when no graph is recorded
 * (grad mode off): adds the gradient of every input j that requires grad
 * into acc[j] (NULL for the others), a contiguous tensor of input j's shape
 * and dtype that the backward driver owns and nothing else references.
 * The driver uses it instead of the plain backward, so an op whose
 * gradient touches a small part of its input (slice: one window) costs
 * that part, not a full-size zero tensor plus a full-size add per use.
 * Ops without one have NULL in tg__ops_acc.
 */
typedef void (*tg__backward_acc_fn)(tg_ctx *c, const tg__node *n, tg_tensor *dout,
                                    tg_tensor **acc);
extern const tg__backward_acc_fn tg__ops_acc[TG_OP_COUNT];
void tg__slice_backward_acc(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **acc);
void tg__layer_norm_backward_acc(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **acc);
void tg__rms_norm_backward_acc(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **acc);

/* acc += x in place; x broadcasts to acc's shape, acc may be a strided
 * (non-overlapping) view; same dtype. */
void tg__acc_into(tg_ctx *c, tg_tensor *acc, tg_tensor *x);

/* Input checks shared by ops. Each returns false with an error recorded on
 * c (unless c already holds one) naming fn. */
bool tg__check_inputs(tg_ctx *c, const char *fn, int n, tg_tensor *const *in);
bool tg__check_float(tg_ctx *c, const char *fn, const tg_tensor *t);
bool tg__check_same_dtype(tg_ctx *c, const char *fn, const tg_tensor *a,
                          const tg_tensor *b);
/* GEMM layout of a rows x cols matrix with element strides (s0, s1): sets
 * *trans (CblasTrans: stored column-major) and *ld and returns true when
 * BLAS can read it in place, false when it must be copied first. A stride
 * of a size-1 dim is never used, so it does not matter (linalg.c). */
bool tg__mat_layout(int64_t rows, int64_t cols, int64_t s0, int64_t s1, bool *trans,
                    int64_t *ld);

/* *out = the sum of v[0..n) in fixed blocks of 4096 combined in order, so
 * the result does not depend on the thread count; false (TG_ERR_NOMEM on c)
 * when the partial sums cannot be allocated (losses.c). */
bool tg__det_sum(tg_ctx *c, const double *v, int64_t n, double *out);

/* Normalises a possibly negative axis against ndim; false on range error. */
bool tg__norm_axis(tg_ctx *c, const char *fn, int ndim, int axis, int *out);

/* tg_sdpa keeps the attention probabilities P for its backward when they
 * are at most twice its output (nn.c, sdpa_keeps), while this is true (the
 * default); tests set it false to check that the backward's recomputed P
 * gives the same bits. */
extern bool tg__sdpa_keep_p;

/*
 * A described gradient contribution (a job): run(c, d, dst, add) writes
 * (add false) or adds (add true) one input's whole gradient into dst, a
 * contiguous tensor of that input's shape and dtype. It must not fail or
 * allocate. The backward driver decides where it lands: at commit, after
 * every node has succeeded, straight into a leaf's .grad (beta = 1, or
 * beta = 0 into a fresh one); or right away into the gradient buffer the
 * walk owns for that input (beta = 1: a weight shared by T timesteps
 * costs one buffer, not T products plus adds); or into a fresh buffer
 * that becomes the walk's. It reads memory only through a and b (dout,
 * the op's inputs, or temporaries of its backward), which must stay
 * unchanged until the commit: a releasing walk keeps the activations they
 * point into and releases the op's other reads as usual. The fields are
 * the run function's arguments; c lends its threads.
 */
typedef struct tg__defer {
    void (*run)(tg_ctx *c, const struct tg__defer *d, tg_tensor *dst, bool add);
    bool f64, trans_a, trans_b;
    int64_t m, n, k, lda, ldb;
    const void *a, *b;
} tg__defer;

/*
 * Optional backward of an op for when no graph is recorded (grad mode and
 * anomaly mode off): sets dx[j] like the plain backward, computed by direct
 * kernels instead of recorded ops, except that for an input j with
 * defer[j] non-NULL (every input that requires grad) it may instead fill
 * *defer[j], including run, and leave dx[j] NULL; the driver then lands
 * that job (see tg__defer). Errors are recorded on c.
 */
typedef void (*tg__backward_nograph_fn)(tg_ctx *c, const tg__node *n, tg_tensor *dout,
                                        tg_tensor **dx, tg__defer **defer);
extern const tg__backward_nograph_fn tg__ops_nograph[TG_OP_COUNT];
void tg__linear_backward_nograph(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx,
                                 tg__defer **defer);
void tg__linear_relu_backward_nograph(tg_ctx *c, const tg__node *n, tg_tensor *dout,
                                      tg_tensor **dx, tg__defer **defer);
void tg__linear_add_backward_nograph(tg_ctx *c, const tg__node *n, tg_tensor *dout,
                                     tg_tensor **dx, tg__defer **defer);
/* Whether tg__defer_rows can make d's rows: a product's job (linear.c). */
bool tg__defer_has_rows(const tg__defer *d);
/* Rows [r0, r1) of what job d writes (its m x n result), into the dense
 * (r1 - r0) x n matrix at dst: its A's rows r0..r1 through the product. d
 * must be one that tg__defer_has_rows accepts. Rounding may differ from
 * the whole product's (BLAS picks its kernels by size). */
void tg__defer_rows(tg_ctx *c, const tg__defer *d, int64_t r0, int64_t r1, void *dst);

/* A tg__defer run (linear.c): dst (+)= the column sums of the k x n matrix
 * at d->a (row stride lda, column stride ldb, elements), each in double,
 * rows in order, rounded once: linear's bias gradient, and tg_lstm's. */
void tg__colsum_run(tg_ctx *c, const tg__defer *d, tg_tensor *dst, bool add);

/* tg_relu over n elements at y in place, its rule (TG__RELU) and bits, and
 * m[i] = y[i] > 0 when m is not NULL (conv.c). One thread. */
void tg__relu_run(bool f64, int64_t n, char *y, unsigned char *m);

/* relu's backward with the mask taken from ref, where ref > 0 exactly where
 * relu's input is (its input, or its output): dout * (ref > 0), relu's
 * bits; without a graph one fused pass, over dout when the walk offers
 * it; with one, recorded ops (elementwise.c). fn names errors. */
tg_tensor *tg__relu_grad(tg_ctx *c, const char *fn, tg_tensor *dout, tg_tensor *ref);

/* gelu's pieces, for tg_gelu_linear (activation.c): */
/* o = gelu(x) for rows of n elements at x (row stride rs, element stride
 * cs, in bytes) into dense rows at o; tg_gelu's bits. One thread. */
void tg__gelu_rows(bool f64, int64_t rows, int64_t n, const char *x, int64_t rs, int64_t cs,
                   char *o);
/* o = dout * gelu'(x) over n dense elements, Phi(x) taken from y =
 * gelu(x); tg_gelu's backward's bits. o may be dout or x (element i is
 * read, then written). One thread. */
void tg__gelu_grad_run(bool f64, int64_t n, const void *x, const void *y, const void *dout,
                       void *o);
/* dout * gelu'(x) as recorded ops, which differentiate again */
tg_tensor *tg__gelu_grad_ops(tg_ctx *c, tg_tensor *x, tg_tensor *dout);

/* Copies the first row (row bytes) of the R rows at p into every other
 * row, doubling the rows done with each memcpy: log2(R) calls, not R (a
 * bias broadcast into the rows a GEMM then adds onto). */
static inline void tg__repeat_row(char *p, size_t row, int64_t R)
{
    size_t total = (size_t)R * row;
    for (size_t done = row; done < total; done *= 2)
        memcpy(p + done, p, done < total - done ? done : total - done);
}

/* ---- convolution and pooling options (conv.c, pool.c), also checked by
 * the layer constructors so a bad option fails at construction ---------- */
/* TG_ERR_INVALID naming fn and the field unless every option is in range. */
bool tg__conv2d_check_opts(tg_ctx *c, const char *fn, const tg_conv2d_opts *o);
/* The 1-d options as the 2-d ones of a height-1 convolution. */
tg_conv2d_opts tg__conv1d_as_2d(const tg_conv1d_opts *o);
/* Validates o into r (stride 0 resolved to the kernel); dilation other than
 * 1 only when dilation_ok (max pooling). */
bool tg__pool2d_resolve_opts(tg_ctx *c, const char *fn, const tg_pool2d_opts *o,
                             bool dilation_ok, tg_pool2d_opts *r);

#endif /* TG_OPS_IMPL_H */
