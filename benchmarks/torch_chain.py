"""The step of chain.c in PyTorch: 1,000 elementwise ops on a one-element
tensor (mul, add, tanh, sin in turn), forward and backward."""
import torch

import torch_common as tc

a = tc.parse(1000)
x = torch.full((1,), 0.5, requires_grad=True)
ca = torch.full((1,), 0.999)
cb = torch.full((1,), 0.001)


def step():
    y = x
    for i in range(a.batch):
        k = i % 4
        if k == 0:
            y = y * ca
        elif k == 1:
            y = y + cb
        elif k == 2:
            y = torch.tanh(y)
        else:
            y = torch.sin(y)
    x.grad = None
    y.backward()
    return y.detach()


tc.run('chain', a, step)
