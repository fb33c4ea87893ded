/*
 * join.c - joining and reshaping ops of the index family: concat and stack
 * (copies, variadic nodes), split (recorded slices, no node of its own),
 * squeeze, unsqueeze and flatten (views), and constant pad (a copy).
 *
 * Every backward is a view or a slice of dout, written with recorded ops
 * (tg_slice, tg_squeeze, tg_unsqueeze, tg_reshape), so gradients of
 * gradients flow through slice/slice_scatter like any other node.
 */
#include "ops_impl.h"

#include <string.h>

#define NEED(i) (n->in[i]->requires_grad)

/* Checks the list of a variadic op: n >= 1, no NULL entry, one dtype. */
static bool check_list(tg_ctx *c, const char *fn, tg_tensor *const *xs, int n)
{
    if (!tg__ok(c)) return false;
    if (n < 1 || !xs) {
        tg__fail(c, TG_ERR_INVALID, "%s: need at least one tensor (n = %d, list %s)", fn, n,
                 xs ? "given" : "NULL");
        return false;
    }
    if (!tg__check_inputs(c, fn, n, xs)) return false;
    for (int i = 1; i < n; i++) {
        if (xs[i]->dtype != xs[0]->dtype) {
            tg__fail(c, TG_ERR_DTYPE, "%s: input %d has dtype %s but input 0 has %s", fn, i,
                     tg_dtype_name(xs[i]->dtype), tg_dtype_name(xs[0]->dtype));
            return false;
        }
    }
    return true;
}

/* Records a one-input op; the caller stores its arguments in the node. */
static tg__node *record1(tg_ctx *c, tg_op op, tg_tensor *y, tg_tensor *x, bool *fail)
{
    tg__node *n;
    *fail = tg__record(c, op, y, 1, &x, &n) != TG_OK;
    return n;
}

/* ---- concat --------------------------------------------------------------- */

/* xs[i] is (..., L_i, ...) along axis; y is (..., sum L_i, ...) */
tg_tensor *tg_concat(tg_ctx *c, tg_tensor *const *xs, int n, int axis)
{
    const char *fn = "tg_concat";
    if (!check_list(c, fn, xs, n)) return NULL;
    const tg_tensor *x0 = xs[0];
    if (x0->ndim == 0) {
        tg__fail(c, TG_ERR_INVALID,
                 "%s: input 0 is 0-d; 0-d tensors cannot be concatenated "
                 "(use tg_stack)",
                 fn);
        return NULL;
    }
    int a;
    if (!tg__norm_axis(c, fn, x0->ndim, axis, &a)) return NULL;
    int64_t sh[TG_MAX_DIMS];
    memcpy(sh, x0->shape, sizeof sh);
    sh[a] = 0;
    for (int i = 0; i < n; i++) {
        const tg_tensor *x = xs[i];
        bool ok = x->ndim == x0->ndim;
        for (int d = 0; ok && d < x->ndim; d++) ok = d == a || x->shape[d] == x0->shape[d];
        if (!ok) {
            char s0[128], si[128];
            tg__fail(c, TG_ERR_SHAPE,
                     "%s: input %d %s does not match input 0 %s except along axis %d", fn, i,
                     tg__fmt_shape(si, sizeof si, x->ndim, x->shape),
                     tg__fmt_shape(s0, sizeof s0, x0->ndim, x0->shape), a);
            return NULL;
        }
        if (sh[a] > INT64_MAX - x->shape[a]) {
            tg__fail(c, TG_ERR_NOMEM, "%s: the joined size overflows", fn);
            return NULL;
        }
        sh[a] += x->shape[a];
    }
    tg_tensor *y = tg__empty(c, fn, x0->dtype, x0->ndim, sh);
    if (!y) return NULL;
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (tg__numel(xs[i]->ndim, xs[i]->shape) == 0) continue;
        tg_tensor *win = tg__view(c, y, y->ndim, xs[i]->shape, y->stride, off * y->stride[a]);
        if (!win) return NULL;
        tg__copy_strided(c, win, xs[i]);
        off += xs[i]->shape[a];
    }
    tg__node *node;
    if (tg__record(c, TG_OP_CONCAT, y, n, xs, &node)) return NULL;
    if (node) node->iv[0] = a, node->n_iv = 1;
    return y;
}
/* dx_i = dout[off_i : off_i + L_i] along axis */
void tg__concat_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    int a = (int)n->iv[0];
    int64_t off = 0;
    for (int i = 0; i < n->n_in; i++) {
        int64_t len = n->in[i]->shape[a];
        if (NEED(i)) dx[i] = tg_slice(c, dout, a, off, off + len, 1);
        off += len;
    }
}

