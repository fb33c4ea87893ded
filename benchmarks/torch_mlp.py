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


def make_gemms():
    """The step's eight matrix products alone, as its autograd runs them:
    each layer's forward (addmm with the weight transposed), weight
    gradient (dout^T h) and input gradient (dout W; none for the first
    layer)."""
    w1, b1 = net[0].weight.detach(), net[0].bias.detach()
    w2, b2 = net[2].weight.detach(), net[2].bias.detach()
    w3, b3 = net[4].weight.detach(), net[4].bias.detach()
    h1 = torch.relu(torch.addmm(b1, x, w1.t()))
    h2 = torch.relu(torch.addmm(b2, h1, w2.t()))
    d3, d2, d1 = torch.ones(a.batch, 10), torch.ones(a.batch, 512), torch.ones(a.batch, 512)

    def gemms():
        torch.addmm(b1, x, w1.t())
        torch.addmm(b2, h1, w2.t())
        torch.addmm(b3, h2, w3.t())
        torch.mm(d3.t(), h2)
        torch.mm(d3, w3)
        torch.mm(d2.t(), h1)
        torch.mm(d2, w2)
        torch.mm(d1.t(), x)
    return gemms


tc.run('mlp', a, step, make_gemms)
