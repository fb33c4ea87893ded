/*
 * bench.c - the benchmark harness: command line, counting allocator,
 * timing, the GEMMs-alone replay and the JSON line (see bench.h).
 *
 * Only programs of benchmarks/ include cblas.h besides src/core/blas.c:
 * the GEMMs-alone figure must be raw BLAS, without tapegrad in between.
 * They take it from the library tapegrad loads (tg_blas_library), opened
 * again here after the peak was read: like tapegrad, a benchmark whose
 * products are all small (tiny, chain) does not carry BLAS in its peak.
 */
#include "bench.h"

#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_GEMMS 4096

typedef struct {
    unsigned long long allocs, frees;
} counter;

/* The allocator hook of both contexts: malloc/free, counted. */
static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    counter *k = ud;
    (void)osize;
    if (nsize == 0) {
        if (ptr) k->frees++;
        free(ptr);
        return NULL;
    }
    k->allocs++;
    return malloc(nsize);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* A field of /proc/self/status in kB ("VmHWM", "VmRSS"), or -1 where
 * there is no such file (not Linux) or no such field. VmHWM is this
 * image's own peak RSS: unlike getrusage's ru_maxrss it does not include
 * the peak of the process image that fork()ed and exec()ed us (the Python
 * driver), which Linux carries over into ru_maxrss at exec. */
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    size_t n = strlen(key);
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void bench_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed)
{
    uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = lo + (hi - lo) * (float)((s >> 40) * (1.0 / 16777216.0));
    }
}

void bench_fill_labels(int64_t *y, int64_t n, int64_t k, uint64_t seed)
{
    uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        y[i] = (int64_t)((s >> 33) % (uint64_t)k);
    }
}

/* The step's GEMMs on buffers of their own (one set per GEMM, as in the
 * step), for the raw cblas_sgemm replay, and the calls it makes. */
typedef struct {
    const bench_gemm *g;
    int ng;
    float **a, **b, **c;
    __typeof__(cblas_sgemm) *sgemm;
    void (*set_threads)(int); /* OpenBLAS's, or NULL */
} replay;

/* The replay's calls from tapegrad's BLAS library; false if there is none. */
static bool replay_blas(replay *r)
{
    const char *why, *file = tg_blas_library(&why);
    void *h = file ? dlopen(file, RTLD_NOW | RTLD_LOCAL) : NULL;
    void *f = h ? dlsym(h, "cblas_sgemm") : NULL;
    void *t = h ? dlsym(h, "openblas_set_num_threads") : NULL;
    if (!f) {
        fprintf(stderr, "no BLAS for the GEMMs-alone figure: %s\n", file ? dlerror() : why);
        return false;
    }
    memcpy(&r->sgemm, &f, sizeof f);
    if (t) memcpy(&r->set_threads, &t, sizeof t);
    return true; /* h stays open: the replay calls into it until the end */
}

static void replay_free(replay *r)
{
    for (int i = 0; r->a && r->b && r->c && i < r->ng; i++) {
        free(r->a[i]);
        free(r->b[i]);
        free(r->c[i]);
    }
    free(r->a);
    free(r->b);
    free(r->c);
    *r = (replay){0};
}

static bool replay_init(replay *r, const bench_gemm *g, int ng)
{
    *r = (replay){g, ng, calloc((size_t)ng, sizeof(float *)), calloc((size_t)ng, sizeof(float *)),
                  calloc((size_t)ng, sizeof(float *)), NULL, NULL};
    if (!r->a || !r->b || !r->c || !replay_blas(r)) {
        replay_free(r);
        return false;
    }
    for (int i = 0; i < ng; i++) {
        size_t sa = (size_t)g[i].m * (size_t)g[i].k, sb = (size_t)g[i].k * (size_t)g[i].n,
               sc = (size_t)g[i].m * (size_t)g[i].n;
        r->a[i] = malloc(sa * sizeof(float));
        r->b[i] = malloc(sb * sizeof(float));
        r->c[i] = calloc(sc ? sc : 1, sizeof(float));
        if (!r->a[i] || !r->b[i] || !r->c[i]) {
            replay_free(r);
            return false;
        }
        bench_fill_uniform(r->a[i], (int64_t)sa, -1.0f, 1.0f, 11u + (uint64_t)i);
        bench_fill_uniform(r->b[i], (int64_t)sb, -1.0f, 1.0f, 23u + (uint64_t)i);
    }
    return true;
}

/* The time of every GEMM of the step run once, in ms. */
static double replay_run(const replay *r, int threads)
{
    /* tapegrad keeps OpenBLAS on one thread and runs GEMM blocks on its own
     * threads (it sets OpenBLAS back to one before its next GEMM); the raw
     * reference gets OpenBLAS's own threads instead. */
    if (r->set_threads) r->set_threads(threads);
    double t0 = now_ms();
    for (int i = 0; i < r->ng; i++) {
        const bench_gemm *x = &r->g[i];
        int lda = x->trans_a ? x->m : x->k, ldb = x->trans_b ? x->k : x->n;
        r->sgemm(CblasRowMajor, x->trans_a ? CblasTrans : CblasNoTrans,
                 x->trans_b ? CblasTrans : CblasNoTrans, x->m, x->n, x->k, 1.0f, r->a[i],
                 lda > 0 ? lda : 1, r->b[i], ldb > 0 ? ldb : 1, x->beta, r->c[i],
                 x->n > 0 ? x->n : 1);
    }
    return now_ms() - t0;
}

