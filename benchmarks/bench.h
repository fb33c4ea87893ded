/*
 * bench.h - the harness shared by the benchmark programs of benchmarks/.
 *
 * Each program describes one workload (a model, its data and one training
 * step) as a bench_workload and hands it to bench_main(), which parses the
 * command line, builds the model in a persistent context and the step in a
 * step context (both with a counting allocator hook), runs warm-up and
 * timed steps, optionally times the step's GEMMs alone through raw
 * cblas_sgemm in turns with more steps (ms_paired: the step time to
 * compare gemm_ms with), and prints one JSON line of figures on stdout:
 *
 *   {"bench": "mlp", "batch": 128, "threads": 1, "steps": 200,
 *    "ms_median": ..., "ms_min": ..., "samples_per_s": ...,
 *    "gemm_ms": ..., "ms_paired": ..., "peak_rss_kb": ..., "allocs_per_step": ..., "loss": ...}
 *
 * Options: --batch N, --threads N (tapegrad's and OpenBLAS's budget),
 * --steps N (timed), --warmup N, --tiny (a few steps: the CI smoke run),
 * --no-gemm (skip the GEMMs-alone timing), --keep-activations (the
 * workloads that release their activations in the backward, see
 * bench_backward, keep them instead, and give nothing back in the
 * forward), --no-recompute (bench_give_back does nothing and
 * bench_recomputes is false: the LSTM keeps its gates), --three-calls
 * (bench_step runs zero_grad, the backward and the optimizer's step
 * instead of tg_backward_step).
 */
#ifndef TG_BENCH_H
#define TG_BENCH_H

#include <tapegrad.h>

/* One C = op(A) op(B) + beta C of a step, row-major, as the engine issues
 * it: m x n output, inner k. */
typedef struct {
    int m, n, k;
    int trans_a, trans_b;
    float beta;
} bench_gemm;

typedef struct {
    const char *name;
    int64_t default_batch;
    /* Builds the model, its optimizer and fixed synthetic data in pc; the
     * returned state is the workload's own (allocated in pc's arena or
     * static). NULL on failure (message on pc). */
    void *(*setup)(tg_ctx *pc, int64_t batch);
    /* One training step in sc (already reset): forward, loss, backward,
     * optimizer step. Returns the loss, or NaN with the error on sc. */
    double (*step)(void *state, tg_ctx *sc);
    /* The GEMMs one step performs (NULL: none listed); returns how many
     * it wrote to g (at most max). */
    int (*gemms)(void *state, int64_t batch, bench_gemm *g, int max);
} bench_workload;

/* Appends to g[*ng] (up to max) the GEMMs of one tg_linear forward and
 * backward, as tapegrad and PyTorch issue them: y = x W^T (rows x out,
 * inner in), dW = dy^T x, and dx = dy W when need_dx. */
void bench_linear_gemms(bench_gemm *g, int *ng, int max, int rows, int in, int out,
                        bool need_dx);
/* Appends one GEMM. */
void bench_add_gemm(bench_gemm *g, int *ng, int max, int m, int n, int k, int trans_a,
                    int trans_b, float beta);

/* The step's backward: tg_backward_release, which gives the forward's
 * memory back as the walk goes (as PyTorch frees a graph's saved tensors),
 * or tg_backward under --keep-activations. */
tg_status bench_backward(tg_ctx *sc, tg_tensor *loss);

/* The step's backward and optimizer step: tg_backward_step (the optimizer's
 * parameters never hold a grad), or under --three-calls or
 * --keep-activations tg_optim_zero_grad, bench_backward and
 * tg_optim_step. */
tg_status bench_step(tg_ctx *sc, tg_tensor *loss, tg_optim *opt);

/* tg_recompute_later(t): the workload's forward has no more use for t
 * (unless --keep-activations or --no-recompute). An error stays on t's
 * context, and the step fails with it. */
void bench_give_back(tg_tensor *t);

/* Whether the workload recomputes in the backward what its forward could
 * keep (bench_give_back, an LSTM's gates): true unless --keep-activations
 * or --no-recompute. Valid once bench_main has parsed the command line
 * (in setup and step). */
bool bench_recomputes(void);

/* Runs the workload as the command line asks; returns the exit status. */
int bench_main(int argc, char **argv, const bench_workload *w);

/* Uniform floats in [lo, hi) from a fixed LCG, the same stream for the
 * same seed (data only; the models use tapegrad's RNG). */
void bench_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed);
/* Integers in [0, k) from the same generator. */
void bench_fill_labels(int64_t *y, int64_t n, int64_t k, uint64_t seed);

#endif /* TG_BENCH_H */
