/*
 * tapegrad/ops_index.h - shape and indexing: concat, stack, split, squeeze,
 * unsqueeze, flatten, pad, index_select, gather, scatter_add, one_hot.
 * Included by tapegrad/ops.h; the conventions of ops.h apply (context
 * first, sticky errors, results owned by the context). Implemented in
 * src/ops/join.c (concat, stack, split, squeeze, unsqueeze, flatten, pad)
 * and src/ops/index.c (index_select, gather, scatter_add, one_hot).
 *
 * Axes count from the end when negative. Data may be TG_F32, TG_F64 or
 * TG_I64 (an i64 tensor never requires grad, so an i64 result is never
 * recorded); the inputs of one op share a dtype (TG_ERR_DTYPE otherwise).
 * Index tensors are TG_I64 (TG_ERR_DTYPE otherwise), of any strides, never
 * require grad, and every index must lie in [0, size) of the indexed axis:
 * an index outside gives TG_ERR_INVALID naming its position and value,
 * found before anything is written.
 */
#ifndef TAPEGRAD_OPS_INDEX_H
#define TAPEGRAD_OPS_INDEX_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, name, arity, flags) lines of this family; see TG_OP_MAP in ops.h.
 * tg_split is n recorded tg_slice nodes and tg_one_hot is not
 * differentiable (it records nothing), so neither has an entry. */
#define TG_OPS_INDEX(X)                            \
    /* joining and shapes, src/ops/join.c */       \
    X(CONCAT, concat, -1, TG_OPF_VARIADIC)         \
    X(STACK, stack, -1, TG_OPF_VARIADIC)           \
    X(SQUEEZE, squeeze, 1, TG_OPF_VIEW)            \
    X(UNSQUEEZE, unsqueeze, 1, TG_OPF_VIEW)        \
    X(FLATTEN, flatten, 1, TG_OPF_VIEW)            \
    X(PAD, pad, 1, 0)                              \
    /* indexing, src/ops/index.c */                \
    X(INDEX_SELECT, index_select, 2, TG_OPF_INDEX) \
    X(GATHER, gather, 2, TG_OPF_INDEX)             \
    X(SCATTER_ADD, scatter_add, 3, TG_OPF_INDEX)

/* ====================================================================== */
/* Joining and splitting                                                  */
/* ====================================================================== */

/* y = [xs[0], xs[1], ..., xs[n-1]] joined along axis (numpy.concatenate).
 * The n >= 1 inputs have the same ndim (>= 1) and dtype and equal sizes
 * except along axis; y's size there is the sum. A new contiguous tensor;
 * one node whose inputs are all n tensors, each gradient a slice of dout.
 * Errors: TG_ERR_INVALID (n < 1, xs NULL, a NULL entry named by its
 * position, bad axis), TG_ERR_SHAPE (mismatched shapes), TG_ERR_DTYPE. */
tg_tensor *tg_concat(tg_ctx *c, tg_tensor *const *xs, int n, int axis);

/* y = the n >= 1 tensors of one shape stacked along a new axis (in
 * [-(ndim+1), ndim]): y has ndim + 1 dims (at most TG_MAX_DIMS) and size n
 * at axis (numpy.stack). A new contiguous tensor; gradient i is dout's
 * slice i along axis, squeezed. Errors as tg_concat. */
tg_tensor *tg_stack(tg_ctx *c, tg_tensor *const *xs, int n, int axis);

/* Splits x along axis into n pieces of sizes[0..n-1] elements (each >= 0,
 * summing to x's size there): out[i] = tg_slice(x, axis, s_i, s_i +
 * sizes[i], 1), a view. Not an op of its own: each piece is a recorded
 * tg_slice, so gradients flow through the slices. out (n entries) is all
 * NULL on error. Returns TG_OK or the error recorded on c: TG_ERR_INVALID
 * (n < 1, NULL sizes or out, bad axis, a negative size), TG_ERR_SHAPE
 * (sizes do not sum to the axis size). */
tg_status tg_split(tg_ctx *c, tg_tensor *x, int axis, int n, const int64_t *sizes, tg_tensor **out);

/* ====================================================================== */
/* Shapes (views)                                                         */
/* ====================================================================== */

