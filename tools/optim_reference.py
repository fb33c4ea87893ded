#!/usr/bin/env python3
"""optim_reference.py - PyTorch reference values for tests/test_optim.c.

Run with Debian's PyTorch (apt-get install python3-torch; 1.13):

    /usr/bin/python3 tools/optim_reference.py > /tmp/optim_ref.h

and paste the printed C literals into tests/test_optim.c. Everything the C
test does is mirrored here exactly:

  * two parameters, p0 of shape [2,3] and p1 of shape [4], with
        p_k[i] = ((i*3 + k*5) % 7 - 3) * 0.3 + 0.05       (rounded to f32 for f32)
  * at step t (0-based) the gradient of p_k is
        g_k[i] = ((i*7 + t*3 + k*2) % 11 - 5) / 4.0       (exact in binary)
    except that p1 has no gradient (grad None / NULL) at step 0;
  * STEPS optimizer steps; the values of p0 then p1 are recorded after each.

Schedules: optimizer.param_groups[0]["lr"] after 0, 1, 2, ... calls of
scheduler.step() (each after an optimizer.step()).
"""
import math
import warnings

import torch

warnings.filterwarnings("ignore")
torch.set_default_dtype(torch.float64)

STEPS = 5
SHAPES = [(2, 3), (4,)]


def init(k, n):
    return [((i * 3 + k * 5) % 7 - 3) * 0.3 + 0.05 for i in range(n)]


def grad(k, n, t):
    return [((i * 7 + t * 3 + k * 2) % 11 - 5) / 4.0 for i in range(n)]


OPTIMS = [
    ("sgd", torch.optim.SGD, dict(lr=0.1)),
    ("sgd_mom", torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("sgd_nest", torch.optim.SGD,
     dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05, maximize=True)),
    ("adam", torch.optim.Adam, dict(lr=0.01)),
    ("adam_ams", torch.optim.Adam,
     dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True)),
    ("adamw", torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    ("adamw_ams_max", torch.optim.AdamW, dict(lr=0.02, amsgrad=True, maximize=True, eps=1e-6)),
    ("rmsprop", torch.optim.RMSprop, dict(lr=0.01)),
    ("rmsprop_full", torch.optim.RMSprop,
     dict(lr=0.01, alpha=0.9, momentum=0.9, centered=True, weight_decay=0.01)),
    ("rmsprop_cen", torch.optim.RMSprop, dict(lr=0.01, centered=True)),
    ("adagrad", torch.optim.Adagrad, dict(lr=0.1)),
    ("adagrad_full", torch.optim.Adagrad,
     dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1, eps=1e-8)),
]


def run_optim(cls, kw, dtype):
    ps = []
    for k, shape in enumerate(SHAPES):
        n = math.prod(shape)
        ps.append(torch.tensor(init(k, n), dtype=dtype).reshape(shape).requires_grad_())
    opt = cls(ps, **kw)
    out = []
    for t in range(STEPS):
        for k, (p, shape) in enumerate(zip(ps, SHAPES)):
            if k == 1 and t == 0:
                p.grad = None
            else:
                p.grad = torch.tensor(grad(k, p.numel(), t), dtype=dtype).reshape(shape)
        opt.step()
        out.append([v for p in ps for v in p.detach().reshape(-1).tolist()])
    return out


def c_rows(rows):
    return ",\n".join("    {" + ", ".join("%.17g" % v for v in r) + "}" for r in rows)


def lrs(make, n, base=0.1):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base)
    sched = make(opt)
    out = [opt.param_groups[0]["lr"]]
    for _ in range(n - 1):
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


S = torch.optim.lr_scheduler
SCHEDULES = [
    ("step", lambda o: S.StepLR(o, step_size=3, gamma=0.5), 12),
    ("exponential", lambda o: S.ExponentialLR(o, gamma=0.9), 10),
    ("cosine", lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001), 25),
    ("sgdr", lambda o: S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.001), 25),
    ("sgdr1", lambda o: S.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=1), 12),
    ("one_cycle", lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=20, cycle_momentum=False), 20),
    ("one_cycle3", lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=20, pct_start=0.25,
                                          div_factor=10.0, final_div_factor=100.0,
                                          three_phase=True, cycle_momentum=False), 20),
    ("one_cycle_lin", lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=20,
                                             anneal_strategy="linear", cycle_momentum=False), 20),
    ("warm_cosine", lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.25, total_iters=4),
                                                 S.CosineAnnealingLR(o, T_max=10)],
                                             milestones=[4]), 16),
    ("warm_step", lambda o: S.SequentialLR(o, [S.LinearLR(o, total_iters=3),
                                               S.StepLR(o, step_size=2, gamma=0.5)],
                                           milestones=[3]), 10),
]


def clip_refs():
    g0 = torch.tensor([[0.5, -1.25, 2.0], [0.0, 3.5, -0.75]])
    g1 = torch.tensor([-2.5, 1.0, 0.25, -4.0])
    out = []
    for name, max_norm, norm_type in [("l2", 1.0, 2.0), ("inf", 2.0, math.inf),
                                      ("l1", 5.0, 1.0), ("l3", 1.5, 3.0), ("none", 100.0, 2.0)]:
        ps = [torch.zeros(2, 3, requires_grad=True), torch.zeros(4, requires_grad=True)]
        ps[0].grad = g0.clone()
        ps[1].grad = g1.clone()
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type).item()
        vals = [v for p in ps for v in p.grad.reshape(-1).tolist()]
        out.append((name, max_norm, norm_type, total, vals))
    ps = [torch.zeros(2, 3, requires_grad=True), torch.zeros(4, requires_grad=True)]
    ps[0].grad = g0.clone()
    ps[1].grad = g1.clone()
    torch.nn.utils.clip_grad_value_(ps, 1.1)
    value = [v for p in ps for v in p.grad.reshape(-1).tolist()]
    return out, value


def main():
    print("/* Generated by tools/optim_reference.py with torch %s */" % torch.__version__)
    for name, cls, kw in OPTIMS:
        print("/* torch.optim.%s(params, %s) */" % (cls.__name__, ", ".join(
            "%s=%r" % kv for kv in kw.items())))
        for dt, dtype in (("f64", torch.float64), ("f32", torch.float32)):
            rows = run_optim(cls, kw, dtype)
            print("static const double ref_%s_%s[%d][10] = {\n%s};" % (name, dt, STEPS,
                                                                       c_rows(rows)))
    for name, make, n in SCHEDULES:
        v = lrs(make, n)
        print("static const double lr_%s[%d] = {%s};" % (name, n,
                                                        ", ".join("%.17g" % x for x in v)))
    clips, value = clip_refs()
    for name, max_norm, norm_type, total, vals in clips:
        print("/* clip_grad_norm_(max_norm=%r, norm_type=%r) */" % (max_norm, norm_type))
        print("static const double clip_%s_total = %.17g;" % (name, total))
        print("static const double clip_%s[10] = {%s};" % (name, ", ".join("%.17g" % x
                                                                          for x in vals)))
    print("/* clip_grad_value_(clip_value=1.1) */")
    print("static const double clip_value_ref[10] = {%s};" % ", ".join("%.17g" % x
                                                                       for x in value))


if __name__ == "__main__":
    main()
