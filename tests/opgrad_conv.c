/*
 * opgrad_conv.c - the conv family's entries of the table-driven gradient
 * check (see tests/opgrad.h): outer, linear, convolutions and their
 * gradient kernels, pooling and its gradient kernels.
 *
 * Conv variants keep their options in iv: stride h, w, padding h, w,
 * dilation h, w, groups, then two sizes (the input size of an input_grad,
 * the kernel size of a weight_grad). conv1d: stride, padding, dilation,
 * groups. Pooling: kernel h, w, stride h, w (0: the kernel), padding h, w,
 * dilation h, w, then two sizes (the input size of an input_grad or an
 * unpool, the output size of an adaptive pooling), then count_include_pad.
 * tools/make_golden.py mirrors these conventions.
 */
#include "opgrad.h"

/* The variant's options, in a static buffer (the check runs one case at a
 * time, on one thread). */
static const tg_conv2d_opts *copts(const op_case *a)
{
    static tg_conv2d_opts o;
    o = tg_conv2d_defaults();
    if (a->niv >= 7) {
        o.stride[0] = a->iv[0];
        o.stride[1] = a->iv[1];
        o.padding[0] = a->iv[2];
        o.padding[1] = a->iv[3];
        o.dilation[0] = a->iv[4];
        o.dilation[1] = a->iv[5];
        o.groups = a->iv[6];
    }
    return &o;
}

static const tg_conv1d_opts *c1opts(const op_case *a)
{
    static tg_conv1d_opts o;
    o = tg_conv1d_defaults();
    if (a->niv >= 4) {
        o.stride = a->iv[0];
        o.padding = a->iv[1];
        o.dilation = a->iv[2];
        o.groups = a->iv[3];
    }
    return &o;
}

static const tg_pool2d_opts *popts(const op_case *a)
{
    static tg_pool2d_opts o;
    o = tg_pool2d_defaults();
    o.kernel[0] = a->iv[0];
    o.kernel[1] = a->iv[1];
    o.stride[0] = a->iv[2];
    o.stride[1] = a->iv[3];
    o.padding[0] = a->iv[4];
    o.padding[1] = a->iv[5];
    o.dilation[0] = a->iv[6];
    o.dilation[1] = a->iv[7];
    o.count_include_pad = a->iv[10] != 0;
    return &o;
}

/* clang-format off */
BUILD(b_outer, tg_outer(c, in[0], in[1]))
BUILD(b_linear, tg_linear(c, in[0], in[1], n > 2 ? in[2] : NULL))
BUILD(b_linear_relu, tg_linear_relu(c, in[0], in[1], n > 2 ? in[2] : NULL))
BUILD(b_gelu_linear, tg_gelu_linear(c, in[0], in[1], n > 2 ? in[2] : NULL))
/* four inputs: x, W, b, addend; three: x, W, addend (no bias) */
BUILD(b_linear_add, tg_linear_add(c, in[0], in[1], n > 3 ? in[2] : NULL, in[n - 1]))
BUILD(b_conv2d, tg_conv2d(c, in[0], in[1], n > 2 ? in[2] : NULL, copts(a)))
BUILD(b_conv2d_relu, tg_conv2d_relu(c, in[0], in[1], n > 2 ? in[2] : NULL, copts(a)))
BUILD(b_conv2d_input_grad,
      tg_conv2d_input_grad(c, in[0], in[1], a->iv[7], a->iv[8], copts(a)))
BUILD(b_conv2d_weight_grad,
      tg_conv2d_weight_grad(c, in[0], in[1], a->iv[7], a->iv[8], copts(a)))
BUILD(b_conv1d, tg_conv1d(c, in[0], in[1], n > 2 ? in[2] : NULL, c1opts(a)))
BUILD(b_max_pool2d, tg_max_pool2d(c, in[0], popts(a)))
BUILD(b_max_unpool2d, tg_max_unpool2d(c, in[0], in[1], a->iv[8], a->iv[9]))
BUILD(b_gather2d, tg_gather2d(c, in[0], in[1]))
BUILD(b_avg_pool2d, tg_avg_pool2d(c, in[0], popts(a)))
BUILD(b_avg_pool2d_input_grad, tg_avg_pool2d_input_grad(c, in[0], a->iv[8], a->iv[9], popts(a)))
BUILD(b_adaptive, tg_adaptive_avg_pool2d(c, in[0], a->iv[8], a->iv[9]))
BUILD(b_adaptive_input_grad, tg_adaptive_avg_pool2d_input_grad(c, in[0], a->iv[8], a->iv[9]))

