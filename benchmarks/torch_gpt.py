"""The step of gpt.c in PyTorch: 2-layer pre-LN GPT, d_model 128, 4 heads,
context 64, vocabulary 65, GELU MLP 4x, separate q/k/v/out projections,
untied head without bias, Adam, batch 16."""
import math

import torch
import torch.nn.functional as F

import torch_common as tc

V, T, D, H, L = 65, 64, 128, 4, 2
nn = torch.nn


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.register_buffer('mask', torch.ones(T, T, dtype=torch.bool).tril())

    def forward(self, x):
        B = x.shape[0]
        q, k, v = (p(x).view(B, T, H, D // H).transpose(1, 2) for p in (self.q, self.k, self.v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D // H))
        att = att.masked_fill(~self.mask, float('-inf')).softmax(-1)
        return self.o((att @ v).transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.attn, self.ln2 = nn.LayerNorm(D), Attn(), nn.LayerNorm(D)
        self.mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, D), nn.Embedding(T, D)
        self.blocks = nn.Sequential(*(Block() for _ in range(L)))
        self.ln_f, self.head = nn.LayerNorm(D), nn.Linear(D, V, bias=False)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(T))
        return self.head(self.ln_f(self.blocks(x)))


a = tc.parse(16)
net = GPT()
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
tok = tc.labels(a.batch * T, V, 7)
idx = tok.reshape(a.batch, T)
tgt = torch.roll(tok, -1)


def step():
    loss = F.cross_entropy(net(idx).reshape(-1, V), tgt)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.detach()


def make_gemms():
    """The step's matrix products alone, as its autograd runs them: per
    block the q, k, v, out, fc and proj linears (forward addmm with the
    weight transposed, input gradient dout W, weight gradient dout^T x)
    and the attention's two batched products with their four gradients
    (batch x heads matrices of T x T and T x D/H); then the head."""
    R, BH, hd = a.batch * T, a.batch * H, D // H
    ones = torch.ones
    x, h4 = ones(R, D), ones(R, 4 * D)
    qk, p = ones(BH, T, hd), ones(BH, T, T)
    blocks = []
    for blk in net.blocks:
        at = blk.attn
        layers = ((at.q, x), (at.k, x), (at.v, x), (at.o, x), (blk.mlp[0], x), (blk.mlp[2], h4))
        blocks.append([(l.weight.detach(), l.bias.detach(), inp, ones(R, l.out_features))
                       for l, inp in layers])
    wh = net.head.weight.detach()
    dh = ones(R, V)

    def gemms():
        for lins in blocks:
            for w, b, inp, d in lins:
                torch.addmm(b, inp, w.t())
                torch.mm(d, w)
                torch.mm(d.t(), inp)
            torch.bmm(qk, qk.transpose(1, 2))  # S = Q K^T
            torch.bmm(p, qk)                   # Y = P V
            torch.bmm(qk, qk.transpose(1, 2))  # dP = dY V^T
            torch.bmm(p.transpose(1, 2), qk)   # dV = P^T dY
            torch.bmm(p, qk)                   # dQ = dS K
            torch.bmm(p.transpose(1, 2), qk)   # dK = dS^T Q
        torch.mm(x, wh.t())
        torch.mm(dh, wh)
        torch.mm(dh.t(), x)
    return gemms


tc.run('gpt', a, step, make_gemms)