/* ---- stack ---------------------------------------------------------------- */

/* xs[i] all of one shape S; y is S with n inserted at axis */
tg_tensor *tg_stack(tg_ctx *c, tg_tensor *const *xs, int n, int axis)
{
    const char *fn = "tg_stack";
    if (!check_list(c, fn, xs, n)) return NULL;
    const tg_tensor *x0 = xs[0];
    for (int i = 1; i < n; i++) {
        bool ok = xs[i]->ndim == x0->ndim;
        for (int d = 0; ok && d < x0->ndim; d++) ok = xs[i]->shape[d] == x0->shape[d];
        if (!ok) {
            char s0[128], si[128];
            tg__fail(c, TG_ERR_SHAPE, "%s: input %d %s does not match input 0 %s", fn, i,
                     tg__fmt_shape(si, sizeof si, xs[i]->ndim, xs[i]->shape),
                     tg__fmt_shape(s0, sizeof s0, x0->ndim, x0->shape));
            return NULL;
        }
    }
    int nd = x0->ndim + 1, a;
    if (nd > TG_MAX_DIMS) {
        tg__fail(c, TG_ERR_INVALID, "%s: inputs have %d dims; the result would exceed %d", fn,
                 x0->ndim, TG_MAX_DIMS);
        return NULL;
    }
    if (!tg__norm_axis(c, fn, nd, axis, &a)) return NULL;
    int64_t sh[TG_MAX_DIMS];
    for (int d = 0, j = 0; d < nd; d++) sh[d] = d == a ? n : x0->shape[j++];
    tg_tensor *y = tg__empty(c, fn, x0->dtype, nd, sh);
    if (!y) return NULL;
    /* slot i of y along axis, as a view of x0's shape */
    int64_t st[TG_MAX_DIMS];
    for (int d = 0, j = 0; d < nd; d++)
        if (d != a) st[j++] = y->stride[d];
    if (tg__numel(x0->ndim, x0->shape) > 0) {
        for (int i = 0; i < n; i++) {
            tg_tensor *win = tg__view(c, y, x0->ndim, x0->shape, st, i * y->stride[a]);
            if (!win) return NULL;
            tg__copy_strided(c, win, xs[i]);
        }
    }
    tg__node *node;
    if (tg__record(c, TG_OP_STACK, y, n, xs, &node)) return NULL;
    if (node) node->iv[0] = a, node->n_iv = 1;
    return y;
}
/* dx_i = dout[i] along axis, squeezed */
void tg__stack_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    int a = (int)n->iv[0];
    for (int i = 0; i < n->n_in; i++)
        if (NEED(i)) dx[i] = tg_squeeze(c, tg_slice(c, dout, a, i, i + 1, 1), a);
}

/* ---- split (slices; no node of its own) ----------------------------------- */