void bench_add_gemm(bench_gemm *g, int *ng, int max, int m, int n, int k, int trans_a,
                    int trans_b, float beta)
{
    if (*ng >= max) return;
    g[(*ng)++] = (bench_gemm){m, n, k, trans_a, trans_b, beta};
}

void bench_linear_gemms(bench_gemm *g, int *ng, int max, int rows, int in, int out,
                        bool need_dx)
{
    bench_add_gemm(g, ng, max, rows, out, in, 0, 1, 1.0f); /* y = x W^T onto the bias */
    bench_add_gemm(g, ng, max, out, in, rows, 1, 0, 0.0f); /* dW = dy^T x */
    if (need_dx) bench_add_gemm(g, ng, max, rows, in, out, 0, 0, 0.0f); /* dx = dy W */
}

static int usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--batch N] [--threads N] [--steps N] [--warmup N] [--tiny] "
            "[--no-gemm] [--keep-activations] [--no-recompute] [--three-calls]\n",
            prog);
    return 2;
}

static bool parse_int(const char *s, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 0) return false;
    *out = v;
    return true;
}

static bool keep_activations, no_recompute, three_calls;

tg_status bench_backward(tg_ctx *sc, tg_tensor *loss)
{
    return keep_activations ? tg_backward(sc, loss) : tg_backward_release(sc, loss);
}

tg_status bench_step(tg_ctx *sc, tg_tensor *loss, tg_optim *opt)
{
    if (!keep_activations && !three_calls) return tg_backward_step(sc, loss, opt);
    tg_optim_zero_grad(opt);
    tg_status s = bench_backward(sc, loss);
    return s == TG_OK ? tg_optim_step(opt) : s;
}

bool bench_recomputes(void) { return !keep_activations && !no_recompute; }

void bench_give_back(tg_tensor *t)
{
    if (!keep_activations && !no_recompute) (void)tg_recompute_later(t); /* errors stay on t's context */
}

/* One step in sc, its time in *ms; false (message printed) on failure. */
static bool timed_step(const bench_workload *w, void *st, tg_ctx *pc, tg_ctx *sc, long s,
                       double *loss, double *ms)
{
    double t0 = now_ms();
    tg_ctx_reset(sc);
    *loss = w->step(st, sc);
    *ms = now_ms() - t0;
    if (tg_ctx_status(sc) == TG_OK && tg_ctx_status(pc) == TG_OK && isfinite(*loss)) return true;
    fprintf(stderr, "%s: step %ld failed: %s%s\n", w->name, s, tg_ctx_errmsg(sc),
            tg_ctx_errmsg(pc));
    return false;
}

/* The GEMMs-alone figure and the step time it is compared with, measured
 * in turns (PAIR_BLOCK replays, then PAIR_BLOCK steps, n of each) so that
 * the host's load, which changes within seconds here, weighs on both
 * medians alike. The replay runs on buffers of its own, allocated after
 * the peak RSS was read. Returns false on a failed step; leaves NaNs if
 * the replay's buffers cannot be had. */
#define PAIR_BLOCK 5
static bool paired_times(const bench_workload *w, void *st, tg_ctx *pc, tg_ctx *sc, long batch,
                         int n, int threads, double *loss, double *gemm_ms, double *step_ms)
{
    static bench_gemm g[MAX_GEMMS];
    *gemm_ms = *step_ms = NAN;
    int ng = w->gemms(st, batch, g, MAX_GEMMS);
    replay r;
    if (ng <= 0 || !replay_init(&r, g, ng)) return true;
    double *tr = calloc((size_t)n, sizeof *tr), *ts = calloc((size_t)n, sizeof *ts);
    bool ok = true;
    if (tr && ts) {
        (void)replay_run(&r, threads); /* warm-up: OpenBLAS's threads and buffer */
        (void)replay_run(&r, threads);
        for (int i0 = 0; ok && i0 < n; i0 += PAIR_BLOCK) {
            int m = n - i0 < PAIR_BLOCK ? n - i0 : PAIR_BLOCK;
            for (int i = i0; i < i0 + m; i++) tr[i] = replay_run(&r, threads);
            for (int i = i0; ok && i < i0 + m; i++)
                ok = timed_step(w, st, pc, sc, i, loss, &ts[i]);
        }
        if (ok) {
            *gemm_ms = median(tr, n);
            *step_ms = median(ts, n);
        }
    }
    free(tr);
    free(ts);
    replay_free(&r);
    return ok;
}

