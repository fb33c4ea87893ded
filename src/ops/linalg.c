/*
 * linalg.c - matrix products on BLAS GEMM. Forward and backward side by side.
 *
 * tg_matmul maps each 2-d operand matrix straight onto GEMM when its
 * strides allow: unit column stride is NoTrans (ld = row stride), unit row
 * stride is Trans (ld = column stride), so transposed views cost nothing.
 * Anything else (a slice with gaps in both dims, an expanded matrix) is
 * copied to a contiguous buffer in the context's arena first. Batch dims
 * broadcast like NumPy; when b is one matrix for every batch and a's batch
 * and row dims step through memory as one, the batch folds into M and the
 * whole product is one GEMM (the linear-layer case).
 */
#include "ops_impl.h"

#include <limits.h>
#include <string.h>

bool tg__mat_layout(int64_t rows, int64_t cols, int64_t s0, int64_t s1, bool *trans,
                    int64_t *ld)
{
    int64_t mc = cols > 1 ? cols : 1, mr = rows > 1 ? rows : 1;
    if (s1 == 1 || cols == 1) {
        int64_t l = rows == 1 ? mc : s0;
        if (l >= mc && l <= INT_MAX) {
            *trans = false;
            *ld = l;
            return true;
        }
    }
    if (s0 == 1 || rows == 1) {
        int64_t l = cols == 1 ? mr : s1;
        if (l >= mr && l <= INT_MAX) {
            *trans = true;
            *ld = l;
            return true;
        }
    }
    return false;
}

/* One operand as GEMM sees it: its data, the layout of its matrices and
 * the stride of each output batch dim (0 where it broadcasts). */
typedef struct {
    tg_tensor *t; /* the input, or a contiguous copy of it */
    int64_t rows, cols;
    bool trans;
    int64_t ld;
    int64_t bst[TG_MAX_DIMS];
} operand;

/* Fills op for t (rows x cols matrices, nbd output batch dims), copying t
 * when its matrices do not fit GEMM. Batch dims of stride 0 stay size 1 in
 * the copy, so an expanded operand is not copied once per batch. */
static bool operand_init(tg_ctx *c, operand *op, tg_tensor *t, int nbd, int64_t rows,
                         int64_t cols)
{
    int nd = t->ndim;
    op->t = t;
    op->rows = rows;
    op->cols = cols;
    if (!tg__mat_layout(rows, cols, t->stride[nd - 2], t->stride[nd - 1], &op->trans, &op->ld)) {
        int64_t shape[TG_MAX_DIMS];
        for (int d = 0; d < nd; d++)
            shape[d] = d < nd - 2 && t->stride[d] == 0 ? 1 : t->shape[d];
        tg_tensor *v = tg__view(c, t, nd, shape, t->stride, t->offset);
        tg_tensor *cp = v ? tg__empty(c, "tg_matmul", t->dtype, nd, shape) : NULL;
        if (!cp) return false;
        tg__copy_strided(c, cp, v);
        op->t = cp;
        bool ok = tg__mat_layout(rows, cols, cp->stride[nd - 2], cp->stride[nd - 1], &op->trans,
                             &op->ld);
        TG_ASSERT(ok);
    }
    for (int i = 0; i < nbd; i++) {
        int j = i - (nbd - (nd - 2));
        op->bst[i] = j >= 0 && op->t->shape[j] != 1 ? op->t->stride[j] : 0;
    }
    return true;
}

/* True when dims (sz, st) of a walk memory as one dim; *inner is then its
 * stride (0 when every dim has size 1). */
static bool collapse(int n, const int64_t *sz, const int64_t *st, int64_t *inner)
{
    bool any = false;
    int64_t cur_st = 0, cur_sz = 1;
    *inner = 0;
    for (int d = n - 1; d >= 0; d--) {
        if (sz[d] == 1) continue;
        if (!any) {
            *inner = st[d];
            any = true;
        } else if (st[d] != cur_st * cur_sz) {
            return false;
        }
        cur_st = st[d];
        cur_sz = sz[d];
    }
    return true;
}

/* "tg_matmul: [3,4] @ [5,6]: what" */
static void mm_fail(tg_ctx *c, tg_status s, const tg_tensor *a, const tg_tensor *b,
                    const char *what)
{
    char sa[160], sb[160];
    tg__fail(c, s, "tg_matmul: %s @ %s: %s", tg__fmt_shape(sa, sizeof sa, a->ndim, a->shape),
             tg__fmt_shape(sb, sizeof sb, b->ndim, b->shape), what);
}

