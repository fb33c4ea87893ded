/*
 * tapegrad/tensor.h - N-d tensors: creation, shapes, strides, data access.
 *
 * Shapes are row-major in NumPy order (outermost first). A tensor is a
 * view on a storage: element strides plus a storage offset, so transpose,
 * permute, slice, expand and reshape-of-contiguous are views (see ops.h).
 * Every tensor lives in the context it was created in and dies with that
 * context's next reset or free; nothing is freed on its own.
 */
#ifndef TAPEGRAD_TENSOR_H
#define TAPEGRAD_TENSOR_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tg_tensor tg_tensor; /* opaque */

typedef enum { TG_F32, TG_F64, TG_I64 } tg_dtype;

/* Maximum number of dimensions of a tensor. */
#define TG_MAX_DIMS 8

/* Shape helper: TG_SHAPE(2, 3) expands to  2, (const int64_t[]){2, 3}. */
#define TG_SHAPE(...)                                                       \
    (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),       \
        (const int64_t[]) { __VA_ARGS__ }

/* "f32", "f64", "i64"; "?" for an invalid value. */
const char *tg_dtype_name(tg_dtype dt);

/* Bytes per element: 4 or 8; 0 for an invalid dtype. */
size_t tg_dtype_size(tg_dtype dt);

/* ====================================================================== */
/* Creation. Every function returns a tensor owned by c (valid until c is  */
/* reset or freed), or NULL with the error recorded on c:                 */
/* TG_ERR_INVALID (NULL shape with ndim > 0, ndim outside 0..8, a         */
/* negative dimension), TG_ERR_DTYPE (unknown dtype), TG_ERR_NOMEM         */
/* (including element counts whose byte size overflows).                  */
/* ====================================================================== */

/* A contiguous tensor of zeros. ndim == 0 makes a one-element scalar. */
tg_tensor *tg_tensor_new(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape);

/* A contiguous tensor holding a copy of numel elements of row-major data
 * of type dt (float, double or int64_t). data NULL: TG_ERR_INVALID. */
tg_tensor *tg_tensor_from(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape,
                          const void *data);

/* A 0-d tensor holding v (rounded toward zero for TG_I64). */
tg_tensor *tg_scalar(tg_ctx *c, tg_dtype dt, double v);

/* A contiguous tensor with every element v. */
tg_tensor *tg_full(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape, double v);

/* A 1-d tensor start, start+step, ... below stop (above it if step < 0),
 * like numpy.arange. step == 0 or a non-finite bound: TG_ERR_INVALID. */
tg_tensor *tg_arange(tg_ctx *c, tg_dtype dt, double start, double stop, double step);

/* Uniform in [0, 1) and standard normal values from c's seeded RNG.
 * Floating dtypes only (TG_ERR_DTYPE for TG_I64). */
tg_tensor *tg_rand(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape);
tg_tensor *tg_randn(tg_ctx *c, tg_dtype dt, int ndim, const int64_t *shape);

/* A contiguous tensor of zeros with t's shape and dtype, in c. */
tg_tensor *tg_zeros_like(tg_ctx *c, const tg_tensor *t);

/* ====================================================================== */
/* Inspection. NULL tensors give 0 / NULL / NaN as documented.            */
/* ====================================================================== */

int tg_ndim(const tg_tensor *t);                  /* -1 for NULL */
const int64_t *tg_shape(const tg_tensor *t);      /* ndim entries; owned by t */
const int64_t *tg_strides(const tg_tensor *t);    /* in elements; owned by t */
int64_t tg_numel(const tg_tensor *t);             /* 1 for 0-d; 0 for NULL */
tg_dtype tg_tensor_dtype(const tg_tensor *t);     /* TG_F32 for NULL */
tg_ctx *tg_tensor_ctx(const tg_tensor *t);        /* the context t lives in */
bool tg_is_contiguous(const tg_tensor *t);        /* row-major, no gaps */

/* Copies t's elements in row-major order (whatever its strides) to dst,
 * which holds nbytes. TG_ERR_INVALID for NULLs, TG_ERR_SHAPE when nbytes
 * is not numel * dtype size, TG_ERR_MISUSE when tg_backward_release gave
 * t's memory back. Errors are not recorded on a context. */
tg_status tg_copy_out(const tg_tensor *t, void *dst, size_t nbytes);

/* Copies numel row-major elements from src (nbytes of them) into t,
 * whatever its strides, and bumps its storage's version. The same errors
 * as tg_copy_out. Use it to load parameters and data. */
tg_status tg_copy_in(tg_tensor *t, const void *src, size_t nbytes);

/* The value of a one-element tensor as a double; NaN for NULL, for a
 * tensor with more than one element or for a released one (see
 * tg_backward_release). */
double tg_item(const tg_tensor *t);

/* The element at the given index (ndim entries) as a double; NaN when t
 * is NULL or released or the index is out of range. Slow: for tests and
 * printing. */
double tg_get(const tg_tensor *t, const int64_t *index);

/* Pointer to the first element of a contiguous tensor (row-major), owned
 * by t's context; NULL for a strided view, an empty tensor, a released one
 * (see tg_backward_release) or NULL. Writing
 * through it is allowed; call tg_tensor_bump_version() after changing a
 * tensor that a recorded op may have saved. */
void *tg_data(tg_tensor *t);

/* Marks t's storage as changed in place (see tg_data). */
void tg_tensor_bump_version(tg_tensor *t);

/* Names t (e.g. "fc1.weight"): the name appears in error messages, the
 * DOT export and checkpoints. The name is copied into t's context (at most
 * 127 bytes are kept); NULL clears it. TG_ERR_INVALID for a NULL t;
 * TG_ERR_NOMEM (also recorded on t's context). */
tg_status tg_tensor_set_name(tg_tensor *t, const char *name);

/* t's name, or NULL when it has none (or t is NULL). Owned by t's context. */
const char *tg_tensor_name(const tg_tensor *t);

/* Formats t's shape as "[3,4]" into buf (of n bytes) and returns buf. */
const char *tg_shape_str(const tg_tensor *t, char *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_TENSOR_H */
