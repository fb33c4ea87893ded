/*
 * shape.c - reshape, transpose, permute, expand, slice (views sharing their
 * input's storage), slice_scatter and contiguous (copies). Each backward
 * is the inverse view or its adjoint.
 */
#include "ops_impl.h"

#include <string.h>

#define NEED(i) (n->in[i]->requires_grad)

/* Records a view op whose arguments the caller stores in n->iv / n->f. */
static tg__node *record1(tg_ctx *c, tg_op op, tg_tensor *y, tg_tensor *x, bool *fail)
{
    tg__node *n;
    *fail = tg__record(c, op, y, 1, &x, &n) != TG_OK;
    return n;
}

/* ---- reshape ------------------------------------------------------------ */

/* y has shape `shape` (one -1 inferred) and x's elements in row-major order */
tg_tensor *tg_reshape(tg_ctx *c, tg_tensor *x, int ndim, const int64_t *shape)
{
    const char *fn = "tg_reshape";
    if (!tg__check_inputs(c, fn, 1, &x)) return NULL;
    if (ndim < 0 || ndim > TG_MAX_DIMS || (ndim > 0 && !shape)) {
        tg__fail(c, TG_ERR_INVALID, "%s: bad target ndim %d or NULL shape", fn, ndim);
        return NULL;
    }
    int64_t sh[TG_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (shape[i] == -1 && infer < 0) {
            infer = i;
        } else if (shape[i] < 0) {
            tg__fail(c, TG_ERR_INVALID, "%s: bad dim %lld at %d", fn, (long long)shape[i], i);
            return NULL;
        } else if (shape[i] != 0 && known > INT64_MAX / shape[i]) {
            known = -1; /* overflow: cannot match */
            break;
        } else {
            known *= shape[i];
        }
    }
    int64_t numel = tg__numel(x->ndim, x->shape);
    if (infer >= 0 && known > 0 && numel % known == 0) sh[infer] = numel / known;
    char a[128], b[128];
    if (known < 0 || (infer >= 0 && (known <= 0 || numel % known)) ||
        (infer < 0 && known != numel)) {
        tg__fail(c, TG_ERR_SHAPE, "%s: cannot reshape %s (%lld elements) to %s", fn,
                 tg__fmt_shape(a, sizeof a, x->ndim, x->shape), (long long)numel,
                 tg__fmt_shape(b, sizeof b, ndim, shape));
        return NULL;
    }
    int64_t st[TG_MAX_DIMS];
    tg__contig_strides(ndim, sh, st);
    tg_tensor *y;
    if (tg_is_contiguous(x)) {
        y = tg__view(c, x, ndim, sh, st, x->offset);
    } else {
        tg_tensor *tmp = tg__empty(c, fn, x->dtype, x->ndim, x->shape);
        if (!tmp) return NULL;
        tg__copy_strided(c, tmp, x);
        y = tg__view(c, tmp, ndim, sh, st, 0);
    }
    if (!y) return NULL;
    bool fail;
    record1(c, TG_OP_RESHAPE, y, x, &fail);
    return fail ? NULL : y;
}
void tg__reshape_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_reshape(c, dout, n->in[0]->ndim, n->in[0]->shape);
}

/* ---- transpose / permute ------------------------------------------------ */

/* y = x with dims d0 and d1 swapped (a view) */
tg_tensor *tg_transpose(tg_ctx *c, tg_tensor *x, int d0, int d1)
{
    const char *fn = "tg_transpose";
    if (!tg__check_inputs(c, fn, 1, &x)) return NULL;
    int a, b;
    if (!tg__norm_axis(c, fn, x->ndim, d0, &a) || !tg__norm_axis(c, fn, x->ndim, d1, &b))
        return NULL;
    int64_t sh[TG_MAX_DIMS], st[TG_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    memcpy(st, x->stride, sizeof st);
    sh[a] = x->shape[b], sh[b] = x->shape[a];
    st[a] = x->stride[b], st[b] = x->stride[a];
    tg_tensor *y = tg__view(c, x, x->ndim, sh, st, x->offset);
    if (!y) return NULL;
    bool fail;
    tg__node *n = record1(c, TG_OP_TRANSPOSE, y, x, &fail);
    if (fail) return NULL;
    if (n) n->iv[0] = a, n->iv[1] = b, n->n_iv = 2;
    return y;
}
void tg__transpose_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_transpose(c, dout, (int)n->iv[0], (int)n->iv[1]);
}

