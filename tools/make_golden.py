#!/usr/bin/env python3
"""make_golden.py - PyTorch golden data for tapegrad's golden suite.

The data in tests/data/golden/ was made by this script with PyTorch 1.13.1
on the CPU (Debian 12's python3-torch 1.13.1+dfsg-4, whose torch.__version__
reads "1.13.0a0"). tests/test_golden.c compares tapegrad against it; that
suite needs no Python.

Regenerating (after an op's table entry changes, or for a new op):

    apt-get install -y python3-torch          # PyPI's torch pulls CUDA
    meson setup build && ninja -C build
    /usr/bin/python3 tools/make_golden.py --build build             # every op
    /usr/bin/python3 tools/make_golden.py --build build gelu max    # some ops

The cases are the gradient-check table's (tests/test_opgrad.c and
tests/opgrad_<family>.c), so the table stays the one description of each
op's cases: the script runs `TG_GOLDEN_SPEC=<tmp> <build>/tests/test_main
golden`, which writes every entry's variants (shapes, domains, constant
arguments: every field of op_case) as JSON lines, and mirrors each op's C
builder in torch below (MIRRORS: op name -> function of the variant `a`
and the input tensors, reading the same constants the builder reads). A new
op needs a line in MIRRORS; the script stops and names any op without one.

For every variant k of an op, in f64 and then in f32 (the f64 inputs
rounded to f32), it makes inputs of the variant's domains: of its
contiguous shapes ("contig"), of its broadcast shapes when it has a
broadcast case ("bcast"), and for the ops in EDGES, contiguous inputs with
chosen elements at kinks, ties, zeros and extremes ("edge"). It runs the
mirror, draws dout of the output's shape and stores the inputs, the
output, dout and the gradient of sum(dout * out) with respect to every
input that requires grad (floating inputs whose domain is not *_const,
mask, labels or index). No-grad ops (flag TG_OPF_NOGRAD, argmax...) store
the output only. Random ops (TG_OPF_RANDOM, dropout) store torch's own
draw; the suite checks the op's law instead of the values. Random numbers
come from a generator seeded by the op's name, so regenerating one op
leaves every other file byte-identical.

File format, tests/data/golden/<op>.txt (white-space separated tokens;
'#' starts a comment running to the end of the line):

    tapegrad-golden 1
    op <name>
    spec <k> <JSON description of variant k, to the end of the line>
    case <k> <contig|bcast|edge> <f64|f32> <n_in>
    in <i> <f64|f32|i64> <requires grad 0|1> <ndim> <dims...> <values...>
    after <i> <ndim> <dims...> <values...>     (input i after the op: running stats)
    out <f64|f32|i64> <ndim> <dims...> <values...>
    dout <ndim> <dims...> <values...>          (absent for no-grad ops)
    grad <i> <ndim> <dims...> <values...>      (each input with grad 1)
    end

Floating values are exact: Python's float.hex() ("0x1.8000000000000p+1",
read back by C's strtod), "nan", "inf", "-inf"; I64 values are decimal.
The spec line is the C suite's own description of the variant, stored
verbatim: when the table entry changes, the suite sees the data is stale.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import types
import warnings
import zlib

import torch
import torch.nn.functional as F

TORCH_NOTE = "PyTorch %s (Debian python3-torch 1.13.1), CPU" % torch.__version__

# tapegrad op flags (include/tapegrad/ops.h)
OPF_NOGRAD = 0x20
OPF_RANDOM = 0x80

NOGRAD_DOMS = {"labels", "index", "mask", "normal_const", "pos_const", "unit_const"}
INT_DOMS = {"labels", "index"}


# ---- helpers for the mirrors -------------------------------------------------


def axes_of(a):
    """The axes of a reduction variant: None for 'everything' (naxes < 0)."""
    return None if a.naxes < 0 else list(a.axes[: a.naxes])


def t_sum(a, x):
    ax = axes_of(a)
    if ax is None:
        return x.sum()
    if not ax:
        return x * 1
    return x.sum(dim=ax, keepdim=a.keepdim)


def t_mean(a, x):
    ax = axes_of(a)
    if ax is None:
        return x.mean()
    if not ax:
        return x * 1
    return x.mean(dim=ax, keepdim=a.keepdim)


def t_slice(a, x):
    ax = a.axis % x.dim()
    idx = [slice(None)] * x.dim()
    idx[ax] = slice(a.start, a.stop, a.step)
    return x[tuple(idx)]


def t_slice_scatter(a, x):
    to = list(a.to)
    ax = a.axis % len(to)
    start = a.start % to[ax] if a.start < 0 else a.start
    z = torch.zeros(to, dtype=x.dtype)
    end = start + (x.shape[ax] - 1) * a.step + 1
    return torch.slice_scatter(z, x, dim=ax, start=start, end=end, step=a.step)


def t_prod(a, x):
    """prod over several axes (torch.prod takes one): one axis at a time."""
    ax = axes_of(a)
    if ax is None:
        ax = list(range(x.dim()))
    for d in sorted((d % x.dim() for d in ax), reverse=True):
        x = x.prod(dim=d, keepdim=a.keepdim)
    return x


def red(a):
    """The tg_reduction in iv[0] as torch's name."""
    return ("mean", "sum", "none", "batchmean")[a.iv[0]]


