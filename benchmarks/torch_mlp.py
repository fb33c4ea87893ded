"""The step of mlp.c in PyTorch: 784-512-512-10, ReLU, cross-entropy, Adam."""
import torch
import torch.nn.functional as F

import torch_common as tc

a = tc.parse(128)
net = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                          torch.nn.Linear(512, 512), torch.nn.ReLU(),
                          torch.nn.Linear(512, 10))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
x = tc.uniform(a.batch * 784, 0.0, 1.0, 1).reshape(a.batch, 784)
y = tc.labels(a.batch, 10, 2)


def step():
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.detach()


tc.run('mlp', a, step)