/* pool options: kernel, stride, padding, dilation (h, w each), two sizes, count_include_pad */
#define PV(kh, kw, sh, sw, ph, pw, dh, dw, e0, e1, inc) \
    .iv = {kh, kw, sh, sw, ph, pw, dh, dw, e0, e1, inc}, .niv = 11

/* conv options: stride, padding, dilation (h, w each), groups, then two sizes */
#define CV(sh, sw, ph, pw, dh, dw, g, e0, e1) .iv = {sh, sw, ph, pw, dh, dw, g, e0, e1}, .niv = 9

static const op_entry conv_table[] = {
    [0] = {b_outer,
           {{.what = "[3] x [4]", .n_in = 2, .in = {S(3), S(4)}},
            {.what = "[1] x [5]", .n_in = 2, .in = {S(1), S(5)}}}},
    [1] = {b_linear,
           {{.what = "x [2,3,4] W [5,4] b [5]", .n_in = 3, .in = {S(2, 3, 4), S(5, 4), S(5)}},
            {.what = "x [3,4] W [2,4], no bias", .n_in = 2, .in = {S(3, 4), S(2, 4)}},
            {.what = "x [4] W [3,4] b [3]", .n_in = 3, .in = {S(4), S(3, 4), S(3)}}}},
    [2] = {b_conv2d,
           {{.what = "x [2,2,5,5] w [3,2,3,3] b [3]", .n_in = 3,
             .in = {S(2, 2, 5, 5), S(3, 2, 3, 3), S(3)}, CV(1, 1, 0, 0, 1, 1, 1, 0, 0)},
            {.what = "stride 2 padding 1", .n_in = 3,
             .in = {S(2, 2, 5, 5), S(2, 2, 3, 3), S(2)}, CV(2, 2, 1, 1, 1, 1, 1, 0, 0)},
            {.what = "dilation 2 groups 2, no bias", .n_in = 2,
             .in = {S(1, 4, 5, 5), S(4, 2, 2, 2)}, CV(1, 1, 0, 0, 2, 2, 2, 0, 0)},
            {.what = "stride (2,1) padding (0,2) kernel 2x3 dilation (1,2)", .n_in = 3,
             .in = {S(2, 2, 4, 5), S(3, 2, 2, 3), S(3)}, CV(2, 1, 0, 2, 1, 2, 1, 0, 0)}}},
    [3] = {b_conv2d_input_grad,
           {{.what = "dout [2,3,3,3] w [3,2,3,3] -> 5x5", .n_in = 2,
             .in = {S(2, 3, 3, 3), S(3, 2, 3, 3)}, CV(1, 1, 0, 0, 1, 1, 1, 5, 5)},
            {.what = "stride 2 padding 1 -> 6x5", .n_in = 2,
             .in = {S(2, 2, 3, 3), S(2, 2, 3, 3)}, CV(2, 2, 1, 1, 1, 1, 1, 6, 5)},
            {.what = "dilation 2 groups 2 -> 5x5", .n_in = 2,
             .in = {S(1, 4, 3, 3), S(4, 2, 2, 2)}, CV(1, 1, 0, 0, 2, 2, 2, 5, 5)}}},
    [4] = {b_conv2d_weight_grad,
           {{.what = "x [2,2,5,5] dout [2,3,3,3] -> 3x3", .n_in = 2,
             .in = {S(2, 2, 5, 5), S(2, 3, 3, 3)}, CV(1, 1, 0, 0, 1, 1, 1, 3, 3)},
            {.what = "stride 2 padding 1", .n_in = 2,
             .in = {S(2, 2, 5, 5), S(2, 2, 3, 3)}, CV(2, 2, 1, 1, 1, 1, 1, 3, 3)},
            {.what = "dilation 2 groups 2 -> 2x2", .n_in = 2,
             .in = {S(1, 4, 5, 5), S(1, 4, 3, 3)}, CV(1, 1, 0, 0, 2, 2, 2, 2, 2)}}},
    [5] = {b_conv1d,
           {{.what = "x [2,2,6] w [3,2,3] b [3]", .n_in = 3, .in = {S(2, 2, 6), S(3, 2, 3), S(3)}},
            {.what = "stride 2 padding 1 dilation 2 groups 2, no bias", .n_in = 2,
             .in = {S(2, 4, 7), S(2, 2, 2)}, .iv = {2, 1, 2, 2}, .niv = 4}}},
    [6] = {b_max_pool2d,
           {{.what = "[2,2,5,5] kernel 2", .n_in = 1, .in = {S(2, 2, 5, 5)},
             PV(2, 2, 0, 0, 0, 0, 1, 1, 0, 0, 1)},
            {.what = "kernel 3 stride 2 padding 1", .n_in = 1, .in = {S(2, 2, 5, 5)},
             PV(3, 3, 2, 2, 1, 1, 1, 1, 0, 0, 1)},
            {.what = "kernel 2 stride 1 dilation 2 (overlapping)", .n_in = 1,
             .in = {S(2, 2, 5, 5)}, PV(2, 2, 1, 1, 0, 0, 2, 2, 0, 0, 1)},
            {.what = "[1,3,6,5] kernel 3x2 stride 1x2 padding 1", .n_in = 1,
             .in = {S(1, 3, 6, 5)}, PV(3, 2, 1, 2, 1, 1, 1, 1, 0, 0, 1)}}},
    [7] = {b_max_unpool2d,
           {{.what = "[2,2,3,3] into 5x5 (repeated indices)", .n_in = 2,
             .in = {S(2, 2, 3, 3), S(2, 2, 3, 3)}, .dom = {D_NORMAL, D_INDEX}, .index_hi = 25,
             PV(0, 0, 0, 0, 0, 0, 0, 0, 5, 5, 0)},
            {.what = "[1,2,2,3] into 3x4", .n_in = 2, .in = {S(1, 2, 2, 3), S(1, 2, 2, 3)},
             .dom = {D_NORMAL, D_INDEX}, .index_hi = 12, PV(0, 0, 0, 0, 0, 0, 0, 0, 3, 4, 0)}}},
    [8] = {b_gather2d,
           {{.what = "[2,2,5,5] at [2,2,3,3]", .n_in = 2, .in = {S(2, 2, 5, 5), S(2, 2, 3, 3)},
             .dom = {D_NORMAL, D_INDEX}, .index_hi = 25},
            {.what = "[1,2,3,4] at [1,2,4,2]", .n_in = 2, .in = {S(1, 2, 3, 4), S(1, 2, 4, 2)},
             .dom = {D_NORMAL, D_INDEX}, .index_hi = 12}}},
    [9] = {b_avg_pool2d,
           {{.what = "[2,2,5,5] kernel 2", .n_in = 1, .in = {S(2, 2, 5, 5)},
             PV(2, 2, 0, 0, 0, 0, 1, 1, 0, 0, 1)},
            {.what = "kernel 3 stride 2 padding 1", .n_in = 1, .in = {S(2, 2, 5, 5)},
             PV(3, 3, 2, 2, 1, 1, 1, 1, 0, 0, 1)},
            {.what = "kernel 3 stride 2 padding 1, exclude pad", .n_in = 1,
             .in = {S(2, 2, 5, 5)}, PV(3, 3, 2, 2, 1, 1, 1, 1, 0, 0, 0)},
            {.what = "[1,3,6,5] kernel 3x2 stride 1x2 padding 1, exclude pad", .n_in = 1,
             .in = {S(1, 3, 6, 5)}, PV(3, 2, 1, 2, 1, 1, 1, 1, 0, 0, 0)}}},
    [10] = {b_avg_pool2d_input_grad,
            {{.what = "dout [2,2,3,3] kernel 3 stride 2 padding 1 -> 5x5", .n_in = 1,
              .in = {S(2, 2, 3, 3)}, PV(3, 3, 2, 2, 1, 1, 1, 1, 5, 5, 1)},
             {.what = "exclude pad -> 6x5", .n_in = 1, .in = {S(2, 2, 3, 3)},
              PV(3, 3, 2, 2, 1, 1, 1, 1, 6, 5, 0)},
             {.what = "dout [1,2,2,2] kernel 2 -> 5x4", .n_in = 1, .in = {S(1, 2, 2, 2)},
              PV(2, 2, 0, 0, 0, 0, 1, 1, 5, 4, 1)}}},
    [11] = {b_adaptive,
            {{.what = "[2,2,5,5] -> 1x1", .n_in = 1, .in = {S(2, 2, 5, 5)},
              PV(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0)},
             {.what = "[2,2,5,7] -> 3x2", .n_in = 1, .in = {S(2, 2, 5, 7)},
              PV(0, 0, 0, 0, 0, 0, 0, 0, 3, 2, 0)},
             {.what = "[1,2,3,3] -> 4x5 (upsampling)", .n_in = 1, .in = {S(1, 2, 3, 3)},
              PV(0, 0, 0, 0, 0, 0, 0, 0, 4, 5, 0)}}},
    [12] = {b_adaptive_input_grad,
            {{.what = "dout [2,2,1,1] -> 5x5", .n_in = 1, .in = {S(2, 2, 1, 1)},
              PV(0, 0, 0, 0, 0, 0, 0, 0, 5, 5, 0)},
             {.what = "dout [2,2,3,2] -> 5x7", .n_in = 1, .in = {S(2, 2, 3, 2)},
              PV(0, 0, 0, 0, 0, 0, 0, 0, 5, 7, 0)}}},
    [13] = {b_linear_add,
            {{.what = "x [2,3,4] W [5,4] b [5] addend [2,3,5]", .n_in = 4,
              .in = {S(2, 3, 4), S(5, 4), S(5), S(2, 3, 5)}, .has_bc = true,
              .bc = {S(2, 3, 4), S(5, 4), S(5), S(3, 1)}},
             {.what = "x [3,4] W [2,4] addend [3,2], no bias", .n_in = 3,
              .in = {S(3, 4), S(2, 4), S(3, 2)}, .has_bc = true,
              .bc = {S(3, 4), S(2, 4), S(2)}},
             {.what = "x [4] W [3,4] b [3] addend [3]", .n_in = 4,
              .in = {S(4), S(3, 4), S(3), S(3)}}}},
    /* about half the outputs clamped; a pre-activation within the check's
     * step of 0 is a 1e-6 chance per element */
    [14] = {b_conv2d_relu,
            {{.what = "x [2,2,5,5] w [3,2,3,3] b [3]", .n_in = 3,
              .in = {S(2, 2, 5, 5), S(3, 2, 3, 3), S(3)}, CV(1, 1, 0, 0, 1, 1, 1, 0, 0)},
             {.what = "stride 2 padding 1, no bias", .n_in = 2,
              .in = {S(2, 2, 5, 5), S(2, 2, 3, 3)}, CV(2, 2, 1, 1, 1, 1, 1, 0, 0)},
             {.what = "dilation 2 groups 2", .n_in = 3,
              .in = {S(1, 4, 5, 5), S(4, 2, 2, 2), S(4)}, CV(1, 1, 0, 0, 2, 2, 2, 0, 0)}}},
    [15] = {b_gelu_linear,
            {{.what = "x [2,3,4] W [5,4] b [5]", .n_in = 3, .in = {S(2, 3, 4), S(5, 4), S(5)}},
             {.what = "x [3,4] W [2,4], no bias", .n_in = 2, .in = {S(3, 4), S(2, 4)}},
             {.what = "x [4] W [3,4] b [3]", .n_in = 3, .in = {S(4), S(3, 4), S(3)}}}},
    /* about half the outputs clamped; a pre-activation within the check's
     * step of 0 is a 1e-6 chance per element */
    [16] = {b_linear_relu,
            {{.what = "x [2,3,4] W [5,4] b [5]", .n_in = 3, .in = {S(2, 3, 4), S(5, 4), S(5)}},
             {.what = "x [3,4] W [2,4], no bias", .n_in = 2, .in = {S(3, 4), S(2, 4)}},
             {.what = "x [4] W [3,4] b [3]", .n_in = 3, .in = {S(4), S(3, 4), S(3)}}}},
};
/* clang-format on */

