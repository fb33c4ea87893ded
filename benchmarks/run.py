#!/usr/bin/env python3
"""run.py - runs every benchmark of benchmarks/ and its PyTorch reference,
interleaved, in one sitting, and prints one table plus the issue's targets.

    python3 benchmarks/run.py [--build build] [--rounds 3] [--threads 1,2]
                              [--only mlp,tiny] [--quick] [--json out.json]

Each round runs every (workload, thread count) once for tapegrad and once
for PyTorch, in the same order, so background load on a shared machine hits
both alike; the table shows the median over rounds of each run's median
step time. With 2 threads PyTorch runs in two settings (2 intra-op threads
with 2 OpenBLAS threads, and 1 intra-op thread with 2 OpenBLAS threads) and
its better one is the reference. tapegrad gets --threads N and
TG_NUM_THREADS=N (one budget shared with OpenBLAS); OPENBLAS_NUM_THREADS=N
is set for both. Peak memory is each process image's own peak RSS (VmHWM of
/proc/self/status, see README.md); PyTorch's is also shown minus the same
figure of a process that only imports torch, and tapegrad's ("tg net")
minus its own VmRSS on entry (the binary and its shared libraries).
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PY = '/usr/bin/python3'

# (name, batch, timed steps, warm-up steps)
WORKLOADS = [
    ('mlp', 32, 200, 20), ('mlp', 128, 100, 10), ('mlp', 1024, 20, 3),
    ('tiny', 32, 5000, 200), ('chain', 1000, 300, 20),
    ('cnn', 64, 20, 3), ('gpt', 16, 20, 3), ('lstm', 16, 15, 2),
]


def run_json(cmd, env):
    e = dict(os.environ)
    e.update(env)
    out = subprocess.run(cmd, env=e, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit('failed: %s\n%s%s' % (' '.join(cmd), out.stdout, out.stderr))
    return json.loads(out.stdout.strip().splitlines()[-1])


def torch_import_rss():
    # VmHWM, as bench.c and torch_common.py measure: this image's own peak
    code = ('import torch\n'
            'print([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")][0])')
    return int(subprocess.run([PY, '-c', code], capture_output=True, text=True,
                              env=dict(os.environ, OPENBLAS_NUM_THREADS='1')).stdout)


def med(rs, key):
    v = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(v) if v else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--build', default='build')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--threads', default='1,2')
    p.add_argument('--only', default='')
    p.add_argument('--quick', action='store_true', help='a fifth of the steps, one round')
    p.add_argument('--json', help='write every raw result here')
    a = p.parse_args()
    if a.quick:
        a.rounds = 1
    threads = [int(t) for t in a.threads.split(',')]
    only = set(a.only.split(',')) if a.only else None
    work = [w for w in WORKLOADS if not only or w[0] in only]
    bindir = os.path.join(a.build, 'benchmarks')

    res = {}  # (name, batch, threads, who) -> [results]
    base = []
    for r in range(a.rounds):
        base.append(torch_import_rss())
        for (name, batch, steps, warm) in work:
            if a.quick:
                steps, warm = max(3, steps // 5), max(2, warm // 5)
            common = ['--batch', str(batch), '--steps', str(steps), '--warmup', str(warm)]
            for t in threads:
                env = {'OPENBLAS_NUM_THREADS': str(t), 'TG_NUM_THREADS': str(t),
                       'OMP_NUM_THREADS': str(t)}
                tg = run_json([os.path.join(bindir, 'bench_' + name), '--threads', str(t)]
                              + common, env)
                res.setdefault((name, batch, t, 'tg'), []).append(tg)
                settings = [(t, t)] if t == 1 else [(t, t), (1, t)]
                for intra, blas in settings:
                    env = {'OPENBLAS_NUM_THREADS': str(blas), 'OMP_NUM_THREADS': str(intra)}
                    pt = run_json([PY, os.path.join(HERE, 'torch_%s.py' % name), '--threads',
                                   str(intra)] + common, env)
                    pt['setting'] = '%d/%d' % (intra, blas)
                    res.setdefault((name, batch, t, 'pt' + pt['setting']), []).append(pt)
            print('round %d: %s batch %d done' % (r + 1, name, batch), file=sys.stderr)

    import_kb = statistics.median(base)
    rows = []
    for (name, batch, _, _) in work:
        for t in threads:
            tg = res[(name, batch, t, 'tg')]
            pts = [(k[3][2:], v) for k, v in res.items() if k[:3] == (name, batch, t) and k[3] != 'tg']
            setting, pt = min(pts, key=lambda kv: med(kv[1], 'ms_median'))
            row = {'bench': name, 'batch': batch, 'threads': t, 'torch_setting': setting,
                   'tg_ms': med(tg, 'ms_median'), 'pt_ms': med(pt, 'ms_median'),
                   'gemm_ms': med(tg, 'gemm_ms'), 'paired_ms': med(tg, 'ms_paired'),
                   'pt_gemm_ms': med(pt, 'gemm_ms'),
                   'tg_rss_kb': med(tg, 'peak_rss_kb'),
                   'pt_rss_kb': med(pt, 'peak_rss_kb'), 'allocs': med(tg, 'allocs_per_step')}
            # each round's PyTorch run over the tapegrad run just before it,
            # then the median: the pairs share the host's load of the moment
            row['speedup'] = statistics.median(p['ms_median'] / t['ms_median']
                                               for t, p in zip(tg, pt))
            # the step against its GEMMs alone, both timed in turns in one
            # process (bench.c's paired_times)
            row['step_gemm'] = (row['paired_ms'] / row['gemm_ms']) if row['gemm_ms'] else None
            row['pt_rss_net_kb'] = row['pt_rss_kb'] - import_kb
            # the same subtraction on our side: the process once its binary
            # and libraries are loaded, before any tensor
            row['tg_rss_net_kb'] = row['tg_rss_kb'] - med(tg, 'rss_start_kb')
            rows.append(row)

    print_table(rows, import_kb, a.rounds)
    print_targets(rows)
    if a.json:
        with open(a.json, 'w') as f:
            json.dump({'rows': rows, 'raw': {'|'.join(map(str, k)): v for k, v in res.items()},
                       'import_torch_rss_kb': import_kb}, f, indent=1)


def fmt_ms(ms):
    return '%.4f' % ms if ms < 0.1 else ('%.3f' % ms if ms < 10 else '%.1f' % ms)


def print_table(rows, import_kb, rounds):
    print('tapegrad vs PyTorch %s, %s, median of %d round(s); torch RSS net = minus %.0f MB '
          'of `import torch`' % (torch_version(), datetime.date.today().isoformat(), rounds,
                                 import_kb / 1024))
    hdr = ('bench', 'batch', 'thr', 'tg ms', 'torch ms', 'tg/s', 'torch/s', 'tg/torch',
           'GEMM ms', 'step/GEMM', 'tg MB', 'tg net MB', 'torch MB', 'net MB', 'allocs',
           'torch thr')
    print('| ' + ' | '.join(hdr) + ' |')
    print('|' + '---|' * len(hdr))
    for r in rows:
        gm = r['gemm_ms']
        print('| ' + ' | '.join([
            r['bench'], str(r['batch']), str(r['threads']), fmt_ms(r['tg_ms']), fmt_ms(r['pt_ms']),
            '%.0f' % (r['batch'] * 1e3 / r['tg_ms']), '%.0f' % (r['batch'] * 1e3 / r['pt_ms']),
            '%.2fx' % r['speedup'], fmt_ms(gm) if gm else '-',
            '%.2f' % r['step_gemm'] if gm else '-', '%.1f' % (r['tg_rss_kb'] / 1024),
            '%.1f' % (r['tg_rss_net_kb'] / 1024), '%.1f' % (r['pt_rss_kb'] / 1024), '%.1f' % (r['pt_rss_net_kb'] / 1024),
            '%g' % r['allocs'], r['torch_setting']]) + ' |')
    print('(chain: batch = ops in the chain; per op tapegrad %s, PyTorch %s; torch thr = '
          'intra-op/OpenBLAS threads of the better PyTorch setting)' % (
              ', '.join('%.3f us (%d thr)' % (r['tg_ms'], r['threads']) for r in rows if r['bench'] == 'chain'),
              ', '.join('%.2f us (%d thr)' % (r['pt_ms'], r['threads']) for r in rows if r['bench'] == 'chain')))


def torch_version():
    out = subprocess.run([PY, '-c', 'import torch; print(torch.__version__)'],
                         capture_output=True, text=True)
    return 'torch ' + out.stdout.strip()


def speedup_fig(r):
    """r's speedup, with what an engine whose step took only PyTorch's own
    GEMM time (same OpenBLAS, same products) would reach, when the PyTorch
    script times its GEMMs (torch_mlp.py, torch_gpt.py)."""
    fig = '%.2fx' % r['speedup']
    if r['pt_gemm_ms']:
        fig += (' (PyTorch step / its GEMMs alone %.3f ms: %.2fx)'
                % (r['pt_gemm_ms'], r['pt_ms'] / r['pt_gemm_ms']))
    return fig


def print_targets(rows):
    def get(name, batch, t):
        for r in rows:
            if (r['bench'], r['batch'], r['threads']) == (name, batch, t):
                return r
        return None

    checks = []
    for t in (1, 2):
        m = get('mlp', 128, t)
        if m and m['gemm_ms']:
            checks.append(('MLP b128 %dt: step <= 1.15x GEMMs alone' % t, m['step_gemm'] <= 1.15,
                           '%.2fx' % m['step_gemm']))
        if m:
            need = 1.7 if t == 1 else 1.0
            checks.append(('MLP b128 %dt: >= %.1fx PyTorch throughput' % (t, need),
                           m['speedup'] >= need, speedup_fig(m)))
        r = get('tiny', 32, t)
        if r and t == 1:
            checks.append(('tiny: < 4 us/step', r['tg_ms'] * 1e3 < 4, '%.2f us' % (r['tg_ms'] * 1e3)))
            checks.append(('tiny: >= 100x PyTorch', r['speedup'] >= 100, '%.0fx' % r['speedup']))
        r = get('chain', 1000, t)
        if r and t == 1:
            checks.append(('chain: < 0.2 us/op', r['tg_ms'] < 0.2, '%.3f us' % r['tg_ms']))
            checks.append(('chain: >= 70x PyTorch', r['speedup'] >= 70, '%.0fx' % r['speedup']))
        for name, batch in (('cnn', 64), ('gpt', 16), ('lstm', 16)):
            r = get(name, batch, t)
            if r:
                checks.append(('%s %dt: >= 1.3x PyTorch throughput' % (name, t), r['speedup'] >= 1.3,
                               speedup_fig(r)))
    for r in rows:
        # the target compares our whole process with PyTorch's net figure;
        # net against net (both minus their start: the binary and the
        # libraries loaded with it, not a BLAS loaded later) beside it
        pt = r['pt_rss_net_kb'] if r['pt_rss_net_kb'] > 0 else float('nan')
        ratio, net = r['tg_rss_kb'] / pt, r['tg_rss_net_kb'] / pt
        checks.append(('memory %s b%d %dt: <= 0.5x PyTorch net' % (r['bench'], r['batch'], r['threads']),
                       ratio <= 0.5, '%.2fx (net of start %.2fx)' % (ratio, net)))
    print()
    print('targets:')
    for what, ok, fig in checks:
        print('  %-48s %-8s %s' % (what, 'met' if ok else 'NOT met', fig))


if __name__ == '__main__':
    main()
