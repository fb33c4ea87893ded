"""The step of tiny.c in PyTorch: 2-3-1, tanh, MSE, Adam, batch 32."""
import torch
import torch.nn.functional as F

import torch_common as tc

a = tc.parse(32)
net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
x = tc.uniform(a.batch * 2, -1.0, 1.0, 3).reshape(a.batch, 2)
y = tc.uniform(a.batch, -1.0, 1.0, 4).reshape(a.batch, 1)


def step():
    loss = F.mse_loss(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.detach()


tc.run('tiny', a, step)
