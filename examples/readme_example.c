/* readme_example.c - the example of README.md, kept compiling and running by the build. */
#include <tapegrad.h>
#include <stdio.h>

int main(void)
{
    tg_ctx *params = tg_ctx_new(), *step = tg_ctx_new(); /* two lifetimes */
    tg_tensor *w = tg_randn(params, TG_F32, TG_SHAPE(4, 3));
    tg_tensor *b = tg_tensor_new(params, TG_F32, TG_SHAPE(3));  /* zeros */
    tg_set_requires_grad(w, true);
    tg_set_requires_grad(b, true);

    tg_tensor *x = tg_randn(step, TG_F32, TG_SHAPE(8, 4));
    tg_tensor *labels = tg_tensor_from(step, TG_I64, TG_SHAPE(8),
                                       (int64_t[]){0, 1, 2, 0, 1, 2, 0, 1});
    tg_tensor *logits = tg_add(step, tg_matmul(step, x, w), b); /* b broadcasts */
    tg_tensor *loss = tg_cross_entropy(step, logits, labels);
    if (tg_backward(step, loss) != TG_OK) {           /* one check, at the end */
        fprintf(stderr, "%s\n", tg_ctx_errmsg(step));
        return 1;
    }
    printf("loss %.4f  dL/db[0] %.4f\n", tg_item(loss), tg_get(tg_grad(b), (int64_t[]){0}));
    tg_ctx_reset(step);            /* O(1); the grads live in params */
    tg_ctx_free(step);
    tg_ctx_free(params);
    return 0;
}