tg_status tg_split(tg_ctx *c, tg_tensor *x, int axis, int n, const int64_t *sizes, tg_tensor **out)
{
    const char *fn = "tg_split";
    if (out && n > 0)
        for (int i = 0; i < n; i++) out[i] = NULL;
    if (!c) return TG_ERR_INVALID;
    if (!tg__check_inputs(c, fn, 1, &x)) return c->status;
    if (n < 1 || !sizes || !out)
        return tg__fail(c, TG_ERR_INVALID, "%s: need n >= 1 pieces with sizes and out (n = %d%s%s)",
                        fn, n, sizes ? "" : ", sizes NULL", out ? "" : ", out NULL");
    int a;
    if (!tg__norm_axis(c, fn, x->ndim, axis, &a)) return c->status;
    for (int i = 0; i < n; i++)
        if (sizes[i] < 0)
            return tg__fail(c, TG_ERR_INVALID, "%s: size %d is %lld; need >= 0", fn, i,
                            (long long)sizes[i]);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (sizes[i] > x->shape[a] - total) {
            total = -1;
            break;
        }
        total += sizes[i];
    }
    if (total != x->shape[a]) {
        char s[128];
        return tg__fail(c, TG_ERR_SHAPE, "%s: x %s: the %d sizes do not sum to %lld (axis %d)", fn,
                        tg__fmt_shape(s, sizeof s, x->ndim, x->shape), n, (long long)x->shape[a],
                        a);
    }
    int64_t start = 0;
    for (int i = 0; i < n; i++) {
        out[i] = tg_slice(c, x, a, start, start + sizes[i], 1);
        start += sizes[i];
    }
    if (c->status != TG_OK)
        for (int i = 0; i < n; i++) out[i] = NULL;
    return c->status;
}

/* ---- squeeze / unsqueeze --------------------------------------------------- */

/* y = x without the dims in mask (all of size 1): a view */
static tg_tensor *squeeze_mask(tg_ctx *c, tg_tensor *x, unsigned mask)
{
    int64_t sh[TG_MAX_DIMS], st[TG_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (mask & (1u << d)) continue;
        sh[nd] = x->shape[d];
        st[nd++] = x->stride[d];
    }
    tg_tensor *y = tg__view(c, x, nd, sh, st, x->offset);
    if (!y) return NULL;
    bool fail;
    tg__node *n = record1(c, TG_OP_SQUEEZE, y, x, &fail);
    if (fail) return NULL;
    if (n) {
        n->n_iv = 0;
        for (int d = 0; d < x->ndim; d++)
            if (mask & (1u << d)) n->iv[n->n_iv++] = d;
    }
    return y;
}

/* y = x without dim axis (of size 1) */
tg_tensor *tg_squeeze(tg_ctx *c, tg_tensor *x, int axis)
{
    const char *fn = "tg_squeeze";
    if (!tg__check_inputs(c, fn, 1, &x)) return NULL;
    int a;
    if (!tg__norm_axis(c, fn, x->ndim, axis, &a)) return NULL;
    if (x->shape[a] != 1) {
        char s[128];
        tg__fail(c, TG_ERR_SHAPE, "%s: x %s: dim %d has size %lld, not 1", fn,
                 tg__fmt_shape(s, sizeof s, x->ndim, x->shape), a, (long long)x->shape[a]);
        return NULL;
    }
    return squeeze_mask(c, x, 1u << a);
}

/* y = x without every size-1 dim */
tg_tensor *tg_squeeze_all(tg_ctx *c, tg_tensor *x)
{
    const char *fn = "tg_squeeze_all";
    if (!tg__check_inputs(c, fn, 1, &x)) return NULL;
    unsigned mask = 0;
    for (int d = 0; d < x->ndim; d++)
        if (x->shape[d] == 1) mask |= 1u << d;
    return squeeze_mask(c, x, mask);
}
/* dx = dout with the removed dims put back, in ascending order */
void tg__squeeze_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    tg_tensor *g = dout;
    for (int k = 0; k < n->n_iv; k++) g = tg_unsqueeze(c, g, (int)n->iv[k]);
    dx[0] = g;
}

