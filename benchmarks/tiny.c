/*
 * tiny.c - benchmark: the 2-3-1 network (tanh hidden layer), MSE, Adam
 * (lr 1e-3), batch 32 of fixed synthetic data. Measures what a step costs
 * when there is almost no arithmetic: the tape, the dispatch, the
 * optimizer's bookkeeping. Reference: torch_tiny.py.
 */
#include "bench.h"

#include <math.h>

typedef struct {
    tg_module *net;
    tg_optim *opt;
    tg_tensor *x, *y;
} tiny;

static void *setup(tg_ctx *pc, int64_t batch)
{
    static tiny s;
    tg_model *m = tg_model_new(pc);
    tg_module *net = tg_nn_sequential_new(m, "net");
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "fc1", 2, 3, true));
    tg_nn_sequential_add(net, tg_nn_tanh_new(m));
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "fc2", 3, 1, true));
    tg_adam_opts ao = tg_adam_defaults();
    tg_optim *opt = tg_adam_new(pc, tg_model_params(m), tg_model_nparams(m), &ao);
    tg_tensor *x = tg_tensor_new(pc, TG_F32, TG_SHAPE(batch, 2));
    tg_tensor *y = tg_tensor_new(pc, TG_F32, TG_SHAPE(batch, 1));
    if (tg_ctx_status(pc) != TG_OK) return NULL;
    bench_fill_uniform(tg_data(x), batch * 2, -1.0f, 1.0f, 3);
    bench_fill_uniform(tg_data(y), batch, -1.0f, 1.0f, 4);
    s = (tiny){net, opt, x, y};
    return &s;
}

static double step(void *st, tg_ctx *sc)
{
    tiny *s = st;
    tg_tensor *loss = tg_mse_loss(sc, tg_module_forward(sc, s->net, s->x), s->y);
    tg_optim_zero_grad(s->opt);
    if (tg_backward(sc, loss) != TG_OK || tg_optim_step(s->opt) != TG_OK) return NAN;
    return tg_item(loss);
}

static int gemms(void *st, int64_t batch, bench_gemm *g, int max)
{
    (void)st;
    int ng = 0;
    bench_linear_gemms(g, &ng, max, (int)batch, 2, 3, false);
    bench_linear_gemms(g, &ng, max, (int)batch, 3, 1, true);
    return ng;
}

int main(int argc, char **argv)
{
    const bench_workload w = {"tiny", 32, setup, step, gemms};
    return bench_main(argc, argv, &w);
}