/* a is (..., M, K), b is (..., K, N); y is (broadcast batch..., M, N) */
/* y[i] = a[i] @ b[i] for every batch index i */
tg_tensor *tg_matmul(tg_ctx *c, tg_tensor *a, tg_tensor *b)
{
    tg_tensor *in[2] = {a, b};
    if (!tg__check_inputs(c, "tg_matmul", 2, in) ||
        !tg__check_same_dtype(c, "tg_matmul", a, b))
        return NULL;
    if (a->ndim < 2 || b->ndim < 2) {
        mm_fail(c, TG_ERR_SHAPE, a, b,
                "both operands need at least 2 dims (reshape a vector to [1,K] or [K,1])");
        return NULL;
    }
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1];
    int64_t K2 = b->shape[b->ndim - 2], N = b->shape[b->ndim - 1];
    if (K != K2) {
        char msg[96];
        snprintf(msg, sizeof msg, "inner dims %lld != %lld", (long long)K, (long long)K2);
        mm_fail(c, TG_ERR_SHAPE, a, b, msg);
        return NULL;
    }
    int64_t shape[TG_MAX_DIMS];
    int nbd;
    if (!tg__broadcast_shape(a->ndim - 2, a->shape, b->ndim - 2, b->shape, &nbd, shape)) {
        mm_fail(c, TG_ERR_SHAPE, a, b, "batch dims do not broadcast");
        return NULL;
    }
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX) {
        mm_fail(c, TG_ERR_INVALID, a, b, "matrix dims exceed the int range of BLAS");
        return NULL;
    }
    shape[nbd] = M;
    shape[nbd + 1] = N;
    tg_tensor *y = tg__empty(c, "tg_matmul", a->dtype, nbd + 2, shape);
    if (!y) return NULL;

    int64_t batches = tg__numel(nbd, shape);
    bool f64 = a->dtype == TG_F64;
    size_t es = tg__esize(a->dtype);
    if (batches > 0 && M > 0 && N > 0) {
        if (K == 0) {
            memset(tg__ptr(y), 0, (size_t)(batches * M * N) * es);
        } else {
            operand A, B;
            if (!operand_init(c, &A, a, nbd, M, K) || !operand_init(c, &B, b, nbd, K, N))
                return NULL;
            const char *pa = tg__ptr(A.t), *pb = tg__ptr(B.t);
            char *py = tg__ptr(y);

            /* Fold: b is the same matrix for every batch and a's batch and
             * row dims collapse to one row stride. */
            bool fold = true;
            for (int i = 0; i < nbd && fold; i++) fold = shape[i] == 1 || B.bst[i] == 0;
            int64_t sz[TG_MAX_DIMS], st[TG_MAX_DIMS], rs;
            bool ta = false;
            int64_t lda = 0;
            if (fold && batches > 1) {
                for (int i = 0; i < nbd; i++) {
                    sz[i] = shape[i];
                    st[i] = A.bst[i];
                }
                sz[nbd] = M;
                st[nbd] = A.t->stride[A.t->ndim - 2];
                fold = batches * M <= INT_MAX && collapse(nbd + 1, sz, st, &rs) &&
                       tg__mat_layout(batches * M, K, rs, A.t->stride[A.t->ndim - 1], &ta, &lda);
            }
            if (fold) {
                if (batches == 1) {
                    ta = A.trans;
                    lda = A.ld;
                }
                tg__gemm(c, f64, ta, B.trans, batches * M, N, K, 1.0, pa, lda, pb, B.ld, 0.0, py,
                         N);
            } else {
                int64_t idx[TG_MAX_DIMS] = {0};
                for (int64_t bi = 0; bi < batches; bi++) {
                    int64_t rem = bi, oa = 0, ob = 0;
                    for (int i = nbd - 1; i >= 0; i--) {
                        idx[i] = rem % shape[i];
                        rem /= shape[i];
                        oa += idx[i] * A.bst[i];
                        ob += idx[i] * B.bst[i];
                    }
                    tg__gemm(c, f64, A.trans, B.trans, M, N, K, 1.0, pa + oa * (int64_t)es, A.ld,
                             pb + ob * (int64_t)es, B.ld, 0.0, py + bi * M * N * (int64_t)es,
                             N);
                }
            }
        }
    }

    tg__node *n;
    if (tg__record(c, TG_OP_MATMUL, y, 2, in, &n)) return NULL;
    return y;
}

/* dout is (batch..., M, N); da is (batch..., M, K), db is (batch..., K, N) */
/* da = dout @ b^T, db = a^T @ dout; the engine sums broadcast batch dims */
void tg__matmul_backward(tg_ctx *c, const tg__node *n, tg_tensor *dout, tg_tensor **dx)
{
    tg_tensor *a = n->in[0], *b = n->in[1];
    if (a->requires_grad) dx[0] = tg_matmul(c, dout, tg_transpose(c, b, -1, -2));
    if (b->requires_grad) dx[1] = tg_matmul(c, tg_transpose(c, a, -1, -2), dout);
}
