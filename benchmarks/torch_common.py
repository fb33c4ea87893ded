"""torch_common.py - the harness of the PyTorch reference scripts.

Each torch_<name>.py builds the same model, data and training step as
benchmarks/<name>.c and calls run(); the output is the same JSON line as
the C programs print (allocs_per_step null; gemm_ms null unless the script
passes its step's matrix products to run()). Options:
--batch N, --threads N (torch.set_num_threads), --steps N, --warmup N,
--tiny. OpenBLAS's own thread count comes from OPENBLAS_NUM_THREADS, which
the driver sets before the interpreter starts.
"""
import argparse
import json
import statistics
import time

import torch


def parse(default_batch):
    p = argparse.ArgumentParser()
    p.add_argument('--batch', type=int, default=default_batch)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--steps', type=int, default=100)
    p.add_argument('--warmup', type=int, default=10)
    p.add_argument('--tiny', action='store_true')
    a = p.parse_args()
    if a.tiny:
        a.steps, a.warmup = 3, 2
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    return a


def uniform(n, lo, hi, seed):
    """The same LCG stream as bench_fill_uniform in bench.c."""
    m = (1 << 64) - 1
    s = (seed * 6364136223846793005 + 1442695040888963407) & m
    out = []
    for _ in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) & m
        out.append(lo + (hi - lo) * ((s >> 40) * (1.0 / 16777216.0)))
    return torch.tensor(out, dtype=torch.float32)


def labels(n, k, seed):
    """The same stream as bench_fill_labels in bench.c."""
    m = (1 << 64) - 1
    s = (seed * 6364136223846793005 + 1442695040888963407) & m
    out = []
    for _ in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) & m
        out.append((s >> 33) % k)
    return torch.tensor(out, dtype=torch.int64)


def peak_rss_kb():
    """This process image's own peak RSS in kB: VmHWM of /proc/self/status,
    the same measure as bench.c (getrusage's ru_maxrss would also count the
    peak of the driver process that started us, carried over at exec)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    raise RuntimeError('no VmHWM in /proc/self/status')


def run(name, args, step, make_gemms=None):
    """Times step() (returns the loss tensor) and prints the JSON line.
    make_gemms, when given, is called after the timed steps and the peak
    memory reading (its operands would add to the peak) and returns a
    function that runs the step's matrix products alone, with the shapes
    and operand layouts of its forward and backward; its median time over
    as many calls as timed steps is gemm_ms."""
    times = []
    loss = float('nan')
    for s in range(-args.warmup, args.steps):
        t0 = time.perf_counter()
        out = step()
        dt = time.perf_counter() - t0
        loss = float(out)
        if s >= 0:
            times.append(dt * 1e3)
    ms = statistics.median(times)
    rss_kb = peak_rss_kb()
    gemm_ms = None
    if make_gemms is not None:
        gemms = make_gemms()
        gt = []
        for s in range(-args.warmup, args.steps):
            t0 = time.perf_counter()
            gemms()
            if s >= 0:
                gt.append((time.perf_counter() - t0) * 1e3)
        gemm_ms = statistics.median(gt)
    print(json.dumps({
        'bench': name, 'batch': args.batch, 'threads': args.threads,
        'steps': args.steps, 'ms_median': ms, 'ms_min': min(times),
        'samples_per_s': args.batch * 1e3 / ms, 'gemm_ms': gemm_ms,
        'peak_rss_kb': rss_kb,
        'allocs_per_step': None, 'loss': loss}))