int bench_main(int argc, char **argv, const bench_workload *w)
{
    long batch = (long)w->default_batch, threads = 1, steps = 100, warmup = 10;
    bool tiny = false, gemm = true;
    for (int i = 1; i < argc; i++) {
        long *dst = NULL;
        if (strcmp(argv[i], "--batch") == 0) dst = &batch;
        else if (strcmp(argv[i], "--threads") == 0) dst = &threads;
        else if (strcmp(argv[i], "--steps") == 0) dst = &steps;
        else if (strcmp(argv[i], "--warmup") == 0) dst = &warmup;
        else if (strcmp(argv[i], "--tiny") == 0) tiny = true;
        else if (strcmp(argv[i], "--no-gemm") == 0) gemm = false;
        else if (strcmp(argv[i], "--keep-activations") == 0) keep_activations = true;
        else if (strcmp(argv[i], "--no-recompute") == 0) no_recompute = true;
        else if (strcmp(argv[i], "--three-calls") == 0) three_calls = true;
        else return usage(argv[0]);
        if (dst && (i + 1 >= argc || !parse_int(argv[++i], dst))) return usage(argv[0]);
    }
    if (batch < 1 || threads < 1 || steps < 1) return usage(argv[0]);
    if (tiny) {
        steps = 3;
        warmup = 2;
    }
    if (threads > 1 && gemm && w->gemms && !getenv("OPENBLAS_THREAD_TIMEOUT")) {
        /* OpenBLAS's idle threads spin for 2^28 cycles (about 0.1 s) after
         * each GEMM before they sleep, so after a replay block they would
         * take the second core from the steps that follow (ms_paired 1.9x
         * ms_median at 2 threads). 2^22 cycles is still far longer than any
         * gap between the replay's GEMMs. OpenBLAS reads this when it is
         * loaded, so the program starts again with it set. */
        if (setenv("OPENBLAS_THREAD_TIMEOUT", "22", 1) == 0) execv("/proc/self/exe", argv);
    }

    long rss_start = status_kb("VmRSS"); /* the binary and its libraries */
    counter k = {0, 0};
    tg_ctx_opts o = tg_ctx_defaults();
    o.alloc = counting_alloc;
    o.alloc_ud = &k;
    o.n_threads = (int)threads;
    tg_ctx *pc = tg_ctx_new_opts(&o), *sc = tg_ctx_new_opts(&o);
    if (!pc || !sc) {
        fprintf(stderr, "%s: cannot create contexts\n", w->name);
        return 1;
    }
    int rc = 1;
    double *t = calloc((size_t)steps, sizeof *t);
    void *st = t ? w->setup(pc, batch) : NULL;
    if (!st) {
        fprintf(stderr, "%s: setup failed: %s\n", w->name, tg_ctx_errmsg(pc));
        goto out;
    }
    long rss_setup = status_kb("VmRSS"); /* + parameters, optimizer state, data */
    long hwm_first = -1;
    double loss = NAN;
    unsigned long long allocs0 = 0;
    for (long s = -warmup; s < steps; s++) {
        if (s == 0) allocs0 = k.allocs;
        double dt;
        if (!timed_step(w, st, pc, sc, s, &loss, &dt)) goto out;
        if (s >= 0) t[s] = dt;
        if (s == -warmup) hwm_first = status_kb("VmHWM"); /* the first step, untimed */
    }
    double allocs = (double)(k.allocs - allocs0) / (double)steps;
    double ms_min = t[0];
    for (long s = 1; s < steps; s++) ms_min = t[s] < ms_min ? t[s] : ms_min;
    double ms = median(t, (int)steps);

    long peak = status_kb("VmHWM"); /* before the GEMM replay, whose buffers are not the step's */
    double gemm_ms = NAN, paired_ms = NAN;
    if (gemm && w->gemms && !paired_times(w, st, pc, sc, batch, tiny ? 2 : (int)steps,
                                          (int)threads, &loss, &gemm_ms, &paired_ms))
        goto out;
    printf("{\"bench\": \"%s\", \"batch\": %ld, \"threads\": %ld, \"steps\": %ld, "
           "\"ms_median\": %.6g, \"ms_min\": %.6g, \"samples_per_s\": %.6g, ",
           w->name, batch, threads, steps, ms, ms_min, (double)batch * 1e3 / ms);
    if (isnan(gemm_ms)) printf("\"gemm_ms\": null, \"ms_paired\": null, ");
    else printf("\"gemm_ms\": %.6g, \"ms_paired\": %.6g, ", gemm_ms, paired_ms);
    printf("\"peak_rss_kb\": %ld, \"rss_start_kb\": %ld, \"rss_setup_kb\": %ld, "
           "\"peak_rss_first_step_kb\": %ld, \"param_used_kb\": %zu, \"param_reserved_kb\": %zu, "
           "\"step_used_kb\": %zu, \"step_reserved_kb\": %zu, ",
           peak, rss_start, rss_setup, hwm_first, tg_ctx_bytes_used(pc) / 1024,
           tg_ctx_bytes_reserved(pc) / 1024, tg_ctx_bytes_used(sc) / 1024,
           tg_ctx_bytes_reserved(sc) / 1024);
    printf("\"allocs_per_step\": %.6g, \"loss\": %.6g}\n", allocs, loss);
    rc = 0;
out:
    free(t);
    tg_ctx_free(sc);
    tg_ctx_free(pc);
    return rc;
}