/* x without dim axis, which must have size 1 (TG_ERR_SHAPE otherwise;
 * unlike torch, a size other than 1 is an error, not a no-op). A view;
 * its backward is an unsqueeze. */
tg_tensor *tg_squeeze(tg_ctx *c, tg_tensor *x, int axis);

/* x without any of its size-1 dims (numpy.squeeze()); a view, recorded as
 * TG_OP_SQUEEZE. A tensor with no size-1 dim gives a view of the same
 * shape. */
tg_tensor *tg_squeeze_all(tg_ctx *c, tg_tensor *x);

/* x with a new size-1 dim at axis in [-(ndim+1), ndim] (-1 appends), at
 * most TG_MAX_DIMS dims in all. A view; its backward is a squeeze. */
tg_tensor *tg_unsqueeze(tg_ctx *c, tg_tensor *x, int axis);

/* x with dims start_dim..end_dim (inclusive, negative from the end, start
 * <= end) merged into one, like torch.flatten: [2,3,4] with (1, 2) gives
 * [2,12]; a 0-d x gives [1]. A view when the merged dims can share one
 * stride (always for contiguous x), a contiguous copy otherwise.
 * TG_ERR_INVALID for bad dims. */
tg_tensor *tg_flatten(tg_ctx *c, tg_tensor *x, int start_dim, int end_dim);

/* x padded with value, like torch.nn.functional.pad(mode="constant"): pad
 * has 2k entries (k <= ndim) for the last k dims, innermost first:
 * (last before, last after, second-to-last before, ...). Each entry >= 0
 * (cropping by negative pads is not supported: TG_ERR_INVALID). A new
 * contiguous tensor; the gradient is the slice of dout that holds x.
 * value is rounded toward zero for TG_I64 data. */
tg_tensor *tg_pad(tg_ctx *c, tg_tensor *x, int npad, const int64_t *pad, double value);

/* ====================================================================== */
/* Indexing                                                               */
/* ====================================================================== */

/* y = x with positions index[0..K-1] along axis (torch.index_select):
 * index is a 1-d TG_I64 tensor of K entries in [0, x's size at axis),
 * repeats allowed; y has x's shape with size K at axis. A new contiguous
 * tensor. dx = scatter_add(zeros, axis, index, dout): repeated indices
 * accumulate, in index order (deterministic at any thread count).
 * TG_ERR_SHAPE when index is not 1-d. */
tg_tensor *tg_index_select(tg_ctx *c, tg_tensor *x, int axis, tg_tensor *index);

/* y[p] = x[p with p[axis] replaced by index[p]] (torch.gather): index is
 * TG_I64 with x's ndim and, along every other dim, a size <= x's; y has
 * index's shape, a new contiguous tensor. dx = scatter_add(zeros, axis,
 * index, dout) (deterministic, repeated indices accumulate). TG_ERR_SHAPE
 * for index shapes that do not fit. */
tg_tensor *tg_gather(tg_ctx *c, tg_tensor *x, int axis, tg_tensor *index);

/* y = a copy of x with y[p with p[axis] replaced by index[p]] += src[p]
 * for every position p of index (torch.scatter_add, not in place). index
 * (TG_I64) and src have the same shape (unlike torch, src may not be
 * larger), of x's ndim and, along every dim but axis, at most x's size.
 * Additions into one element happen in index order along axis, so results
 * are deterministic whatever the thread count. dx = dout, dsrc =
 * gather(dout, axis, index). */
tg_tensor *tg_scatter_add(tg_ctx *c, tg_tensor *x, int axis, tg_tensor *index, tg_tensor *src);

/* y[..., k] = (labels[...] == k) for k in [0, num_classes): labels is
 * TG_I64 of any shape, y has labels' shape plus [num_classes] and dtype dt
 * (f32, f64 or i64). Not differentiable and not an op of the list: the
 * result is a plain constant that requires no grad. TG_ERR_INVALID for
 * num_classes < 1 or a label outside [0, num_classes) (named with its
 * position and value); TG_ERR_DTYPE for non-i64 labels or a bad dt. */
tg_tensor *tg_one_hot(tg_ctx *c, tg_tensor *labels, int64_t num_classes, tg_dtype dt);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_OPS_INDEX_H */