/* y = x with a size-1 dim inserted at axis: a view */
tg_tensor *tg_unsqueeze(tg_ctx *c, tg_tensor *x, int axis)
{
    const char *fn = "tg_unsqueeze";
    if (!tg__check_inputs(c, fn, 1, &x)) return NULL;
    int nd = x->ndim + 1, a;
    if (nd > TG_MAX_DIMS) {
        tg__fail(c, TG_ERR_INVALID, "%s: x has %d dims; the result would exceed %d", fn, x->ndim,
                 TG_MAX_DIMS);
        return NULL;
    }
    if (!tg__norm_axis(c, fn, nd, axis, &a)) return NULL;
    int64_t sh[TG_MAX_DIMS], st[TG_MAX_DIMS];
    for (int d = 0, j = 0; d < nd; d++) {
        if (d == a) {
            sh[d] = 1;
            st[d] = a < x->ndim ? x->stride[a] * x->shape[a] : 1;
        } else {
            sh[d] = x->shape[j];
            st[d] = x->stride[j++];
        }
    }
    tg_tensor *y = tg__view(c, x, nd, sh, st, x->offset);
    if (!y) return NULL;
    bool fail;
    tg__node *n = record1(c, TG_OP_UNSQUEEZE, y, x, &fail);
    if (fail) return NULL;
    if (n) n->iv[0] = a, n->n_iv = 1;
    return y;
}
void tg__unsqueeze_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_squeeze(c, dout, (int)n->iv[0]);
}

/* ---- flatten --------------------------------------------------------------- */

/* The one stride of dims s..e merged, or false when they cannot share one
 * (ignoring size-1 dims; an empty tensor always can). */
static bool merged_stride(const tg_tensor *x, int s, int e, int64_t *stride)
{
    int64_t expect = -1;
    *stride = 1;
    for (int d = s; d <= e; d++)
        if (x->shape[d] == 0) return true;
    for (int d = e; d >= s; d--) {
        if (x->shape[d] == 1) continue;
        if (expect < 0) *stride = x->stride[d];
        else if (x->stride[d] != expect) return false;
        expect = x->stride[d] * x->shape[d];
    }
    return true;
}

/* y = x with dims start_dim..end_dim merged */
tg_tensor *tg_flatten(tg_ctx *c, tg_tensor *x, int start_dim, int end_dim)
{
    const char *fn = "tg_flatten";
    if (!tg__check_inputs(c, fn, 1, &x)) return NULL;
    int64_t sh[TG_MAX_DIMS], st[TG_MAX_DIMS];
    int nd;
    tg_tensor *base = x;
    if (x->ndim == 0) {
        if ((start_dim != 0 && start_dim != -1) || (end_dim != 0 && end_dim != -1)) {
            tg__fail(c, TG_ERR_INVALID, "%s: dims %d..%d out of range for a 0-d tensor", fn,
                     start_dim, end_dim);
            return NULL;
        }
        nd = 1, sh[0] = 1, st[0] = 1;
    } else {
        int s, e;
        if (!tg__norm_axis(c, fn, x->ndim, start_dim, &s) ||
            !tg__norm_axis(c, fn, x->ndim, end_dim, &e))
            return NULL;
        if (s > e) {
            tg__fail(c, TG_ERR_INVALID, "%s: start_dim %d comes after end_dim %d", fn, start_dim,
                     end_dim);
            return NULL;
        }
        int64_t ms;
        if (!merged_stride(x, s, e, &ms)) {
            /* a contiguous copy, then a view of it */
            base = tg__empty(c, fn, x->dtype, x->ndim, x->shape);
            if (!base) return NULL;
            tg__copy_strided(c, base, x);
            ms = base->stride[e];
        }
        nd = 0;
        int64_t m = 1;
        for (int d = 0; d < x->ndim; d++) {
            if (d < s || d > e) {
                sh[nd] = base->shape[d];
                st[nd++] = base->stride[d];
            } else {
                m *= base->shape[d];
                if (d == e) sh[nd] = m, st[nd++] = ms;
            }
        }
    }
    tg_tensor *y = tg__view(c, base, nd, sh, st, base->offset);
    if (!y) return NULL;
    bool fail;
    record1(c, TG_OP_FLATTEN, y, x, &fail);
    return fail ? NULL : y;
}
void tg__flatten_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (NEED(0)) dx[0] = tg_reshape(c, dout, n->in[0]->ndim, n->in[0]->shape);
}

