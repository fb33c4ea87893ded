"""The step of lstm.c in PyTorch: embedding 65 -> 128, 2-layer LSTM 128
(batch-first), linear head, cross-entropy, Adam, batch 16, context 64."""
import torch
import torch.nn.functional as F

import torch_common as tc

V, T, D = 65, 64, 128
nn = torch.nn
a = tc.parse(16)
emb, lstm, head = nn.Embedding(V, D), nn.LSTM(D, D, num_layers=2, batch_first=True), nn.Linear(D, V)
params = list(emb.parameters()) + list(lstm.parameters()) + list(head.parameters())
opt = torch.optim.Adam(params, lr=1e-3)
tok = tc.labels(a.batch * T, V, 7)
idx = tok.reshape(a.batch, T)
tgt = torch.roll(tok, -1)


def step():
    out, _ = lstm(emb(idx))
    loss = F.cross_entropy(head(out).reshape(-1, V), tgt)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.detach()


tc.run('lstm', a, step)
