/*
 * cnn.c - benchmark: conv3x3 1->32 pad 1, ReLU, maxpool 2, conv3x3 32->64
 * pad 1, ReLU, maxpool 2, linear 3136->10, cross-entropy, Adam (lr 1e-3),
 * batch 64 of fixed synthetic 28x28 images. Reference: torch_cnn.py.
 */
#include "bench.h"

#include <math.h>

typedef struct {
    tg_module *net;
    tg_optim *opt;
    tg_tensor *x, *y;
} cnn;

static void *setup(tg_ctx *pc, int64_t batch)
{
    static cnn s;
    tg_model *m = tg_model_new(pc);
    tg_conv2d_opts co = tg_conv2d_defaults();
    co.padding[0] = co.padding[1] = 1;
    tg_pool2d_opts po = tg_pool2d_defaults();
    po.kernel[0] = po.kernel[1] = 2;
    tg_module *net = tg_nn_sequential_new(m, "net");
    tg_nn_sequential_add(net, tg_nn_conv2d_new(m, "conv1", 1, 32, 3, 3, &co, true));
    tg_nn_sequential_add(net, tg_nn_relu_new(m));
    tg_nn_sequential_add(net, tg_nn_max_pool2d_new(m, "pool1", &po));
    tg_nn_sequential_add(net, tg_nn_conv2d_new(m, "conv2", 32, 64, 3, 3, &co, true));
    tg_nn_sequential_add(net, tg_nn_relu_new(m));
    tg_nn_sequential_add(net, tg_nn_max_pool2d_new(m, "pool2", &po));
    tg_nn_sequential_add(net, tg_nn_flatten_new(m, 1, -1));
    tg_nn_sequential_add(net, tg_nn_linear_new(m, "fc", 3136, 10, true));
    tg_adam_opts ao = tg_adam_defaults();
    tg_optim *opt = tg_adam_new(pc, tg_model_params(m), tg_model_nparams(m), &ao);
    tg_tensor *x = tg_tensor_new(pc, TG_F32, TG_SHAPE(batch, 1, 28, 28));
    tg_tensor *y = tg_tensor_new(pc, TG_I64, TG_SHAPE(batch));
    if (tg_ctx_status(pc) != TG_OK) return NULL;
    bench_fill_uniform(tg_data(x), batch * 784, 0.0f, 1.0f, 5);
    bench_fill_labels(tg_data(y), batch, 10, 6);
    s = (cnn){net, opt, x, y};
    return &s;
}

static double step(void *st, tg_ctx *sc)
{
    cnn *s = st;
    tg_tensor *loss = tg_cross_entropy(sc, tg_module_forward(sc, s->net, s->x), s->y);
    if (bench_step(sc, loss, s->opt) != TG_OK) return NAN;
    return tg_item(loss);
}

/* im2col + GEMM per image: conv1 forward and weight gradient (the images
 * need no gradient), conv2 forward, input and weight gradients; then the
 * linear layer. */
static int gemms(void *st, int64_t batch, bench_gemm *g, int max)
{
    (void)st;
    int ng = 0;
    for (int64_t i = 0; i < batch; i++) {
        bench_add_gemm(g, &ng, max, 32, 784, 9, 0, 0, 0.0f);
        bench_add_gemm(g, &ng, max, 32, 9, 784, 0, 1, 0.0f);
        bench_add_gemm(g, &ng, max, 64, 196, 288, 0, 0, 0.0f);
        bench_add_gemm(g, &ng, max, 288, 196, 64, 1, 0, 0.0f);
        bench_add_gemm(g, &ng, max, 64, 288, 196, 0, 1, 0.0f);
    }
    bench_linear_gemms(g, &ng, max, (int)batch, 3136, 10, true);
    return ng;
}

int main(int argc, char **argv)
{
    const bench_workload w = {"cnn", 64, setup, step, gemms};
    return bench_main(argc, argv, &w);
}