/* y dim i = x dim perm[i] (a view) */
tg_tensor *tg_permute(tg_ctx *c, tg_tensor *x, const int *perm)
{
    const char *fn = "tg_permute";
    if (!tg__check_inputs(c, fn, 1, &x)) return NULL;
    if (!perm && x->ndim > 0) {
        tg__fail(c, TG_ERR_INVALID, "%s: perm is NULL", fn);
        return NULL;
    }
    bool seen[TG_MAX_DIMS] = {false};
    int64_t sh[TG_MAX_DIMS], st[TG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        int p = perm[i] < 0 ? perm[i] + x->ndim : perm[i];
        if (p < 0 || p >= x->ndim || seen[p]) {
            tg__fail(c, TG_ERR_INVALID, "%s: perm is not a permutation of 0..%d (entry %d is %d)",
                     fn, x->ndim - 1, i, perm[i]);
            return NULL;
        }
        seen[p] = true;
        sh[i] = x->shape[p];
        st[i] = x->stride[p];
    }
    tg_tensor *y = tg__view(c, x, x->ndim, sh, st, x->offset);
    if (!y) return NULL;
    bool fail;
    tg__node *n = record1(c, TG_OP_PERMUTE, y, x, &fail);
    if (fail) return NULL;
    if (n) {
        for (int i = 0; i < x->ndim; i++) n->iv[i] = perm[i] < 0 ? perm[i] + x->ndim : perm[i];
        n->n_iv = x->ndim;
    }
    return y;
}
void tg__permute_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    int inv[TG_MAX_DIMS];
    for (int i = 0; i < n->n_iv; i++) inv[n->iv[i]] = i;
    dx[0] = tg_permute(c, dout, inv);
}

/* ---- expand ------------------------------------------------------------- */

/* y = x broadcast to shape; stretched dims have stride 0 */
tg_tensor *tg_expand(tg_ctx *c, tg_tensor *x, int ndim, const int64_t *shape)
{
    const char *fn = "tg_expand";
    if (!tg__check_inputs(c, fn, 1, &x)) return NULL;
    if (ndim < x->ndim || ndim > TG_MAX_DIMS || (ndim > 0 && !shape)) {
        tg__fail(c, TG_ERR_INVALID, "%s: cannot expand %d dims to %d", fn, x->ndim, ndim);
        return NULL;
    }
    int64_t sh[TG_MAX_DIMS], st[TG_MAX_DIMS];
    int lead = ndim - x->ndim;
    for (int i = 0; i < ndim; i++) {
        int j = i - lead;
        int64_t want = shape[i];
        if (j < 0) {
            if (want < 0) goto bad;
            sh[i] = want, st[i] = 0;
        } else if (want == -1 || want == x->shape[j]) {
            sh[i] = x->shape[j], st[i] = x->stride[j];
        } else if (x->shape[j] == 1 && want >= 0) {
            sh[i] = want, st[i] = 0;
        } else {
            goto bad;
        }
    }
    tg_tensor *y = tg__view(c, x, ndim, sh, st, x->offset);
    if (!y) return NULL;
    bool fail;
    record1(c, TG_OP_EXPAND, y, x, &fail);
    return fail ? NULL : y;
bad:;
    char a[128], b[128];
    tg__fail(c, TG_ERR_SHAPE, "%s: cannot expand %s to %s", fn,
             tg__fmt_shape(a, sizeof a, x->ndim, x->shape), tg__fmt_shape(b, sizeof b, ndim, shape));
    return NULL;
}
void tg__expand_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    (void)c;
    if (NEED(0)) dx[0] = dout; /* the engine sums the stretched dims back */
}

/* ---- slice / slice_scatter ---------------------------------------------- */

/* y = x[start:stop:step] along axis (a view) */
tg_tensor *tg_slice(tg_ctx *c, tg_tensor *x, int axis, int64_t start, int64_t stop,
                    int64_t step)
{
    const char *fn = "tg_slice";
    if (!tg__check_inputs(c, fn, 1, &x)) return NULL;
    int a;
    if (!tg__norm_axis(c, fn, x->ndim, axis, &a)) return NULL;
    if (step < 1) {
        tg__fail(c, TG_ERR_INVALID, "%s: step %lld; need >= 1", fn, (long long)step);
        return NULL;
    }
    int64_t len = x->shape[a];
    if (start < 0) start = start + len < 0 ? 0 : start + len;
    if (stop < 0) stop = stop + len < 0 ? 0 : stop + len;
    if (start > len) start = len;
    if (stop > len) stop = len;
    int64_t cnt = stop > start ? (stop - start + step - 1) / step : 0;
    int64_t sh[TG_MAX_DIMS], st[TG_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    memcpy(st, x->stride, sizeof st);
    sh[a] = cnt;
    st[a] = x->stride[a] * step;
    tg_tensor *y = tg__view(c, x, x->ndim, sh, st, x->offset + (cnt ? start * x->stride[a] : 0));
    if (!y) return NULL;
    bool fail;
    tg__node *n = record1(c, TG_OP_SLICE, y, x, &fail);
    if (fail) return NULL;
    if (n) n->iv[0] = a, n->iv[1] = start, n->iv[2] = step, n->n_iv = 3;
    return y;
}
void tg__slice_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    const tg_tensor *x = n->in[0];
    if (NEED(0))
        dx[0] = tg_slice_scatter(c, dout, x->ndim, x->shape, (int)n->iv[0], n->iv[1], n->iv[2]);
}

