/*
 * profile.c - the profiling hook: per-op counts, time and arena bytes of
 * a context's forward ops and backward nodes (tg_ctx_set_profile,
 * tg_profile_report, TG_PROFILE=1).
 *
 * Every op calls tg__record whether or not it records, so that is where a
 * forward op is counted: its time and bytes are those since the previous
 * mark on the context (the end of the previous op, of a backward, of a
 * reset, or the moment profiling was switched on), which is the op's own
 * cost when ops follow each other, as in a model's forward. Ops a backward
 * rule runs are part of their node's backward and are not counted on their
 * own. The backward driver times each node's backward (rule, broadcast
 * reduction, accumulation) and the final commit of leaf gradients.
 * Nothing here is touched when profiling is off but one flag test.
 */
#include "tape.h"
#include "tapegrad/autograd.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_ENTRIES (TG_OP_COUNT + 1) /* every op, then the commit of leaf grads */
#define COMMIT_NAME "(commit)"

struct tg__prof {
    tg_profile_stat e[N_ENTRIES];
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

void tg__profile_mark(tg_ctx *c)
{
    c->prof_t = now_ms();
    c->prof_used = c->used;
}

void tg__profile_init(tg_ctx *c)
{
    const char *env = getenv("TG_PROFILE");
    if (!env || !*env || strcmp(env, "0") == 0) return;
    tg_ctx_set_profile(c, true);
    c->prof_env = c->profile;
    tg_ctx_clear_error(c); /* without memory a new context just does not profile */
}

/* True when c counted anything. */
static bool counted(const tg_ctx *c)
{
    for (int i = 0; c->prof && i < N_ENTRIES; i++)
        if (c->prof->e[i].fwd_calls || c->prof->e[i].bwd_calls) return true;
    return false;
}

void tg__profile_free(tg_ctx *c)
{
    if (c->prof_env && counted(c)) tg_profile_report(c, stderr);
    tg__heap_free(c, c->prof, sizeof *c->prof);
    c->prof = NULL;
}

/* Adds the time and bytes since the last mark to entry i, then marks. */
static void charge(tg_ctx *c, int i, int bwd)
{
    double t = now_ms();
    tg_profile_stat *e = &c->prof->e[i];
    size_t bytes = c->used >= c->prof_used ? c->used - c->prof_used : c->used;
    if (bwd) {
        e->bwd_calls++;
        e->bwd_ms += t - c->prof_t;
        e->bwd_bytes += (int64_t)bytes;
    } else {
        e->fwd_calls++;
        e->fwd_ms += t - c->prof_t;
        e->fwd_bytes += (int64_t)bytes;
    }
    c->prof_t = t;
    c->prof_used = c->used;
}

void tg__profile_forward(tg_ctx *c, tg_op op)
{
    if (!c->backward_of) charge(c, (int)op, 0);
}

void tg__profile_backward(tg_ctx *c, tg_op op) { charge(c, (int)op, 1); }

void tg__profile_commit(tg_ctx *c) { charge(c, TG_OP_COUNT, 1); }

/* ---- public ------------------------------------------------------------ */

bool tg_ctx_set_profile(tg_ctx *c, bool on)
{
    if (!c) return false;
    bool prev = c->profile;
    if (on && !c->prof) {
        c->prof = tg__heap_alloc(c, sizeof *c->prof);
        if (!c->prof) {
            tg__fail(c, TG_ERR_NOMEM, "tg_ctx_set_profile: out of memory");
            return prev;
        }
        memset(c->prof, 0, sizeof *c->prof);
    }
    c->profile = on;
    if (on) tg__profile_mark(c);
    return prev;
}

bool tg_profile_enabled(const tg_ctx *c) { return c && c->profile; }

void tg_profile_reset(tg_ctx *c)
{
    if (!c || !c->prof) return;
    memset(c->prof, 0, sizeof *c->prof);
    tg__profile_mark(c);
}

static const char *entry_name(int i) { return i == TG_OP_COUNT ? COMMIT_NAME : tg_op_name(i); }

bool tg_profile_get(const tg_ctx *c, const char *name, tg_profile_stat *out)
{
    if (!c || !name || !out) return false;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < N_ENTRIES; i++) {
        if (strcmp(entry_name(i), name) != 0) continue;
        if (c->prof) *out = c->prof->e[i];
        return true;
    }
    return false;
}

static double total_ms(const tg_profile_stat *e) { return e->fwd_ms + e->bwd_ms; }

tg_status tg_profile_report(const tg_ctx *c, FILE *f)
{
    if (!c || !f) return TG_ERR_INVALID;
    int order[N_ENTRIES], n = 0;
    tg_profile_stat sum;
    memset(&sum, 0, sizeof sum);
    for (int i = 0; c->prof && i < N_ENTRIES; i++) {
        const tg_profile_stat *e = &c->prof->e[i];
        if (!e->fwd_calls && !e->bwd_calls) continue;
        int k = n++; /* insertion sort by total time, largest first */
        while (k > 0 && total_ms(&c->prof->e[order[k - 1]]) < total_ms(e)) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = i;
        sum.fwd_calls += e->fwd_calls;
        sum.bwd_calls += e->bwd_calls;
        sum.fwd_ms += e->fwd_ms;
        sum.bwd_ms += e->bwd_ms;
        sum.fwd_bytes += e->fwd_bytes;
        sum.bwd_bytes += e->bwd_bytes;
    }
    fprintf(f, "tapegrad profile: %-22s %9s %11s %10s %9s %11s %10s\n", "op", "fwd n", "fwd ms",
            "fwd MB", "bwd n", "bwd ms", "bwd MB");
    for (int k = 0; k <= n; k++) {
        const tg_profile_stat *e = k < n ? &c->prof->e[order[k]] : &sum;
        fprintf(f, "tapegrad profile: %-22s %9lld %11.3f %10.3f %9lld %11.3f %10.3f\n",
                k < n ? entry_name(order[k]) : "total", (long long)e->fwd_calls, e->fwd_ms,
                (double)e->fwd_bytes / 1e6, (long long)e->bwd_calls, e->bwd_ms,
                (double)e->bwd_bytes / 1e6);
    }
    return ferror(f) ? TG_ERR_IO : TG_OK;
}
