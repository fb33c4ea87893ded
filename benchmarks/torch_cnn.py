"""The step of cnn.c in PyTorch: two conv3x3 + ReLU + maxpool blocks and a
linear layer, cross-entropy, Adam, batch 64."""
import torch
import torch.nn.functional as F

import torch_common as tc

a = tc.parse(64)
nn = torch.nn
net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Linear(3136, 10))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
x = tc.uniform(a.batch * 784, 0.0, 1.0, 5).reshape(a.batch, 1, 28, 28)
y = tc.labels(a.batch, 10, 6)


def step():
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.detach()


tc.run('cnn', a, step)