/* acc[start::step along axis] += dout: only the window is touched */
void tg__slice_backward_acc(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **acc)
{
    tg_tensor *a = acc[0];
    if (!a) return;
    int ax = (int)n->iv[0];
    int64_t start = n->iv[1], step = n->iv[2], st[TG_MAX_DIMS];
    memcpy(st, a->stride, sizeof st);
    st[ax] = a->stride[ax] * step;
    int64_t off = a->offset + (dout->shape[ax] ? start * a->stride[ax] : 0);
    tg_tensor *win = tg__view(c, a, a->ndim, dout->shape, st, off);
    if (win) tg__acc_into(c, win, dout);
}

/* y = zeros(shape); y[start::step along axis] = x */
tg_tensor *tg_slice_scatter(tg_ctx *c, tg_tensor *x, int ndim, const int64_t *shape, int axis,
                            int64_t start, int64_t step)
{
    const char *fn = "tg_slice_scatter";
    if (!tg__check_inputs(c, fn, 1, &x)) return NULL;
    int a;
    if (ndim != x->ndim || !tg__norm_axis(c, fn, x->ndim, axis, &a)) {
        if (tg__ok(c)) tg__fail(c, TG_ERR_SHAPE, "%s: x has %d dims, shape %d", fn, x->ndim, ndim);
        return NULL;
    }
    bool ok = step >= 1 && start >= 0;
    for (int i = 0; i < ndim && ok; i++)
        ok = i == a ? (x->shape[i] == 0 || start + (x->shape[i] - 1) * step < shape[i])
                    : x->shape[i] == shape[i];
    if (!ok) {
        char s1[128], s2[128];
        tg__fail(c, TG_ERR_SHAPE, "%s: %s does not fit in %s at %lld::%lld along axis %d", fn,
                 tg__fmt_shape(s1, sizeof s1, x->ndim, x->shape),
                 tg__fmt_shape(s2, sizeof s2, ndim, shape), (long long)start, (long long)step, a);
        return NULL;
    }
    tg_tensor *y = tg__empty(c, fn, x->dtype, ndim, shape);
    if (!y) return NULL;
    memset(y->st->data, 0, y->st->nbytes);
    int64_t st[TG_MAX_DIMS];
    memcpy(st, y->stride, sizeof st);
    st[a] *= step;
    tg_tensor *win = tg__view(c, y, ndim, x->shape, st, x->shape[a] ? start * y->stride[a] : 0);
    if (!win) return NULL;
    tg__copy_strided(c, win, x);
    bool fail;
    tg__node *n = record1(c, TG_OP_SLICE_SCATTER, y, x, &fail);
    if (fail) return NULL;
    if (n) n->iv[0] = a, n->iv[1] = start, n->iv[2] = step, n->n_iv = 3;
    return y;
}
void tg__slice_scatter_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    int64_t start = n->iv[1], step = n->iv[2], cnt = n->in[0]->shape[n->iv[0]];
    dx[0] = tg_slice(c, dout, (int)n->iv[0], start, start + cnt * step, step);
}

/* ---- contiguous --------------------------------------------------------- */

/* y = a contiguous copy of x */
tg_tensor *tg_contiguous(tg_ctx *c, tg_tensor *x)
{
    const char *fn = "tg_contiguous";
    if (!tg__check_inputs(c, fn, 1, &x)) return NULL;
    tg_tensor *y = tg__empty(c, fn, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    tg__copy_strided(c, y, x);
    bool fail;
    record1(c, TG_OP_CONTIGUOUS, y, x, &fail);
    return fail ? NULL : y;
}
void tg__contiguous_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    (void)c;
    if (NEED(0)) dx[0] = dout;
}
