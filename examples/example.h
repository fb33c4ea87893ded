/*
 * example.h - the little the examples share that is not about tapegrad:
 * a table-driven command-line parser, an error report for a context,
 * temperature sampling from a row of logits and a wall clock. Not part of the library;
 * every example still uses the library through <tapegrad.h> alone.
 *
 * Options are a table:
 *
 *     int64_t steps = 1000;
 *     double lr = 0.01;
 *     const ex_opt opts[] = {
 *         {"steps", EX_INT, &steps, "optimizer steps"},
 *         {"lr", EX_DOUBLE, &lr, "learning rate"},
 *         {0},
 *     };
 *     int rc = ex_parse(argc, argv, "xor [options]", opts, 0, NULL);
 *     if (rc >= 0) return rc;   (0 after --help, 2 after a bad option)
 *
 * accepts "--steps 200" and "--steps=200", and prints the table for --help.
 */
#ifndef TAPEGRAD_EXAMPLE_H
#define TAPEGRAD_EXAMPLE_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tapegrad.h>

typedef enum { EX_INT, EX_DOUBLE, EX_STRING } ex_kind;

typedef struct {
    const char *name; /* without the leading "--"; NULL ends the table */
    ex_kind kind;     /* the type *value has: int64_t, double or const char * */
    void *value;      /* holds the default, receives the option's value */
    const char *help;
} ex_opt;

/* Stores text into o's value; false (the value unchanged) if it is not a
 * number of o's kind. */
static inline bool ex_set(const ex_opt *o, const char *text)
{
    char *end = NULL;
    errno = 0;
    if (o->kind == EX_STRING) {
        *(const char **)o->value = text;
        return true;
    }
    long long i = o->kind == EX_INT ? strtoll(text, &end, 10) : 0;
    double d = o->kind == EX_DOUBLE ? strtod(text, &end) : 0;
    if (errno != 0 || end == text || *end != '\0') return false;
    if (o->kind == EX_INT) *(int64_t *)o->value = i;
    else *(double *)o->value = d;
    return true;
}

static inline void ex_usage(FILE *f, const char *usage, const ex_opt *opts)
{
    fprintf(f, "usage: %s\noptions:\n", usage);
    for (const ex_opt *o = opts; o->name; o++) {
        char def[64];
        switch (o->kind) {
        case EX_INT: snprintf(def, sizeof def, "%lld", (long long)*(int64_t *)o->value); break;
        case EX_DOUBLE: snprintf(def, sizeof def, "%g", *(double *)o->value); break;
        case EX_STRING: snprintf(def, sizeof def, "%s", *(const char **)o->value); break;
        }
        fprintf(f, "  --%-14s %s (default %s)\n", o->name, o->help, def);
    }
}

/*
 * Parses argv: options from the table (NULL-terminated), and exactly npos
 * positional arguments stored in pos[0..npos-1]. Returns -1 when the
 * program should go on, 0 after printing --help, 2 after printing an
 * error and the usage (a bad or unknown option, a missing value, the
 * wrong number of positional arguments).
 */
static inline int ex_parse(int argc, char **argv, const char *usage, const ex_opt *opts, int npos,
                           const char **pos)
{
    int got = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            ex_usage(stdout, usage, opts);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (got == npos) {
                fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], a);
                ex_usage(stderr, usage, opts);
                return 2;
            }
            pos[got++] = a;
            continue;
        }
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        const ex_opt *o = opts;
        while (o->name && !(strlen(o->name) == len && strncmp(o->name, a + 2, len) == 0)) o++;
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!o->name || !val || !ex_set(o, val)) {
            fprintf(stderr, "%s: %s '%s'\n", argv[0],
                    !o->name ? "unknown option" : !val ? "missing value for" : "bad value for", a);
            ex_usage(stderr, usage, opts);
            return 2;
        }
    }
    if (got != npos) {
        fprintf(stderr, "%s: expected %d argument%s\n", argv[0], npos, npos == 1 ? "" : "s");
        ex_usage(stderr, usage, opts);
        return 2;
    }
    return -1;
}

/*
 * The two contexts of a training program: *p, persistent (data, model,
 * gradients, optimizer state), and *s, for one step's graph, reset after
 * every step. Both draw random numbers from the given seed; threads is the
 * kernel thread count (0: $TG_NUM_THREADS, else every core). Returns true,
 * or false (both NULL, nothing to free) after printing why.
 */
static inline bool ex_contexts(const char *prog, int64_t seed, int64_t threads, tg_ctx **p,
                               tg_ctx **s)
{
    tg_ctx_opts co = tg_ctx_defaults();
    co.seed = (uint64_t)seed;
    co.n_threads = threads >= 0 && threads <= 1024 ? (int)threads : -1; /* -1: refused */
    *p = tg_ctx_new_opts(&co);
    *s = tg_ctx_new_opts(&co);
    if (*p && *s) return true;
    fprintf(stderr, "%s: cannot make the contexts (out of memory, or bad --threads)\n", prog);
    tg_ctx_free(*s);
    tg_ctx_free(*p);
    *p = *s = NULL;
    return false;
}

/* Prints "<what>: <status>: <message>" for c's sticky error and returns 1,
 * the exit status of a failed example. */
static inline int ex_fail(const tg_ctx *c, const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", what, tg_status_str(tg_ctx_status(c)), tg_ctx_errmsg(c));
    return 1;
}

/*
 * Draws an index from softmax(logits / temperature) over n entries, with u
 * a uniform number in [0, 1). temperature 0 (or less) takes the arg max;
 * 1 samples the model's own distribution; higher flattens it.
 */
static inline int64_t ex_sample(const float *logits, int64_t n, double temperature, double u)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature <= 0) return best;
    double total = 0;
    for (int64_t i = 0; i < n; i++) total += exp((logits[i] - logits[best]) / temperature);
    double r = u * total;
    for (int64_t i = 0; i < n; i++) {
        r -= exp((logits[i] - logits[best]) / temperature);
        if (r < 0) return i;
    }
    return best; /* u * total rounded up to total: the last bins are empty */
}

/* Wall-clock seconds, for timing epochs and steps. */
static inline double ex_now(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif /* TAPEGRAD_EXAMPLE_H */
