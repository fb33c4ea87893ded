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


tc.run('gpt', a, step)
