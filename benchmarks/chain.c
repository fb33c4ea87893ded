/*
 * chain.c - benchmark: a chain of 1,000 elementwise ops on a one-element
 * tensor (cycling mul by a constant, add a constant, tanh, sin), forward
 * and backward; no optimizer. ms_median / 1000 is the per-op overhead of
 * recording an op and running its backward. "batch" is the chain length.
 * Reference: torch_chain.py.
 */
#include "bench.h"

#include <math.h>

typedef struct {
    tg_tensor *x, *a, *b;
    int64_t len;
} chain;

static void *setup(tg_ctx *pc, int64_t len)
{
    static chain s;
    tg_tensor *x = tg_full(pc, TG_F32, TG_SHAPE(1), 0.5);
    tg_tensor *a = tg_full(pc, TG_F32, TG_SHAPE(1), 0.999);
    tg_tensor *b = tg_full(pc, TG_F32, TG_SHAPE(1), 0.001);
    tg_set_requires_grad(x, true);
    if (tg_ctx_status(pc) != TG_OK) return NULL;
    s = (chain){x, a, b, len};
    return &s;
}

static double step(void *st, tg_ctx *sc)
{
    chain *s = st;
    tg_tensor *y = s->x;
    for (int64_t i = 0; i < s->len; i++) {
        switch (i % 4) {
        case 0: y = tg_mul(sc, y, s->a); break;
        case 1: y = tg_add(sc, y, s->b); break;
        case 2: y = tg_tanh(sc, y); break;
        default: y = tg_sin(sc, y); break;
        }
    }
    tg_zero_grad(s->x);
    if (tg_backward(sc, y) != TG_OK) return NAN;
    return tg_item(y);
}

int main(int argc, char **argv)
{
    const bench_workload w = {"chain", 1000, setup, step, NULL};
    return bench_main(argc, argv, &w);
}
