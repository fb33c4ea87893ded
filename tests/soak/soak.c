/*
 * soak.c - the long run: trains the small MLP and conv net of
 * tests/train_fixture.c (dropout, Adam, a seeded batcher) for many
 * thousands of steps, saving and reading back a checkpoint of the model
 * every --save-every steps, and checks that resident memory stays flat.
 *
 *   soak [--steps N] [--warmup W] [--every K] [--bound-kib B] [--threads T]
 *        [--save-every S] [--dir DIR] [--leak BYTES]
 *
 * Defaults: 20,000 steps of each model, warm-up 1,000, RSS read from
 * /proc/self/statm every 500 steps, bound 256 KiB, 2 threads, a save
 * every 1,000 steps into $TMPDIR (or /tmp). --leak BYTES leaks that many
 * bytes of heap per step on purpose, to see the check fail (a leak of 16
 * bytes a step already exceeds the bound over the default run). After the warm-up, the
 * resident set may not grow by more than the bound over its value at the
 * end of the warm-up; any error or non-finite loss fails too. Prints one
 * line per check and a summary; exit status 0 on success, 1 on failure.
 *
 * Not part of the default test run: `meson test -C build --suite soak`
 * or `./dev.sh soak` (README, "Reliability").
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tapegrad.h>

#include "../train_fixture.h"

typedef struct {
    long steps, warmup, every, bound_kib, save_every, leak;
    int threads;
    const char *dir;
} soak_opts;

/* Resident set size in KiB, from /proc/self/statm; -1 if unreadable. */
static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    long size = 0, resident = -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Saves the model's parameters and buffers and reads them back into it. */
static bool save_and_load(tf_run *r, const char *path)
{
    int np = tg_model_nparams(r->m), nb = tg_model_nbuffers(r->m);
    tg_tensor *all[64];
    if (np + nb > 64) return false;
    for (int i = 0; i < np; i++) all[i] = tg_model_param(r->m, i);
    for (int i = 0; i < nb; i++) all[np + i] = tg_model_buffer(r->m, i);
    if (tg_safetensors_write(r->s, path, np + nb, all, NULL, 0, NULL, NULL) != TG_OK) return false;
    tg_safetensors *f = tg_safetensors_read(r->s, path);
    if (!f) return false;
    int n = tg_safetensors_count(f);
    tg_tensor *ts[64];
    for (int i = 0; i < n && i < 64; i++) ts[i] = tg_safetensors_tensor(f, i);
    bool ok = tg_model_load(r->m, n, NULL, ts, true) == TG_OK;
    tg_ctx_reset(r->s); /* the file's tensors live in the step context */
    return ok;
}

static bool soak(tf_kind kind, const soak_opts *o)
{
    const char *what = kind == TF_MLP ? "mlp" : "cnn";
    tf_run r;
    tf_opts to = {.kind = kind, .small = true, .threads = o->threads, .seed = 1};
    char path[512];
    snprintf(path, sizeof path, "%s/tg-soak-%ld-%s.safetensors", o->dir, (long)getpid(), what);
    bool ok = tf_new(&r, &to);
    if (!ok) fprintf(stderr, "soak %s: setup failed: %s\n", what, tf_error(&r));
    long base = -1, peak = -1;
    double first = NAN, last = NAN, t0 = now_s();
    for (long step = 1; ok && step <= o->steps; step++) {
        double l = tf_step(&r);
        if (!isfinite(l)) {
            fprintf(stderr, "soak %s: step %ld: loss %g: %s\n", what, step, l, tf_error(&r));
            ok = false;
            break;
        }
        if (o->leak > 0) { /* --leak: the self-test of the check */
            char *p = malloc((size_t)o->leak);
            if (p) memset(p, 1, (size_t)o->leak);
        }
        if (step == 1) first = l;
        last = l;
        if (o->save_every > 0 && step % o->save_every == 0 && !save_and_load(&r, path)) {
            fprintf(stderr, "soak %s: step %ld: checkpoint: %s\n", what, step, tf_error(&r));
            ok = false;
            break;
        }
        if (step % o->every != 0 && step != o->warmup) continue;
        long rss = rss_kib();
        if (rss < 0) {
            fprintf(stderr, "soak %s: cannot read /proc/self/statm\n", what);
            ok = false;
            break;
        }
        if (step == o->warmup) base = peak = rss;
        if (base >= 0 && rss > peak) peak = rss;
        printf("soak %s: step %6ld  loss %.4f  rss %ld KiB%s\n", what, step, l, rss,
               step < o->warmup ? "  (warm-up)" : "");
        if (base >= 0 && rss - base > o->bound_kib) {
            fprintf(stderr, "soak %s: step %ld: RSS %ld KiB grew %ld KiB over %ld KiB after the "
                    "warm-up (bound %ld KiB)\n",
                    what, step, rss, rss - base, base, o->bound_kib);
            ok = false;
        }
    }
    if (ok)
        printf("soak %s: %ld steps in %.1f s, loss %.4f -> %.4f, RSS %ld KiB after warm-up, "
               "peak %ld KiB (+%ld KiB)\n",
               what, o->steps, now_s() - t0, first, last, base, peak, peak - base);
    unlink(path);
    tf_free(&r);
    return ok;
}

static long arg_long(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "soak: %s needs a value\n", argv[*i]);
        exit(2);
    }
    char *end;
    long v = strtol(argv[++*i], &end, 10);
    if (*end || v < 0) {
        fprintf(stderr, "soak: bad value '%s' for %s\n", argv[*i], argv[*i - 1]);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *tmp = getenv("TMPDIR");
    soak_opts o = {20000, 1000, 500, 256, 1000, 0, 2, tmp && tmp[0] ? tmp : "/tmp"};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--steps") == 0) o.steps = arg_long(argc, argv, &i);
        else if (strcmp(argv[i], "--warmup") == 0) o.warmup = arg_long(argc, argv, &i);
        else if (strcmp(argv[i], "--every") == 0) o.every = arg_long(argc, argv, &i);
        else if (strcmp(argv[i], "--bound-kib") == 0) o.bound_kib = arg_long(argc, argv, &i);
        else if (strcmp(argv[i], "--save-every") == 0) o.save_every = arg_long(argc, argv, &i);
        else if (strcmp(argv[i], "--threads") == 0) o.threads = (int)arg_long(argc, argv, &i);
        else if (strcmp(argv[i], "--leak") == 0) o.leak = arg_long(argc, argv, &i);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) o.dir = argv[++i];
        else {
            fprintf(stderr, "usage: soak [--steps N] [--warmup W] [--every K] [--bound-kib B] "
                            "[--threads T] [--save-every S] [--dir DIR] [--leak BYTES]\n");
            return 2;
        }
    }
    if (o.every < 1 || o.warmup < 1 || o.warmup > o.steps || o.threads < 1) {
        fprintf(stderr, "soak: need every >= 1, 1 <= warmup <= steps, threads >= 1\n");
        return 2;
    }
    bool ok = soak(TF_MLP, &o);
    ok = soak(TF_CNN, &o) && ok;
    printf("soak: %s\n", ok ? "passed" : "FAILED");
    return ok ? 0 : 1;
}
