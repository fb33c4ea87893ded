/*
 * mlp.c - benchmark: MLP 784-512-512-10, ReLU, cross-entropy, Adam
 * (lr 1e-3), on fixed synthetic MNIST-shaped data; batch 128 by default
 * (the driver also runs 32 and 1024). Reference: torch_mlp.py.
 */
#include "bench.h"

#include <math.h>

typedef struct {
    tg_module *net;
    tg_optim *opt;
    tg_tensor *x, *y;
} mlp;

static void *setup(tg_ctx *pc, int64_t batch)
{
    tg_model *m = tg_model_new(pc);
    tg_module *net = tg_nn_sequential_new(m, "net");
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "fc1", 784, 512, true));
    tg_nn_sequential_add(net, tg_nn_relu_new(m));
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "fc2", 512, 512, true));
    tg_nn_sequential_add(net, tg_nn_relu_new(m));
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "fc3", 512, 10, true));
    tg_adam_opts ao = tg_adam_defaults();
    tg_optim *opt = tg_adam_new(pc, tg_model_params(m), tg_model_nparams(m), &ao);
    tg_tensor *x = tg_tensor_new(pc, TG_F32, TG_SHAPE(batch, 784));
    tg_tensor *y = tg_tensor_new(pc, TG_I64, TG_SHAPE(batch));
    static mlp s;
    if (tg_ctx_status(pc) != TG_OK) return NULL;
    bench_fill_uniform(tg_data(x), batch * 784, 0.0f, 1.0f, 1);
    bench_fill_labels(tg_data(y), batch, 10, 2);
    s = (mlp){net, opt, x, y};
    return &s;
}

static double step(void *st, tg_ctx *sc)
{
    mlp *s = st;
    tg_tensor *loss = tg_cross_entropy(sc, tg_module_forward(sc, s->net, s->x), s->y);
    if (bench_step(sc, loss, s->opt) != TG_OK) return NAN;
    return tg_item(loss);
}

/* The 8 GEMMs of the step: 3 forward, 3 weight gradients, 2 input
 * gradients (the data needs none). */
static int gemms(void *st, int64_t batch, bench_gemm *g, int max)
{
    (void)st;
    int ng = 0, b = (int)batch;
    bench_linear_gemms(g, &ng, max, b, 784, 512, false);
    bench_linear_gemms(g, &ng, max, b, 512, 512, true);
    bench_linear_gemms(g, &ng, max, b, 512, 10, true);
    return ng;
}

int main(int argc, char **argv)
{
    const bench_workload w = {"mlp", 128, setup, step, gemms};
    return bench_main(argc, argv, &w);
}
