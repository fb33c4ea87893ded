#!/usr/bin/env python3
"""Reference values of tests/test_layers.c, from PyTorch (float64).

Every tensor is filled with the same formula the C test uses:
    fill(t, s).flat[i] = 0.5 * sin(0.37 * i + s)
the input with s = 0 and the module's j-th parameter (registry order, the
order of named_parameters()) with s = j + 1. Run with Debian's PyTorch:
    /usr/bin/python3 tools/layers_reference.py
and paste the printed arrays into tests/test_layers.c.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def fill(shape, s):
    n = 1
    for d in shape:
        n *= d
    v = torch.tensor([0.5 * math.sin(0.37 * i + s) for i in range(n)])
    return v.reshape(shape)


def set_params(params):
    with torch.no_grad():
        for j, p in enumerate(params):
            p.copy_(fill(p.shape, j + 1))


def emit(name, t):
    vals = t.detach().reshape(-1).tolist()
    body = ", ".join("%.17g" % v for v in vals)
    print("static const double %s[%d] = {%s};" % (name, len(vals), body))


# Linear(3, 2), x [2, 3]
lin = nn.Linear(3, 2)
set_params(lin.parameters())
emit("ref_linear", lin(fill((2, 3), 0)))

# Conv2d(2, 2, 2, stride 2, padding 1), x [1, 2, 3, 3]
conv = nn.Conv2d(2, 2, 2, stride=2, padding=1)
set_params(conv.parameters())
emit("ref_conv2d", conv(fill((1, 2, 3, 3), 0)))

# Conv1d(2, 2, 3, padding 1), x [1, 2, 4]
conv1 = nn.Conv1d(2, 2, 3, padding=1)
set_params(conv1.parameters())
emit("ref_conv1d", conv1(fill((1, 2, 4), 0)))

# MaxPool2d(2), x [1, 1, 4, 4]; AvgPool2d(2, stride 1), x [1, 1, 3, 3]
emit("ref_maxpool", nn.MaxPool2d(2)(fill((1, 1, 4, 4), 0)))
emit("ref_avgpool", nn.AvgPool2d(2, stride=1)(fill((1, 1, 3, 3), 0)))

# LayerNorm(4), x [2, 4]
ln = nn.LayerNorm(4)
set_params(ln.parameters())
emit("ref_layernorm", ln(fill((2, 4), 0)))

# BatchNorm1d(3), x [4, 3]: train, running stats, then eval on the same x
bn = nn.BatchNorm1d(3)
set_params(bn.parameters())
x = fill((4, 3), 0)
emit("ref_bn1d_train", bn(x))
emit("ref_bn1d_rmean", bn.running_mean)
emit("ref_bn1d_rvar", bn.running_var)
bn.eval()
emit("ref_bn1d_eval", bn(x))

# BatchNorm2d(2), x [2, 2, 2, 2], training
bn2 = nn.BatchNorm2d(2)
set_params(bn2.parameters())
emit("ref_bn2d_train", bn2(fill((2, 2, 2, 2), 0)))
emit("ref_bn2d_rvar", bn2.running_var)

# Sequential(Linear(3, 4), ReLU, Linear(4, 2)), x [2, 3]
seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
set_params(seq.parameters())
emit("ref_seq", seq(fill((2, 3), 0)))

# Recurrent layers: input 3, hidden 4, 2 layers, batch_first, x [2, 3, 3];
# loss = sum(out * fill(out.shape, 9)), gradient of the last parameter
# (bias_hh_l1).
def recurrent(name, cls, **kw):
    rnn = cls(3, 4, num_layers=2, batch_first=True, **kw)
    set_params(rnn.parameters())
    out, st = rnn(fill((2, 3, 3), 0))
    emit("ref_%s_out" % name, out)
    if isinstance(st, tuple):
        emit("ref_%s_hn" % name, st[0])
        emit("ref_%s_cn" % name, st[1])
    else:
        emit("ref_%s_hn" % name, st)
    (out * fill(out.shape, 9)).sum().backward()
    emit("ref_%s_gbhh1" % name, rnn.bias_hh_l1.grad)


recurrent("rnn", nn.RNN)
recurrent("lstm", nn.LSTM)
recurrent("gru", nn.GRU)

# Multi-head attention, E 4, 2 heads, causal, self-attention on x [2, 3, 4].
# tapegrad's parameters in order: q_proj.weight, q_proj.bias, k_proj.weight,
# k_proj.bias, v_proj.weight, v_proj.bias, out_proj.weight, out_proj.bias.
E = 4
mha = nn.MultiheadAttention(E, 2, batch_first=True)
with torch.no_grad():
    w = [fill((E, E), 1), fill((E, E), 3), fill((E, E), 5)]
    b = [fill((E,), 2), fill((E,), 4), fill((E,), 6)]
    mha.in_proj_weight.copy_(torch.cat(w))
    mha.in_proj_bias.copy_(torch.cat(b))
    mha.out_proj.weight.copy_(fill((E, E), 7))
    mha.out_proj.bias.copy_(fill((E,), 8))
x = fill((2, 3, E), 0)
causal = torch.triu(torch.ones(3, 3, dtype=torch.bool), diagonal=1)
y, _ = mha(x, x, x, attn_mask=causal, need_weights=False)
emit("ref_mha", y)
(y * fill(y.shape, 9)).sum().backward()
emit("ref_mha_gqw", mha.in_proj_weight.grad[:E])
