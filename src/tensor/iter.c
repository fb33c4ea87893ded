/*
 * iter.c - strided N-d elementwise iteration with broadcasting (see iter.h).
 */
#include "iter.h"

#include <string.h>

bool tg__broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *out_ndim,
                         int64_t *out)
{
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int ia = na - n + i, ib = nb - n + i;
        int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
        if (da != db && da != 1 && db != 1) return false;
        out[i] = da == 1 ? db : da;
    }
    *out_ndim = n;
    return true;
}

typedef struct {
    int nt, nd;
    int64_t shape[TG_MAX_DIMS];
    int64_t stride[TG__MAX_OPERANDS][TG_MAX_DIMS]; /* bytes */
    char *base[TG__MAX_OPERANDS];
    tg__ew_kernel k;
    void *aux;
} ew_plan;

static void ew_range(void *arg, int64_t begin, int64_t end)
{
    const ew_plan *pl = arg;
    int nd = pl->nd, last = nd - 1;
    int64_t idx[TG_MAX_DIMS];
    int64_t rem = begin;
    for (int d = last; d >= 0; d--) {
        idx[d] = rem % pl->shape[d];
        rem /= pl->shape[d];
    }
    char *p[TG__MAX_OPERANDS];
    int64_t s[TG__MAX_OPERANDS];
    for (int k = 0; k < pl->nt; k++) s[k] = pl->stride[k][last];
    int64_t i = begin;
    while (i < end) {
        for (int k = 0; k < pl->nt; k++) {
            char *q = pl->base[k];
            for (int d = 0; d < nd; d++) q += idx[d] * pl->stride[k][d];
            p[k] = q;
        }
        int64_t run = pl->shape[last] - idx[last];
        if (run > end - i) run = end - i;
        pl->k(run, p, s, pl->aux);
        i += run;
        idx[last] += run;
        for (int d = last; d > 0 && idx[d] == pl->shape[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
}

void tg__ew_apply(tg_ctx *c, int nt, tg_tensor *const *t, tg__ew_kernel k, void *aux)
{
    TG_ASSERT(nt >= 1 && nt <= TG__MAX_OPERANDS);
    const tg_tensor *out = t[0];
    ew_plan pl;
    pl.nt = nt;
    pl.k = k;
    pl.aux = aux;
    int64_t total = tg__numel(out->ndim, out->shape);
    if (total == 0) return;

    /* Align every operand to the output's dims; drop size-1 output dims. */
    int nd = 0;
    for (int d = 0; d < out->ndim; d++) {
        if (out->shape[d] == 1) continue;
        pl.shape[nd] = out->shape[d];
        for (int j = 0; j < nt; j++) {
            const tg_tensor *x = t[j];
            int dx = d - (out->ndim - x->ndim);
            int64_t st = 0;
            if (dx >= 0 && x->shape[dx] != 1) st = x->stride[dx] * (int64_t)tg__esize(x->dtype);
            pl.stride[j][nd] = st;
        }
        nd++;
    }
    for (int j = 0; j < nt; j++) pl.base[j] = tg__ptr(t[j]);
    if (nd == 0) { /* one element */
        pl.shape[0] = 1;
        for (int j = 0; j < nt; j++) pl.stride[j][0] = 0;
        nd = 1;
    }

    /* Merge dim d into d+1 when every operand steps through them as one. */
    int m = nd - 1;
    int64_t shape[TG_MAX_DIMS], stride[TG__MAX_OPERANDS][TG_MAX_DIMS];
    int w = TG_MAX_DIMS - 1; /* write merged dims from the back */
    shape[w] = pl.shape[m];
    for (int j = 0; j < nt; j++) stride[j][w] = pl.stride[j][m];
    for (int d = m - 1; d >= 0; d--) {
        bool merge = true;
        for (int j = 0; j < nt && merge; j++)
            merge = pl.stride[j][d] == stride[j][w] * shape[w];
        if (merge) {
            shape[w] *= pl.shape[d];
        } else {
            w--;
            shape[w] = pl.shape[d];
            for (int j = 0; j < nt; j++) stride[j][w] = pl.stride[j][d];
        }
    }
    pl.nd = TG_MAX_DIMS - w;
    memcpy(pl.shape, shape + w, (size_t)pl.nd * sizeof(int64_t));
    for (int j = 0; j < nt; j++)
        memcpy(pl.stride[j], stride[j] + w, (size_t)pl.nd * sizeof(int64_t));

    tg__parallel_for(c, total, TG__PAR_GRAIN, ew_range, &pl);
}
