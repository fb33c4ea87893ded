/*
 * registry.c - the op registry generated from TG_OP_MAP, and the input
 * checks every op family shares.
 */
#include "ops_impl.h"

#include <string.h>

const tg__opdef tg__ops[TG_OP_COUNT] = {
#define TG__OP_DEF(E, name, arity, flags) [TG_OP_##E] = {#name, arity, flags, tg__##name##_backward},
    TG_OP_MAP(TG__OP_DEF)
#undef TG__OP_DEF
};

const tg__backward_acc_fn tg__ops_acc[TG_OP_COUNT] = {
    [TG_OP_SLICE] = tg__slice_backward_acc,
    [TG_OP_LAYER_NORM] = tg__layer_norm_backward_acc,
    [TG_OP_RMS_NORM] = tg__rms_norm_backward_acc,
};

const tg__backward_nograph_fn tg__ops_nograph[TG_OP_COUNT] = {
    [TG_OP_LINEAR] = tg__linear_backward_nograph,
    [TG_OP_LINEAR_ADD] = tg__linear_add_backward_nograph,
};

const uint32_t tg__ops_reads[TG_OP_COUNT] = {
    /* gradients from dout alone, or from shapes */
    [TG_OP_ADD] = TG__READS,
    [TG_OP_SUB] = TG__READS,
    [TG_OP_NEG] = TG__READS,
    [TG_OP_SCALE] = TG__READS,
    [TG_OP_ADD_SCALAR] = TG__READS,
    [TG_OP_RESHAPE] = TG__READS,
    [TG_OP_FLATTEN] = TG__READS,
    [TG_OP_SQUEEZE] = TG__READS,
    [TG_OP_UNSQUEEZE] = TG__READS,
    [TG_OP_PERMUTE] = TG__READS,
    [TG_OP_TRANSPOSE] = TG__READS,
    [TG_OP_EXPAND] = TG__READS,
    [TG_OP_CONTIGUOUS] = TG__READS,
    [TG_OP_SLICE] = TG__READS,
    [TG_OP_CONCAT] = TG__READS,
    [TG_OP_STACK] = TG__READS,
    [TG_OP_MAX_POOL2D] = TG__READS, /* its saved window codes */
    [TG_OP_DROPOUT] = TG__READS,    /* its saved mask */
    [TG_OP_SUM] = TG__READS,
    [TG_OP_MEAN] = TG__READS,
    /* from the input */
    [TG_OP_RELU] = TG__READS | TG__IN(0),
    [TG_OP_MUL] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_LINEAR] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_LINEAR_ADD] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_CONV2D] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_CROSS_ENTROPY] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_EMBEDDING] = TG__READS | TG__IN(1),
    [TG_OP_MATMUL] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_MSE_LOSS] = TG__READS | TG__IN(0) | TG__IN(1),
    [TG_OP_LOG] = TG__READS | TG__IN(0),
    [TG_OP_SQUARE] = TG__READS | TG__IN(0),
    [TG_OP_SIN] = TG__READS | TG__IN(0),
    [TG_OP_COS] = TG__READS | TG__IN(0),
    [TG_OP_ABS] = TG__READS | TG__IN(0),
    [TG_OP_POW_SCALAR] = TG__READS | TG__IN(0),
    [TG_OP_SILU] = TG__READS | TG__IN(0),
    [TG_OP_LEAKY_RELU] = TG__READS | TG__IN(0),
    /* from the output */
    [TG_OP_TANH] = TG__READS | TG__OUT,
    [TG_OP_SIGMOID] = TG__READS | TG__OUT,
    [TG_OP_EXP] = TG__READS | TG__OUT,
    [TG_OP_SQRT] = TG__READS | TG__OUT,
    [TG_OP_SOFTMAX] = TG__READS | TG__OUT,
    [TG_OP_LOG_SOFTMAX] = TG__READS | TG__OUT,
    [TG_OP_GELU] = TG__READS | TG__IN(0) | TG__OUT,
    [TG_OP_LSTM_CELL] = TG__READS | TG__IN(0) | TG__IN(1) | TG__OUT,
};

#define TG__OP_ONE(E, name, arity, flags) +1
_Static_assert(0 TG_OP_MAP(TG__OP_ONE) == TG_OP_COUNT, "one registry entry per op");
#undef TG__OP_ONE

int tg_op_count(void) { return TG_OP_COUNT; }

static bool op_valid(tg_op op) { return (int)op >= 0 && op < TG_OP_COUNT; }

const char *tg_op_name(tg_op op) { return op_valid(op) ? tg__ops[op].name : NULL; }
int tg_op_arity(tg_op op) { return op_valid(op) ? tg__ops[op].arity : -1; }
unsigned tg_op_flags(tg_op op) { return op_valid(op) ? tg__ops[op].flags : 0u; }

tg_op tg_op_from_name(const char *name)
{
    if (!name) return TG_OP_NONE;
    for (int i = 0; i < TG_OP_COUNT; i++)
        if (strcmp(tg__ops[i].name, name) == 0) return (tg_op)i;
    return TG_OP_NONE;
}

/* ---- shared checks ------------------------------------------------------ */

bool tg__check_inputs(tg_ctx *c, const char *fn, int n, tg_tensor *const *in)
{
    if (!tg__ok(c)) return false;
    c->api = fn;
    for (int i = 0; i < n; i++) {
        if (!in[i]) {
            tg__fail(c, TG_ERR_INVALID, "%s: input %d is NULL", fn, i);
            return false;
        }
        if (!tg__valid_dtype(in[i]->dtype) || !in[i]->st) {
            tg__fail(c, TG_ERR_INVALID, "%s: input %d is not a valid tensor", fn, i);
            return false;
        }
        if (in[i]->st->released) {
            char d[200];
            tg__fail(c, TG_ERR_MISUSE,
                     "%s: input %d (%s) was released by tg_backward_release; its memory holds "
                     "other data now (tg_retain it before the backward to keep it)",
                     fn, i, tg__describe(in[i], d, sizeof d));
            return false;
        }
    }
    return true;
}

bool tg__check_float(tg_ctx *c, const char *fn, const tg_tensor *t)
{
    if (tg__is_float(t->dtype)) return true;
    tg__fail(c, TG_ERR_DTYPE, "%s: dtype %s not supported (f32 or f64 only)", fn,
             tg_dtype_name(t->dtype));
    return false;
}

bool tg__check_same_dtype(tg_ctx *c, const char *fn, const tg_tensor *a, const tg_tensor *b)
{
    if (!tg__check_float(c, fn, a) || !tg__check_float(c, fn, b)) return false;
    if (a->dtype == b->dtype) return true;
    tg__fail(c, TG_ERR_DTYPE, "%s: dtypes %s and %s differ", fn, tg_dtype_name(a->dtype),
             tg_dtype_name(b->dtype));
    return false;
}

bool tg__norm_axis(tg_ctx *c, const char *fn, int ndim, int axis, int *out)
{
    int a = axis < 0 ? axis + ndim : axis;
    if (a < 0 || a >= ndim) {
        tg__fail(c, TG_ERR_INVALID, "%s: axis %d out of range for %d dims", fn, axis, ndim);
        return false;
    }
    *out = a;
    return true;
}