/* ---- pad -------------------------------------------------------------------- */

/* y = value everywhere, x at [before_d, before_d + size_d) on every dim d */
tg_tensor *tg_pad(tg_ctx *c, tg_tensor *x, int npad, const int64_t *pad, double value)
{
    const char *fn = "tg_pad";
    if (!tg__check_inputs(c, fn, 1, &x)) return NULL;
    char s[128];
    if (npad < 0 || npad % 2 || npad / 2 > x->ndim || (npad > 0 && !pad)) {
        tg__fail(c, TG_ERR_INVALID, "%s: x %s: %d pad entries%s; need an even count up to %d", fn,
                 tg__fmt_shape(s, sizeof s, x->ndim, x->shape), npad,
                 npad > 0 && !pad ? " in a NULL list" : "", 2 * x->ndim);
        return NULL;
    }
    int64_t sh[TG_MAX_DIMS], before[TG_MAX_DIMS] = {0};
    memcpy(sh, x->shape, sizeof sh);
    for (int k = 0; k < npad / 2; k++) {
        int d = x->ndim - 1 - k;
        int64_t lo = pad[2 * k], hi = pad[2 * k + 1];
        if (lo < 0 || hi < 0) {
            tg__fail(c, TG_ERR_INVALID, "%s: pad entry %d is %lld; need >= 0 (no cropping)", fn,
                     lo < 0 ? 2 * k : 2 * k + 1, (long long)(lo < 0 ? lo : hi));
            return NULL;
        }
        if (lo > INT64_MAX / 4 || hi > INT64_MAX / 4 || sh[d] > INT64_MAX / 2) {
            tg__fail(c, TG_ERR_NOMEM, "%s: padded size of dim %d overflows", fn, d);
            return NULL;
        }
        before[d] = lo;
        sh[d] += lo + hi;
    }
    tg_tensor *y = tg__empty(c, fn, x->dtype, x->ndim, sh);
    if (!y) return NULL;
    int64_t ny = tg__numel(y->ndim, y->shape), off = 0;
    char *p = tg__ptr(y);
    if (y->dtype == TG_F32) {
        for (int64_t i = 0; i < ny; i++) ((float *)p)[i] = (float)value;
    } else if (y->dtype == TG_F64) {
        for (int64_t i = 0; i < ny; i++) ((double *)p)[i] = value;
    } else {
        int64_t v = value != value     ? 0
                    : value >= 9.2e18  ? INT64_MAX
                    : value <= -9.2e18 ? INT64_MIN
                                       : (int64_t)value;
        for (int64_t i = 0; i < ny; i++) ((int64_t *)p)[i] = v;
    }
    for (int d = 0; d < x->ndim; d++) off += before[d] * y->stride[d];
    if (tg__numel(x->ndim, x->shape) > 0) {
        tg_tensor *win = tg__view(c, y, x->ndim, x->shape, y->stride, off);
        if (!win) return NULL;
        tg__copy_strided(c, win, x);
    }
    bool fail;
    tg__node *n = record1(c, TG_OP_PAD, y, x, &fail);
    if (fail) return NULL;
    if (n) {
        for (int d = 0; d < x->ndim; d++) n->iv[d] = before[d];
        n->n_iv = x->ndim;
        n->f[0] = value;
    }
    return y;
}
/* dx = dout[before_d : before_d + size_d] on every padded dim d */
void tg__pad_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    if (!NEED(0)) return;
    const tg_tensor *x = n->in[0];
    tg_tensor *g = dout;
    for (int d = 0; d < x->ndim; d++)
        if (n->out->shape[d] != x->shape[d])
            g = tg_slice(c, g, d, n->iv[d], n->iv[d] + x->shape[d], 1);
    dx[0] = g;
}