def conv2d_opts(a):
    """iv: stride h, w, padding h, w, dilation h, w, groups (when niv >= 7)."""
    if a.niv < 7:
        return {}
    iv = a.iv
    return dict(stride=(iv[0], iv[1]), padding=(iv[2], iv[3]), dilation=(iv[4], iv[5]),
                groups=iv[6])


def conv1d_opts(a):
    """iv: stride, padding, dilation, groups (when niv >= 4)."""
    if a.niv < 4:
        return {}
    return dict(stride=a.iv[0], padding=a.iv[1], dilation=a.iv[2], groups=a.iv[3])


def t_conv2d_input_grad(a, dout, w):
    """d/dx <dout, conv2d(x, w)> for x of size (N, C, iv[7], iv[8]): the
    transposed convolution, differentiable in dout and w (create_graph)."""
    o = conv2d_opts(a)
    groups = o.get("groups", 1)
    x = torch.zeros((dout.shape[0], w.shape[1] * groups, a.iv[7], a.iv[8]), dtype=dout.dtype,
                    requires_grad=True)
    y = F.conv2d(x, w, **o)
    return torch.autograd.grad(y, x, dout, create_graph=True)[0]


def t_conv2d_weight_grad(a, x, dout):
    """d/dw <dout, conv2d(x, w)> for w of size (OC, C / groups, iv[7], iv[8])."""
    o = conv2d_opts(a)
    groups = o.get("groups", 1)
    w = torch.zeros((dout.shape[1], x.shape[1] // groups, a.iv[7], a.iv[8]), dtype=x.dtype,
                    requires_grad=True)
    y = F.conv2d(x, w, **o)
    return torch.autograd.grad(y, w, dout, create_graph=True)[0]


def pool2d_opts(a, dilation=False):
    """iv: kernel h, w, stride h, w (0: the kernel), padding h, w, dilation h, w."""
    iv = a.iv
    o = dict(kernel_size=(iv[0], iv[1]), stride=(iv[2] or iv[0], iv[3] or iv[1]),
             padding=(iv[4], iv[5]))
    if dilation:
        o["dilation"] = (iv[6], iv[7])
    return o


def t_max_unpool2d(a, x, idx):
    """Scatter-add of x into zero planes of iv[8] x iv[9] at flat positions
    idx (tapegrad adds repeated indices; torch's max_unpool2d would not)."""
    n, c = x.shape[0], x.shape[1]
    z = torch.zeros((n, c, a.iv[8] * a.iv[9]), dtype=x.dtype)
    return z.scatter_add(2, idx.flatten(2), x.flatten(2)).reshape(n, c, a.iv[8], a.iv[9])


def t_avg_pool2d_input_grad(a, dout):
    """d/dx <dout, avg_pool2d(x)> for x of size (N, C, iv[8], iv[9])."""
    x = torch.zeros((dout.shape[0], dout.shape[1], a.iv[8], a.iv[9]), dtype=dout.dtype,
                    requires_grad=True)
    y = F.avg_pool2d(x, **pool2d_opts(a), count_include_pad=a.iv[10] != 0)
    return torch.autograd.grad(y, x, dout, create_graph=True)[0]


def t_adaptive_avg_pool2d_input_grad(a, dout):
    """d/dx <dout, adaptive_avg_pool2d(x)> for x of size (N, C, iv[8], iv[9])."""
    x = torch.zeros((dout.shape[0], dout.shape[1], a.iv[8], a.iv[9]), dtype=dout.dtype,
                    requires_grad=True)
    y = F.adaptive_avg_pool2d(x, tuple(dout.shape[2:]))
    return torch.autograd.grad(y, x, dout, create_graph=True)[0]


def t_lstm_cell(a, gates, cell):
    i, f, g, o = gates.chunk(4, 1)
    c2 = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.stack([torch.sigmoid(o) * torch.tanh(c2), c2])


def t_lstm(a, x, w_ih, w_hh, *rest):
    """PyTorch's own cell (torch.lstm_cell) step by step: the hidden states,
    or with TG_LSTM_CELLS (iv[0] & 1) y[0] the hidden states and y[1] the
    cell states (nn.LSTM returns only the last cell)."""
    b_ih, b_hh, h, c = (list(rest) + [None] * 4)[:4]
    B, H = x.shape[0], w_hh.shape[1]
    h = h if h is not None else torch.zeros(B, H, dtype=x.dtype)
    c = c if c is not None else torch.zeros(B, H, dtype=x.dtype)
    hs, cs = [], []
    for t in range(x.shape[1]):
        h, c = torch.lstm_cell(x[:, t], (h, c), w_ih, w_hh, b_ih, b_hh)
        hs.append(h)
        cs.append(c)
    if a.iv[0] & 1:
        return torch.stack([torch.stack(hs, 1), torch.stack(cs, 1)])
    return torch.stack(hs, 1)


def t_sdpa(a, q, k, v, *m):
    scale = a.f[0] if a.f[0] != 0 else 1.0 / q.shape[-1] ** 0.5
    s = q @ k.transpose(-2, -1) * scale
    if m:
        s = s + m[0]
    if a.flag:
        lq, lk = s.shape[-2], s.shape[-1]
        cut = torch.ones(lq, lk, dtype=torch.bool).triu(1)
        s = s.masked_fill(cut, float("-inf"))
    return torch.softmax(s, -1) @ v


def t_layer_norm(a, x, *wb):
    shape = list(a.iv[: a.niv])
    if a.flag:  # the second input is the bias
        return F.layer_norm(x, shape, None, wb[0], a.f[0])
    w = wb[0] if len(wb) > 0 else None
    b = wb[1] if len(wb) > 1 else None
    return F.layer_norm(x, shape, w, b, a.f[0])


def t_rms_norm(a, x, w=None):
    """x / sqrt(mean(x^2) + eps) * w over the last niv dims (torch 1.13 has
    no rms_norm; this is torch 2.4's F.rms_norm written out)."""
    dims = list(range(-a.niv, 0))
    y = x * torch.rsqrt(torch.mean(x * x, dim=dims, keepdim=True) + a.f[0])
    return y * w if w is not None else y


def t_batch_norm(a, x, w=None, b=None, rm=None, rv=None):
    """F.batch_norm; the running statistics (inputs 3, 4) are updated in
    place in training, which the file records as 'after' values."""
    return F.batch_norm(x, rm, rv, w, b, training=a.flag, momentum=a.f[1], eps=a.f[0])


def reduce_loss(a, l):
    r = red(a)
    return l.mean() if r == "mean" else l.sum() if r == "sum" else l


def t_bce_with_logits(a, z, t, pw=None):
    """F.binary_cross_entropy_with_logits; with pos_weight written out as
    torch computes it, because torch 1.13 gives pos_weight no gradient."""
    if pw is None:
        return F.binary_cross_entropy_with_logits(z, t, reduction=red(a))
    w = (pw - 1) * t + 1
    l = (1 - t) * z + w * (torch.log1p(torch.exp(-z.abs())) + torch.clamp(-z, min=0))
    ref = F.binary_cross_entropy_with_logits(z.detach(), t.detach(), reduction=red(a),
                                             pos_weight=pw.detach())
    return checked(reduce_loss(a, l), ref)


def class_loss(a, lp, y, w, smoothing):
    """PyTorch's nll_loss / cross_entropy (label smoothing, class weights,
    ignore_index, reductions) written out with differentiable ops: torch
    1.13 gives class weights no gradient, tapegrad does. lp holds
    log-probabilities [N, C, *], y labels [N, *], w weights [C] or None."""
    keep = y != a.iv[1]
    safe = torch.where(keep, y, torch.zeros_like(y))
    ones = torch.ones(lp.shape[1], dtype=lp.dtype)
    wc = w if w is not None else ones
    wy = wc[safe] * keep.to(lp.dtype)  # weight of each sample's label, 0 if ignored
    l = -(1 - smoothing) * wy * lp.gather(1, safe.unsqueeze(1)).squeeze(1)
    if smoothing:
        shape = [1, -1] + [1] * (lp.dim() - 2)
        s = -(wc.reshape(shape) * lp).sum(1) * keep.to(lp.dtype)
        l = l + smoothing / lp.shape[1] * s
    r = red(a)
    if r == "none":
        return l
    if r == "sum":
        return l.sum()
    if wy.sum().item() == 0:  # every sample ignored: NaN with zero gradients, as torch's own
        return l.sum() + float("nan")
    return l.sum() / wy.sum()


def checked(mine, ref):
    """mine, after checking it against torch's own function ref (run with
    detached inputs) in the forward; ref is None where torch cannot run."""
    if ref is not None:
        torch.testing.assert_close(mine.detach(), ref, rtol=1e-6, atol=1e-6, equal_nan=True)
    return mine


def t_nll_loss(a, x, y, w=None):
    if w is None or not w.requires_grad:
        return F.nll_loss(x, y, weight=w, ignore_index=a.iv[1], reduction=red(a))
    ref = F.nll_loss(x.detach(), y, weight=w.detach(), ignore_index=a.iv[1], reduction=red(a))
    return checked(class_loss(a, x, y, w, 0.0), ref)


def t_cross_entropy_ex(a, x, y, w=None):
    kw = dict(ignore_index=a.iv[1], reduction=red(a), label_smoothing=a.f[0])
    if w is None or not w.requires_grad:
        return F.cross_entropy(x, y, weight=w, **kw)
    ref = F.cross_entropy(x.detach(), y, weight=w.detach(), **kw)
    return checked(class_loss(a, torch.log_softmax(x, 1), y, w, a.f[0]), ref)


# op name -> f(a, *inputs): the torch twin of the op's C builder (the
# builders of tests/test_opgrad.c and tests/opgrad_<family>.c). `a` holds
# the variant's fields under their C names (a.s, a.axes, a.to, a.f, a.iv...).
MIRRORS = {
    # core: elementwise
    "add": lambda a, x, y: x + y,
    "sub": lambda a, x, y: x - y,
    "mul": lambda a, x, y: x * y,
    "div": lambda a, x, y: x / y,
    "neg": lambda a, x: -x,
    "scale": lambda a, x: x * a.s,
    "add_scalar": lambda a, x: x + a.s,
    "pow_scalar": lambda a, x: torch.pow(x, a.s),
    "exp": lambda a, x: torch.exp(x),
    "log": lambda a, x: torch.log(x),
    "sqrt": lambda a, x: torch.sqrt(x),
    "tanh": lambda a, x: torch.tanh(x),
    "sigmoid": lambda a, x: torch.sigmoid(x),
    "relu": lambda a, x: torch.relu(x),
    # core: reductions
    "sum": t_sum,
    "mean": t_mean,
    "softmax": lambda a, x: torch.softmax(x, dim=a.axis),
    "log_softmax": lambda a, x: torch.log_softmax(x, dim=a.axis),
    # core: linear algebra, shapes
    "matmul": lambda a, x, y: torch.matmul(x, y),
    "reshape": lambda a, x: x.reshape(list(a.to)),
    "transpose": lambda a, x: x.transpose(a.d0, a.d1),
    "permute": lambda a, x: x.permute(list(a.perm[: x.dim()])),
    "expand": lambda a, x: x.expand(list(a.to)),
    "slice": t_slice,
    "slice_scatter": t_slice_scatter,
    "contiguous": lambda a, x: x.clone(),
    # core: losses
    "mse_loss": lambda a, x, y: F.mse_loss(x, y, reduction="mean" if a.flag else red(a)),
    "cross_entropy": lambda a, x, y: F.cross_entropy(x, y),
    # math: elementwise (tests/opgrad_math.c)
    "abs": lambda a, x: torch.abs(x),
    "rsqrt": lambda a, x: torch.rsqrt(x),
    "log1p": lambda a, x: torch.log1p(x),
    "expm1": lambda a, x: torch.expm1(x),
    "sin": lambda a, x: torch.sin(x),
    "cos": lambda a, x: torch.cos(x),
    "square": lambda a, x: torch.square(x),
    "erf": lambda a, x: torch.erf(x),
    "clamp": lambda a, x: torch.clamp(x, min=a.f[0], max=a.f[1]),
    "maximum": lambda a, x, y: torch.maximum(x, y),
    "minimum": lambda a, x, y: torch.minimum(x, y),
    "where": lambda a, cond, x, y: torch.where(cond != 0, x, y),
    "pow": lambda a, x, y: torch.pow(x, y),
    # math: activations
    "leaky_relu": lambda a, x: F.leaky_relu(x, a.f[0]),
    "elu": lambda a, x: F.elu(x, alpha=a.f[0]),
    "gelu": lambda a, x: F.gelu(x),
    "gelu_tanh": lambda a, x: F.gelu(x, approximate="tanh"),
    "silu": lambda a, x: F.silu(x),
    "softplus": lambda a, x: F.softplus(x, beta=a.f[0], threshold=a.f[1]),
    "hardtanh": lambda a, x: F.hardtanh(x, a.f[0], a.f[1]),
    "log_sigmoid": lambda a, x: F.logsigmoid(x),
    # custom (tests/opgrad_custom.c): the table's user-defined op "poly"
    "custom": lambda a, x, y: x**3 * y + torch.exp(y),
    # reduce (tests/opgrad_reduce.c)
    "max": lambda a, x: torch.amax(x, dim=axes_of(a), keepdim=a.keepdim),
    "min": lambda a, x: torch.amin(x, dim=axes_of(a), keepdim=a.keepdim),
    "argmax": lambda a, x: torch.argmax(x, dim=a.axis, keepdim=a.keepdim),
    "argmin": lambda a, x: torch.argmin(x, dim=a.axis, keepdim=a.keepdim),
    "prod": t_prod,
    "var": lambda a, x: torch.var(x, dim=axes_of(a), unbiased=a.flag, keepdim=a.keepdim),
    "std": lambda a, x: torch.std(x, dim=axes_of(a), unbiased=a.flag, keepdim=a.keepdim),
    "logsumexp": lambda a, x: torch.logsumexp(x, dim=axes_of(a), keepdim=a.keepdim),
    "norm": lambda a, x: torch.linalg.vector_norm(x, ord=a.s, dim=axes_of(a), keepdim=a.keepdim),
    # index (tests/opgrad_index.c)
    "concat": lambda a, *xs: torch.cat(xs, dim=a.axis),
    "stack": lambda a, *xs: torch.stack(xs, dim=a.axis),
    "squeeze": lambda a, x: x.squeeze() if a.flag else x.squeeze(a.axis),
    "unsqueeze": lambda a, x: x.unsqueeze(a.axis),
    "flatten": lambda a, x: torch.flatten(x, a.iv[0], a.iv[1]),
    "pad": lambda a, x: F.pad(x, list(a.iv[: a.niv]), mode="constant", value=a.f[0]),
    "index_select": lambda a, x, i: torch.index_select(x, a.axis, i),
    "gather": lambda a, x, i: torch.gather(x, a.axis, i),
    "scatter_add": lambda a, x, i, src: torch.scatter_add(x, a.axis, i, src),
    # conv (tests/opgrad_conv.c)
    "outer": lambda a, x, y: torch.outer(x, y),
    "linear": lambda a, x, w, b=None: F.linear(x, w, b),
    "linear_add": lambda a, x, w, *r: F.linear(x, w, r[0] if len(r) == 2 else None) + r[-1],
    "gelu_linear": lambda a, x, w, b=None: F.linear(F.gelu(x), w, b),
    "linear_relu": lambda a, x, w, b=None: F.relu(F.linear(x, w, b)),
    "conv2d": lambda a, x, w, b=None: F.conv2d(x, w, b, **conv2d_opts(a)),
    "conv2d_relu": lambda a, x, w, b=None: F.relu(F.conv2d(x, w, b, **conv2d_opts(a))),
    "conv2d_input_grad": t_conv2d_input_grad,
    "conv2d_weight_grad": t_conv2d_weight_grad,
    "conv1d": lambda a, x, w, b=None: F.conv1d(x, w, b, **conv1d_opts(a)),
    "max_pool2d": lambda a, x: F.max_pool2d(x, **pool2d_opts(a, dilation=True)),
    "max_unpool2d": t_max_unpool2d,
    "gather2d": lambda a, x, i: x.flatten(2).gather(2, i.flatten(2)).reshape(i.shape),
    "avg_pool2d": lambda a, x: F.avg_pool2d(x, **pool2d_opts(a), count_include_pad=a.iv[10] != 0),
    "avg_pool2d_input_grad": t_avg_pool2d_input_grad,
    "adaptive_avg_pool2d": lambda a, x: F.adaptive_avg_pool2d(x, (a.iv[8], a.iv[9])),
    "adaptive_avg_pool2d_input_grad": t_adaptive_avg_pool2d_input_grad,
    # nn (tests/opgrad_nn.c)
    "layer_norm": t_layer_norm,
    "rms_norm": t_rms_norm,
    "group_norm": lambda a, x, w=None, b=None: F.group_norm(x, a.iv[0], w, b, a.f[0]),
    "batch_norm": t_batch_norm,
    "dropout": lambda a, x: F.dropout(x, a.f[0], training=a.flag),
    "embedding": lambda a, w, i: F.embedding(i, w),
    "embedding_backward": lambda a, dout, i: torch.zeros(
        (a.index_hi, dout.shape[-1]), dtype=dout.dtype
    ).index_add(0, i.reshape(-1), dout.reshape(-1, dout.shape[-1])),
    "lstm_cell": t_lstm_cell,
    "lstm": t_lstm,
    "sdpa": t_sdpa,
    # loss (tests/opgrad_loss.c): iv[0] the reduction, iv[1] ignore_index
    "l1_loss": lambda a, x, t: F.l1_loss(x, t, reduction=red(a)),
    "smooth_l1_loss": lambda a, x, t: F.smooth_l1_loss(x, t, reduction=red(a), beta=a.f[0]),
    "huber_loss": lambda a, x, t: F.huber_loss(x, t, reduction=red(a), delta=a.f[0]),
    "bce_loss": lambda a, x, t: F.binary_cross_entropy(x, t, reduction=red(a)),
    "bce_with_logits": t_bce_with_logits,
    "kl_div": lambda a, x, t: F.kl_div(x, t, reduction=red(a), log_target=a.flag),
    "nll_loss": t_nll_loss,
    "cross_entropy_ex": t_cross_entropy_ex,
}


# ---- edge cases ------------------------------------------------------------------
#
# Besides the table's random inputs, some ops get an "edge" case: the
# contiguous inputs of one variant with chosen elements set to values at
# kinks, ties, zeros, infinities and extremes, where conventions (the
# subgradient at a kink, how ties share a gradient, overflow) are decided.
# EDGES: op name -> [(variant k, edit(a, inputs))]; edit changes the f64
# inputs in place (flat positions; the f32 case rounds them).


def put(*pairs):
    """An edit setting input i's flat element j to v for (i, {j: v}) pairs."""

    def edit(a, xs):
        for i, vals in pairs:
            flat = xs[i].view(-1)
            for j, v in vals.items():
                flat[j] = v

    return edit


INF, NAN = float("inf"), float("nan")
KINK0 = put((0, {0: 0.0, 1: -0.0, 2: 1e-300, 3: -1e-300}))
BIG = put((0, {0: 40.0, 1: -40.0, 2: 800.0, 3: -800.0, 4: 0.0}))


def ties(i, n):
    """An edit making the first n flat elements of input i equal."""

    def edit(a, xs):
        flat = xs[i].view(-1)
        flat[1:n] = flat[0]

    return edit


def both(*edits):
    def edit(a, xs):
        for e in edits:
            e(a, xs)

    return edit


def same_as(i, src, idx):
    """An edit copying input src's flat elements idx into input i."""

    def edit(a, xs):
        for j in idx:
            xs[i].view(-1)[j] = xs[src].view(-1)[j]

    return edit


EDGES = {
    "relu": [(0, KINK0)],
    "abs": [(0, KINK0)],
    "leaky_relu": [(0, KINK0), (1, KINK0)],
    "elu": [(0, both(KINK0, put((0, {4: -800.0}))))],
    "hardtanh": [(0, put((0, {0: -0.8, 1: 0.9, 2: 0.0, 3: -5.0, 4: 5.0})))],
    "clamp": [(0, put((0, {0: -0.5, 1: 0.7, 2: 0.0, 3: -5.0, 4: 5.0}))),
              (1, put((0, {0: -0.3, 1: -INF, 2: INF})))],
    "sqrt": [(0, put((0, {0: 0.0, 1: 1e-300})))],
    "rsqrt": [(0, put((0, {0: 0.0, 1: INF})))],
    "log": [(0, put((0, {0: 0.0, 1: INF, 2: 1e-300})))],
    "log1p": [(0, put((0, {0: -1.0, 1: 1e-300, 2: 0.0})))],
    "expm1": [(0, put((0, {0: 1e-300, 1: 0.0, 2: 700.0, 3: -800.0})))],
    "exp": [(0, put((0, {0: 700.0, 1: -800.0, 2: 0.0})))],
    "tanh": [(0, BIG)],
    "sigmoid": [(0, BIG)],
    "silu": [(0, BIG)],
    "log_sigmoid": [(0, BIG)],
    "gelu": [(0, BIG)],
    "gelu_tanh": [(0, BIG)],
    "erf": [(0, BIG)],
    "softplus": [(0, put((0, {0: 20.0, 1: 20.000001, 2: 19.999999, 3: -800.0, 4: 800.0}))),
                 (1, put((0, {0: 1.0, 1: 0.0, 2: -400.0})))],
    "pow_scalar": [(0, put((0, {0: 0.0}))), (1, put((0, {0: 0.0, 1: INF}))),
                   (2, put((0, {0: 0.0, 1: -0.0}))), (3, put((0, {0: 0.0})))],
    "pow": [(0, put((0, {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0, 4: 1.0}),
                    (1, {0: 0.0, 1: 2.0, 2: 0.5, 3: -1.0, 4: 0.0})))],
    "maximum": [(0, same_as(1, 0, (0, 3, 5)))],
    "minimum": [(0, same_as(1, 0, (0, 3, 5)))],
    "div": [(0, put((0, {0: 0.0, 1: 1e300}), (1, {1: 1e-300})))],
    "max": [(1, ties(0, 3)), (0, ties(0, 12))],
    "min": [(1, ties(0, 3)), (0, ties(0, 12))],
    "argmax": [(0, both(ties(0, 4), put((0, {5: NAN}))))],
    "argmin": [(0, both(ties(0, 4), put((0, {5: NAN}))))],
    "prod": [(1, put((0, {0: 0.0, 4: 0.0, 8: 0.0, 1: 0.0})))],
    "std": [(1, ties(0, 12))],
    "var": [(1, ties(0, 12))],
    "logsumexp": [(0, put((0, {0: 1e4, 1: -1e4, 2: -INF})))],
    "norm": [(0, put((0, {0: 0.0}))), (1, both(put((0, {0: 0.0, 4: 0.0, 8: 0.0})))),
             (2, ties(0, 2)), (3, put((0, {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0})))],
    "softmax": [(0, put((0, {0: 1e4, 1: -1e4, 4: -INF})))],
    "log_softmax": [(0, put((0, {0: 1e4, 1: -1e4, 4: -INF})))],
    "cross_entropy": [(0, put((0, {0: 1e4, 1: -1e4, 5: 1e4})))],
    "cross_entropy_ex": [(1, put((0, {0: 1e4, 1: -1e4})))],
    "l1_loss": [(0, same_as(1, 0, (0, 1)))],
    "smooth_l1_loss": [(0, both(put((1, {0: 0.0, 1: 0.0, 2: 0.0})),
                                put((0, {0: 1.0, 1: -1.0, 2: 0.0}))))],
    "huber_loss": [(0, both(put((1, {0: 0.0, 1: 0.0, 2: 0.0})),
                            put((0, {0: 1.0, 1: -1.0, 2: 0.0}))))],
    "bce_loss": [(0, put((0, {0: 0.0, 1: 1.0, 2: 1e-20})))],
    "bce_with_logits": [(0, put((0, {0: 800.0, 1: -800.0, 2: 0.0}))),
                        (1, put((0, {0: 800.0, 1: -800.0})))],
    # kl_div at target 0 is left out: d/dtarget is -inf here (the limit of
    # log t + 1 - x), NaN in torch 1.13 (0 * log 0 in xlogy's backward)
    "kl_div": [(3, put((1, {0: -800.0})))],
    "max_pool2d": [(0, ties(0, 50)), (1, ties(0, 50))],
    # a row of equal values (variance 0); 0.5 so that torch's f32 mean is
    # exact too (other values leave f32 rounding noise amplified by
    # 1/sqrt(eps) in torch's output, while tapegrad's statistics in double
    # give the exact 0)
    "layer_norm": [(2, put((0, {0: 0.5, 1: 0.5, 2: 0.5, 3: 0.5})))],
    "batch_norm": [(0, put((0, {0: 1.0, 3: 1.0, 6: 1.0, 9: 1.0, 12: 1.0})))],
}


# Non-finite inputs: NaN propagation and infinities, op by op. Left out,
# because tapegrad and torch 1.13 disagree there (gradients, dout = 1):
#   relu at NaN: torch passes dout (1), tapegrad 0 (its mask is x > 0);
#   abs at NaN: torch 0, tapegrad NaN (sign(NaN));
#   hardtanh at NaN: torch 0 or dout depending on dtype and bounds,
#     tapegrad 0;
#   max/min over a set holding NaN: torch NaN for every element of the
#     set, tapegrad all of dout to the NaN;
#   prod at an infinity or NaN without a zero in its set: torch NaN (its
#     prod / x), tapegrad the product of the others ([inf, 3, 2] gives 6 at
#     the inf); where the set holds a zero both give the products of the
#     others ([inf, 0, 2]: [0, inf, NaN]), which is what is probed.
NONFINITE = {
    "relu": [(0, put((0, {6: INF, 7: -INF})))],
    "abs": [(0, put((0, {6: INF, 7: -INF})))],
    "clamp": [(0, put((0, {5: NAN, 6: INF, 7: -INF})))],
    "hardtanh": [(0, put((0, {6: INF, 7: -INF})))],
    "maximum": [(0, put((0, {0: NAN, 2: INF}), (1, {1: NAN, 2: INF})))],
    "minimum": [(0, put((0, {0: NAN, 2: -INF}), (1, {1: NAN, 2: -INF})))],
    "max": [(1, put((0, {13: INF})))],
    "min": [(1, put((0, {13: -INF})))],
    "max_pool2d": [(0, put((0, {0: NAN, 7: INF})))],
    "div": [(0, put((0, {0: 1.0, 2: 0.0}), (1, {0: 0.0, 2: 0.0})))],
    "logsumexp": [(1, put((0, {0: -INF, 4: -INF, 8: -INF, 13: INF})))],
    "softmax": [(0, put((0, {8: INF})))],
    "prod": [(1, put((0, {13: INF, 17: 0.0})))],
    "sqrt": [(0, put((0, {0: -1.0, 1: INF})))],
    "log": [(0, put((0, {0: -1.0})))],
    "pow": [(0, put((0, {0: -2.0, 1: -2.0, 2: -INF}), (1, {0: 3.0, 1: 0.5, 2: 2.0})))],
    "tanh": [(0, put((0, {0: INF, 1: -INF, 2: NAN})))],
    "sigmoid": [(0, put((0, {0: INF, 1: -INF, 2: NAN})))],
    "exp": [(0, put((0, {0: INF, 1: -INF, 2: NAN})))],
    "log_sigmoid": [(0, put((0, {0: INF, 1: -INF})))],
    "softplus": [(0, put((0, {0: INF, 1: -INF})))],
    "cross_entropy_ex": [(0, put((1, {0: 2, 1: 2, 2: 2, 3: 2})))],
    "nll_loss": [(1, put((1, {0: 2, 1: 2, 2: 2, 3: 2})))],
}
for _op, _cases in NONFINITE.items():
    EDGES.setdefault(_op, []).extend(_cases)


# ---- making the data -----------------------------------------------------------


def make_input(gen, shape, dom, classes, index_hi):
    """One f64 (or i64) input of the domain, as tests/test_opgrad.c makes it."""
    n = 1
    for d in shape:
        n *= d
    if dom in INT_DOMS:
        hi = classes if dom == "labels" else index_hi
        if hi <= 0:
            raise ValueError("domain %s needs a positive upper bound" % dom)
        return torch.tensor([(k * 7 + 3) % hi for k in range(n)], dtype=torch.int64).reshape(shape)
    if dom in ("normal", "normal_const"):
        return torch.randn(shape, generator=gen, dtype=torch.float64)
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    if dom in ("pos", "pos_const"):
        return 0.5 + u
    if dom == "away":
        v = 2 * u - 1
        return v + torch.where(v < 0, -0.5, 0.5)
    if dom == "mask":
        return (u >= 0.5).to(torch.float64)
    if dom in ("unit", "unit_const"):
        return 0.1 + 0.8 * u
    raise ValueError("unknown domain %r" % dom)


DT_NAME = {torch.float64: "f64", torch.float32: "f32", torch.int64: "i64"}


def fmt_values(t):
    t = t.detach().reshape(-1)
    if t.dtype == torch.int64:
        return " ".join(str(int(v)) for v in t.tolist())
    return " ".join(float(v).hex() for v in t.tolist())


def fmt_shape(t):
    return " ".join([str(t.dim())] + [str(d) for d in t.shape])


def run_case(name, flags, a, fn, shapes, gen, out_lines, k, layout, edit=None):
    classes = a.in_[0][-1] if a.in_ and len(a.in_[0]) > 0 else 1
    base = [make_input(gen, shapes[i], a.dom[i], classes, a.index_hi) for i in range(a.n_in)]
    if edit is not None:
        edit(a, base)
    dout64 = None
    for dt in (torch.float64, torch.float32):
        ins = []
        for i, x in enumerate(base):
            x = x.clone() if x.dtype == torch.int64 else x.to(dt).clone()
            if x.dtype != torch.int64 and a.dom[i] not in NOGRAD_DOMS:
                x.requires_grad_(True)
            ins.append(x)
        if flags & OPF_RANDOM:
            torch.manual_seed(zlib.crc32(name.encode()) + k)
        before = [x.detach().clone() for x in ins]
        out = fn(a, *ins)
        if not isinstance(out, torch.Tensor):
            raise TypeError("%s: the mirror returned %r" % (name, type(out)))
        if out.dtype not in DT_NAME:
            raise TypeError("%s: output dtype %s" % (name, out.dtype))
        lines = ["case %d %s %s %d" % (k, layout, DT_NAME[dt], a.n_in)]
        for i, x in enumerate(ins):
            lines.append(
                "in %d %s %d %s %s"
                % (i, DT_NAME[x.dtype], int(x.requires_grad), fmt_shape(x), fmt_values(before[i]))
            )
        for i, x in enumerate(ins):
            same = x.detach() == before[i]
            if x.is_floating_point():
                same |= x.detach().isnan() & before[i].isnan()
            if not bool(same.all()):  # updated in place (running stats)
                lines.append("after %d %s %s" % (i, fmt_shape(x), fmt_values(x)))
        lines.append("out %s %s %s" % (DT_NAME[out.dtype], fmt_shape(out), fmt_values(out)))
        if not flags & OPF_NOGRAD:
            if not out.requires_grad:
                raise ValueError("%s, %s: torch's output requires no grad" % (name, a.what))
            if dout64 is None:
                dout64 = torch.randn(out.shape, generator=gen, dtype=torch.float64)
            dout = dout64.to(dt)
            req = [x for x in ins if x.requires_grad]
            grads = torch.autograd.grad(out, req, dout, allow_unused=True)
            lines.append("dout %s %s" % (fmt_shape(dout), fmt_values(dout)))
            gi = iter(grads)
            for i, x in enumerate(ins):
                if not x.requires_grad:
                    continue
                g = next(gi)
                if g is None:
                    g = torch.zeros_like(x)
                lines.append("grad %d %s %s" % (i, fmt_shape(g), fmt_values(g)))
        lines.append("end")
        out_lines.extend(lines)


def variant_ns(v):
    d = dict(v)
    d["in_"] = [tuple(s) for s in v["in"]]
    d["bc"] = [tuple(s) for s in v["bc"]]
    d["to"] = tuple(v["to"])
    return types.SimpleNamespace(**d)


def make_op(entry, spec_lines):
    name, flags = entry["op"], entry["flags"]
    fn = MIRRORS[name]
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    lines = [
        "# tapegrad golden data for op %s: inputs, output, dout and gradients from" % name,
        "# %s. Made by tools/make_golden.py; do not edit. Format:" % TORCH_NOTE,
        "# see tools/make_golden.py or tests/test_golden.c.",
        "tapegrad-golden 1",
        "op %s" % name,
    ]
    for k, v in enumerate(entry["variants"]):
        lines.append("spec %d %s" % (k, spec_lines[k]))
    for k, v in enumerate(entry["variants"]):
        a = variant_ns(v)
        run_case(name, flags, a, fn, a.in_, gen, lines, k, "contig")
        if a.has_bc:
            run_case(name, flags, a, fn, a.bc, gen, lines, k, "bcast")
    for k, edit in EDGES.get(name, []):
        if k < len(entry["variants"]):
            a = variant_ns(entry["variants"][k])
            run_case(name, flags, a, fn, a.in_, gen, lines, k, "edge", edit)
    return "\n".join(lines) + "\n"


def raw_variants(line):
    """The variants' JSON texts exactly as the C suite printed them."""
    start = line.index('"variants":[') + len('"variants":[')
    body = line[start : line.rindex("]}")]
    out, depth, s, instr, esc = [], 0, None, False, False
    for i, ch in enumerate(body):
        if instr:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                instr = False
            continue
        if ch == '"':
            instr = True
        elif ch == "{":
            if depth == 0:
                s = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                out.append(body[s : i + 1])
    return out


def read_spec(args):
    if args.spec:
        with open(args.spec) as f:
            return f.read().splitlines()
    exe = os.path.join(args.build, "tests", "test_main")
    if not os.path.exists(exe):
        sys.exit("make_golden: %s not found; build first (meson setup %s && ninja -C %s)"
                 % (exe, args.build, args.build))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "spec.jsonl")
        env = dict(os.environ, TG_GOLDEN_SPEC=path, CK_FORK="no")
        subprocess.run([exe, "golden"], env=env, check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            return f.read().splitlines()


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ops", nargs="*", help="ops to (re)generate (default: every op)")
    ap.add_argument("--build", default=os.path.join(root, "build"),
                    help="meson build directory holding tests/test_main (default: build)")
    ap.add_argument("--spec", help="read the table from this file instead of test_main")
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "golden"))
    ap.add_argument("--missing", action="store_true",
                    help="only ops whose file is missing or whose table entry changed")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)

    entries = []
    for line in read_spec(args):
        if line.strip():
            e = json.loads(line)
            e["_raw"] = raw_variants(line)
            entries.append(e)
    known = {e["op"] for e in entries}
    for o in args.ops:
        if o not in known:
            sys.exit("make_golden: no registered op %r" % o)
    os.makedirs(args.out, exist_ok=True)

    no_entry, no_mirror, written, same = [], [], [], 0
    for e in entries:
        name = e["op"]
        if args.ops and name not in args.ops:
            continue
        path = os.path.join(args.out, name + ".txt")
        if args.missing and os.path.exists(path):
            with open(path) as f:
                old = f.read()
            if all("spec %d %s\n" % (k, r) in old for k, r in enumerate(e["_raw"])) and (
                "spec %d " % len(e["_raw"]) not in old
            ):
                continue
        if not e["variants"]:
            no_entry.append(name)
            continue
        if name not in MIRRORS:
            no_mirror.append(name)
            continue
        text = make_op(e, e["_raw"])
        old = None
        if os.path.exists(path):
            with open(path) as f:
                old = f.read()
        if old == text:
            same += 1
            continue
        with open(path, "w") as f:
            f.write(text)
        written.append(name)

    if not args.ops and not args.missing:
        for fn in sorted(os.listdir(args.out)):
            if fn.endswith(".txt") and fn[:-4] not in known:
                os.remove(os.path.join(args.out, fn))
                print("removed %s (no such op)" % fn)
    print("wrote %d files (%s), %d unchanged" % (len(written), " ".join(written), same))
    if no_entry:
        print("no table entry yet (no cases): %s" % " ".join(no_entry))
    if no_mirror:
        print("NO TORCH MIRROR (add to MIRRORS in tools/make_golden.py): %s" % " ".join(no_mirror))
        sys.exit(1)


if __name__ == "__main__":
    main()