void opgrad_fill_conv(op_entry *table)
{
    table[TG_OP_OUTER] = conv_table[0];
    table[TG_OP_LINEAR] = conv_table[1];
    table[TG_OP_LINEAR_ADD] = conv_table[13];
    table[TG_OP_GELU_LINEAR] = conv_table[15];
    table[TG_OP_LINEAR_RELU] = conv_table[16];
    table[TG_OP_CONV2D] = conv_table[2];
    table[TG_OP_CONV2D_RELU] = conv_table[14];
    table[TG_OP_CONV2D_INPUT_GRAD] = conv_table[3];
    table[TG_OP_CONV2D_WEIGHT_GRAD] = conv_table[4];
    table[TG_OP_CONV1D] = conv_table[5];
    table[TG_OP_MAX_POOL2D] = conv_table[6];
    table[TG_OP_MAX_UNPOOL2D] = conv_table[7];
    table[TG_OP_GATHER2D] = conv_table[8];
    table[TG_OP_AVG_POOL2D] = conv_table[9];
    table[TG_OP_AVG_POOL2D_INPUT_GRAD] = conv_table[10];
    table[TG_OP_ADAPTIVE_AVG_POOL2D] = conv_table[11];
    table[TG_OP_ADAPTIVE_AVG_POOL2D_INPUT_GRAD] = conv_table[12];
}
