/*
 * mpi.c - data-parallel training over MPI (dist.h): joining the group,
 * the bucketed gradient all-reduce, broadcasts, and leaving.
 *
 * Every collective call starts with one small MPI_Allreduce (MPI_MAX) of a
 * header: this rank's failure (status, rank), and each of the call kind,
 * tensor count, a hash of the dtypes and shapes, and the bucket size next
 * to its negation, so that one reduction yields both the maximum and the
 * minimum over the ranks. A rank that failed locally (bad argument, an
 * error already on its context) still takes part, and every rank then
 * returns an error: a failure can never leave the others waiting in a
 * collective, and ranks that disagree on what they reduce fail cleanly
 * instead of reducing mismatched buffers.
 *
 * Gradients are then seen as one stream: n "has a gradient" flags, then
 * every parameter's elements in order, converted to double and multiplied
 * by the rank's weight. The stream is cut into buckets of bucket_bytes,
 * each reduced in place with one MPI_Allreduce(MPI_SUM) and unpacked,
 * rounded once to the parameter's dtype. Summing in double makes the sum
 * of the ranks' f32 values exact in practice (24-bit values in a 53-bit
 * sum), so the order in which MPI combines the ranks does not show in the
 * f32 result, and every rank unpacks the same doubles.
 *
 * Buffers come from the context's allocator hook and belong to the handle,
 * so a steady-state step allocates nothing. MPI itself is process-global:
 * the count of live handles and whether tapegrad initialised MPI are the
 * two statics here (one thread, see dist.h).
 */
#include "../tensor/tensor_impl.h"
#include "dist_impl.h"

#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

struct tg_dist {
    tg_ctx *c; /* where errors go; outlives the handle */
    MPI_Comm comm;
    int rank, world;
    size_t bucket_bytes;
    void *buf;         /* bucket_bytes */
    double *flags;     /* flag_cap reduced "has a gradient" flags */
    tg_tensor **fresh; /* flag_cap gradients allocated by this call */
    size_t flag_cap;
};

static int live_handles;
static bool owns_mpi;

int tg__dist_live(void) { return live_handles; }
bool tg__dist_owns_mpi(void) { return owns_mpi; }

bool tg_dist_available(void) { return true; }

tg_status tg__dist_mpi_fail(tg_ctx *c, const char *fn, const char *call, int rc)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS || len <= 0)
        snprintf(text, sizeof text, "MPI error code %d", rc);
    return tg__fail(c, TG_ERR_IO, "%s: %s failed: %s", fn, call, text);
}

int tg_dist_rank(const tg_dist *d) { return d ? d->rank : 0; }
int tg_dist_world(const tg_dist *d) { return d ? d->world : 1; }

/* ---- joining and leaving ---------------------------------------------- */

static void free_handle(tg_dist *d)
{
    tg_ctx *c = d->c;
    if (d->buf) tg__heap_free(c, d->buf, d->bucket_bytes);
    if (d->flags) tg__heap_free(c, d->flags, d->flag_cap * sizeof *d->flags);
    if (d->fresh) tg__heap_free(c, d->fresh, d->flag_cap * sizeof *d->fresh);
    tg__heap_free(c, d, sizeof *d);
}

tg_dist *tg_dist_init(tg_ctx *c, const tg_dist_opts *opts)
{
    const char *fn = "tg_dist_init";
    if (!tg__ok(c)) return NULL;
    tg_dist_opts o = opts ? *opts : tg_dist_defaults();
    if (o.bucket_bytes < 64 || o.bucket_bytes > (size_t)INT_MAX) {
        tg__fail(c, TG_ERR_INVALID, "%s: bucket_bytes %zu is outside [64, %d]", fn,
                 o.bucket_bytes, INT_MAX);
        return NULL;
    }
    int flag = 0, rc;
    if ((rc = MPI_Finalized(&flag)) != MPI_SUCCESS) {
        tg__dist_mpi_fail(c, fn, "MPI_Finalized", rc);
        return NULL;
    }
    if (flag) {
        tg__fail(c, TG_ERR_MISUSE,
                 "%s: MPI was finalized in this process and cannot be initialised again", fn);
        return NULL;
    }
    if ((rc = MPI_Initialized(&flag)) != MPI_SUCCESS) {
        tg__dist_mpi_fail(c, fn, "MPI_Initialized", rc);
        return NULL;
    }
    if (!flag) {
        int provided;
        if ((rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided)) != MPI_SUCCESS) {
            tg__dist_mpi_fail(c, fn, "MPI_Init_thread", rc);
            return NULL;
        }
        /* MPI is ours: errors not tied to our communicator must not abort
         * either. A caller who initialised MPI keeps their own handlers. */
        owns_mpi = true;
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    }
    MPI_Comm base = o.comm ? *(const MPI_Comm *)o.comm : MPI_COMM_WORLD;
    if (base == MPI_COMM_NULL) {
        tg__fail(c, TG_ERR_INVALID, "%s: the communicator is MPI_COMM_NULL", fn);
        return NULL;
    }
    MPI_Comm comm;
    if ((rc = MPI_Comm_dup(base, &comm)) != MPI_SUCCESS) {
        tg__dist_mpi_fail(c, fn, "MPI_Comm_dup", rc);
        return NULL;
    }
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);

    tg_dist *d = tg__heap_alloc(c, sizeof *d);
    if (d) {
        memset(d, 0, sizeof *d);
        d->c = c;
        d->comm = comm;
        d->bucket_bytes = o.bucket_bytes;
        d->buf = tg__heap_alloc(c, o.bucket_bytes);
        MPI_Comm_rank(comm, &d->rank);
        MPI_Comm_size(comm, &d->world);
    }
    /* Every rank learns whether all of them are ready. */
    int ok = d && d->buf, all_ok = 0;
    if ((rc = MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm)) != MPI_SUCCESS)
        tg__dist_mpi_fail(c, fn, "MPI_Allreduce", rc);
    else if (!ok)
        tg__fail(c, TG_ERR_NOMEM, "%s: out of memory for the handle and a %zu-byte bucket", fn,
                 o.bucket_bytes);
    else if (!all_ok)
        tg__fail(c, TG_ERR_NOMEM, "%s: another rank ran out of memory", fn);
    if (c->status != TG_OK) {
        if (d) free_handle(d);
        MPI_Comm_free(&comm);
        return NULL;
    }
    live_handles++;
    return d;
}

tg_status tg_dist_finalize(tg_dist *d)
{
    const char *fn = "tg_dist_finalize";
    if (!d) return TG_OK;
    tg_ctx *c = d->c;
    tg_status st = TG_OK;
    int rc = MPI_Comm_free(&d->comm);
    if (rc != MPI_SUCCESS) st = tg__dist_mpi_fail(c, fn, "MPI_Comm_free", rc);
    free_handle(d);
    if (--live_handles == 0 && owns_mpi) {
        owns_mpi = false;
        rc = MPI_Finalize();
        if (rc != MPI_SUCCESS && st == TG_OK) st = tg__dist_mpi_fail(c, fn, "MPI_Finalize", rc);
    }
    return st;
}

/* ---- agreeing on a call ------------------------------------------------- */

enum { CALL_GRADS = 1, CALL_BROADCAST, CALL_SUM };

/* FNV-1a over 64-bit words, kept below 2^62 so it can be negated. */
static uint64_t mix(uint64_t h, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* What every rank must agree on about a list of tensors. */
static uint64_t signature(tg_tensor *const *ts, int n)
{
    uint64_t h = mix(0xcbf29ce484222325ULL, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        h = mix(h, (uint64_t)ts[i]->dtype);
        h = mix(h, (uint64_t)ts[i]->ndim);
        for (int k = 0; k < ts[i]->ndim; k++) h = mix(h, (uint64_t)ts[i]->shape[k]);
    }
    return h >> 2;
}

/*
 * The header reduction. local is this rank's own verdict (TG_OK, or an
 * error already recorded on d->c). Returns TG_OK when every rank is fine
 * and all agree; otherwise an error, recorded on d->c, the same status on
 * every rank when a rank failed locally.
 */
static tg_status agree(tg_dist *d, const char *fn, int64_t call, tg_status local, int64_t n,
                       uint64_t sig)
{
    int64_t s = (int64_t)sig, cap = (int64_t)d->bucket_bytes;
    int64_t h[10] = {local, local != TG_OK ? d->rank : -1, call, -call, n, -n, s, -s, cap, -cap};
    int rc = MPI_Allreduce(MPI_IN_PLACE, h, 10, MPI_INT64_T, MPI_MAX, d->comm);
    if (rc != MPI_SUCCESS) return tg__dist_mpi_fail(d->c, fn, "MPI_Allreduce", rc);
    if (local != TG_OK) return local;
    tg_ctx *c = d->c;
    if (h[0] != TG_OK) {
        tg_status st = h[0] > TG_OK && h[0] < TG_STATUS_COUNT ? (tg_status)h[0] : TG_ERR_INVALID;
        return tg__fail(c, st, "%s: rank %lld of %d failed before the call (%s); nothing was done",
                        fn, (long long)h[1], d->world, tg_status_str(st));
    }
    if (h[2] != -h[3])
        return tg__fail(c, TG_ERR_MISUSE,
                        "%s: the ranks made different calls at this point (every rank must make "
                        "the same collective calls in the same order)",
                        fn);
    if (h[4] != -h[5])
        return tg__fail(c, TG_ERR_MISUSE, "%s: the ranks passed different counts, %lld to %lld",
                        fn, (long long)-h[5], (long long)h[4]);
    if (h[6] != -h[7])
        return tg__fail(c, TG_ERR_MISUSE,
                        "%s: the ranks passed tensors of different dtypes or shapes", fn);
    if (h[8] != -h[9])
        return tg__fail(c, TG_ERR_MISUSE,
                        "%s: the ranks use different bucket sizes, %lld to %lld bytes", fn,
                        (long long)-h[9], (long long)h[8]);
    return TG_OK;
}

/* Local checks of a tensor list: non-NULL, contiguous, and with floats
 * only a floating dtype. Sums the elements into *total. */
static tg_status check_tensors(tg_dist *d, const char *fn, tg_tensor *const *ts, int n,
                               bool floats, int64_t *total)
{
    tg_ctx *c = d->c;
    *total = 0;
    if (n < 0 || (n > 0 && !ts))
        return tg__fail(c, TG_ERR_INVALID, "%s: %d tensors at %p", fn, n, (const void *)ts);
    char buf[160];
    for (int i = 0; i < n; i++) {
        const tg_tensor *t = ts[i];
        if (!t) return tg__fail(c, TG_ERR_INVALID, "%s: tensor %d is NULL", fn, i);
        if (floats && !tg__is_float(t->dtype))
            return tg__fail(c, TG_ERR_INVALID, "%s: parameter %d, %s, is not floating", fn, i,
                            tg__describe(t, buf, sizeof buf));
        if (!tg_is_contiguous(t) || (t->grad && !tg_is_contiguous(t->grad)))
            return tg__fail(c, TG_ERR_INVALID, "%s: tensor %d, %s, is not contiguous", fn, i,
                            tg__describe(t, buf, sizeof buf));
        *total += tg_numel(t);
    }
    return TG_OK;
}

/* Room for n flags and fresh-gradient slots (grows, never shrinks). */
static tg_status reserve_flags(tg_dist *d, const char *fn, int n)
{
    if ((size_t)n <= d->flag_cap) return TG_OK;
    tg_ctx *c = d->c;
    double *f = tg__heap_alloc(c, (size_t)n * sizeof *f);
    tg_tensor **t = tg__heap_alloc(c, (size_t)n * sizeof *t);
    if (!f || !t) {
        if (f) tg__heap_free(c, f, (size_t)n * sizeof *f);
        if (t) tg__heap_free(c, t, (size_t)n * sizeof *t);
        return tg__fail(c, TG_ERR_NOMEM, "%s: out of memory for %d flags", fn, n);
    }
    if (d->flags) tg__heap_free(c, d->flags, d->flag_cap * sizeof *d->flags);
    if (d->fresh) tg__heap_free(c, d->fresh, d->flag_cap * sizeof *d->fresh);
    d->flags = f;
    d->fresh = t;
    d->flag_cap = (size_t)n;
    return TG_OK;
}

/* ---- the gradient all-reduce --------------------------------------------- */

/* Moves the cursor (parameter *pi, whose elements start at stream
 * position *p0) to the first parameter that ends after position s. */
static void advance(tg_tensor *const *ps, int n, int64_t s, int *pi, int64_t *p0)
{
    while (*pi < n && *p0 + tg_numel(ps[*pi]) <= s) *p0 += tg_numel(ps[(*pi)++]);
}

/* Stream positions [s, e) of this rank's weighted contribution into buf:
 * flags at [0, n), then parameter elements; *pi / *p0 is a cursor (the
 * parameter whose elements start at stream position p0), moved forward. */
static void pack_grads(const tg_dist *d, tg_tensor *const *ps, int n, double w, int64_t s,
                       int64_t e, double *buf, int *pi, int64_t *p0)
{
    for (int64_t k = s; k < e && k < n; k++) buf[k - s] = ps[k]->grad ? 1.0 : 0.0;
    advance(ps, n, s, pi, p0);
    int i = *pi;
    int64_t start = *p0;
    while (i < n && start < e) {
        /* a gradient attached by this call holds no contribution */
        const tg_tensor *g = d->fresh[i] ? NULL : ps[i]->grad;
        int64_t len = tg_numel(ps[i]);
        int64_t a = s > start ? s - start : 0, b = e - start < len ? e - start : len;
        double *dst = buf + (start + a - s);
        if (!g || w == 0) {
            memset(dst, 0, (size_t)(b - a) * sizeof *dst);
        } else if (g->dtype == TG_F32) {
            const float *src = (const float *)tg__ptr(g);
            for (int64_t k = a; k < b; k++) dst[k - a] = (double)src[k] * w;
        } else {
            const double *src = (const double *)tg__ptr(g);
            for (int64_t k = a; k < b; k++) dst[k - a] = src[k] * w;
        }
        start += len;
        i++;
    }
}

/* The reverse of pack_grads for reduced values, elements only (the
 * caller takes the flags): into the gradients of parameters some rank
 * had one for. */
static void unpack_grads(tg_dist *d, tg_tensor *const *ps, int n, int64_t s, int64_t e,
                         const double *buf, int pi, int64_t p0)
{
    int i = pi;
    int64_t start = p0;
    while (i < n && start < e) {
        int64_t len = tg_numel(ps[i]);
        if (d->flags[i] > 0.5) {
            tg_tensor *g = ps[i]->grad;
            int64_t a = s > start ? s - start : 0, b = e - start < len ? e - start : len;
            const double *src = buf + (start + a - s);
            if (g->dtype == TG_F32) {
                float *dst = (float *)tg__ptr(g);
                for (int64_t k = a; k < b; k++) dst[k] = (float)src[k - a];
            } else {
                memcpy((double *)tg__ptr(g) + a, src, (size_t)(b - a) * sizeof *src);
            }
        }
        start += len;
        i++;
    }
}

/* Gives a gradient to every parameter that some rank had one for and this
 * rank has not: all allocated before any is attached, so on failure no
 * parameter changes. */
static tg_status attach_missing(tg_dist *d, const char *fn, tg_tensor *const *ps, int n)
{
    for (int i = 0; i < n; i++) {
        tg_tensor *p = ps[i];
        if (d->flags[i] <= 0.5 || p->grad) continue;
        d->fresh[i] = tg__empty(p->ctx, fn, p->dtype, p->ndim, p->shape);
        if (!d->fresh[i]) {
            char buf[160];
            return tg__fail(d->c, TG_ERR_NOMEM, "%s: cannot allocate the gradient of %s: %s", fn,
                            tg__describe(p, buf, sizeof buf), tg_ctx_errmsg(p->ctx));
        }
    }
    for (int i = 0; i < n; i++)
        if (d->fresh[i]) ps[i]->grad = d->fresh[i];
    return TG_OK;
}

tg_status tg_dist_allreduce_grads(tg_dist *d, tg_tensor *const *params, int n, double weight)
{
    const char *fn = "tg_dist_allreduce_grads";
    if (!d) return TG_ERR_INVALID;
    tg_ctx *c = d->c;
    int64_t total = 0;
    tg_status local = c->status;
    if (local == TG_OK) local = check_tensors(d, fn, params, n, true, &total);
    if (local == TG_OK && !isfinite(weight))
        local = tg__fail(c, TG_ERR_INVALID, "%s: weight %g is not finite", fn, weight);
    if (local == TG_OK) local = reserve_flags(d, fn, n);
    tg_status st = agree(d, fn, CALL_GRADS, local, n, local == TG_OK ? signature(params, n) : 0);
    if (st != TG_OK) return st;

    const int64_t cap = (int64_t)(d->bucket_bytes / sizeof(double)), len = n + total;
    double *buf = d->buf;
    int pi = 0, ui = 0;
    int64_t p0 = n, u0 = n;
    bool attached = false;
    for (int i = 0; i < n; i++) d->fresh[i] = NULL;
    for (int64_t s = 0; s < len; s += cap) {
        int64_t e = len - s < cap ? len : s + cap;
        pack_grads(d, params, n, weight, s, e, buf, &pi, &p0);
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)(e - s), MPI_DOUBLE, MPI_SUM, d->comm);
        if (rc != MPI_SUCCESS) return tg__dist_mpi_fail(c, fn, "MPI_Allreduce", rc);
        if (c->status != TG_OK) continue; /* keep step with the others, write nothing */
        for (int64_t k = s; k < e && k < n; k++) d->flags[k] = buf[k - s];
        if (!attached && e >= n) {
            attached = true;
            if (attach_missing(d, fn, params, n) != TG_OK) continue;
        }
        advance(params, n, s, &ui, &u0);
        unpack_grads(d, params, n, s, e, buf, ui, u0);
    }
    if (c->status != TG_OK) return c->status;
    for (int i = 0; i < n; i++)
        if (d->flags[i] > 0.5) tg__bump_version(params[i]->grad->st);
    return TG_OK;
}

/* ---- broadcasts and sums ------------------------------------------------- */

static size_t nbytes_of(const tg_tensor *t) { return (size_t)tg_numel(t) * tg__esize(t->dtype); }

static tg_status broadcast(tg_dist *d, const char *fn, tg_tensor *const *ts, int n, tg_status local)
{
    tg_ctx *c = d->c;
    int64_t total = 0;
    if (local == TG_OK) local = c->status;
    if (local == TG_OK) local = check_tensors(d, fn, ts, n, false, &total);
    tg_status st = agree(d, fn, CALL_BROADCAST, local, n, local == TG_OK ? signature(ts, n) : 0);
    if (st != TG_OK) return st;

    size_t nbytes = 0;
    for (int i = 0; i < n; i++) nbytes += nbytes_of(ts[i]);
    char *buf = d->buf;
    int i = 0;
    size_t start = 0; /* stream offset of tensor i's first byte */
    for (size_t s = 0; s < nbytes; s += d->bucket_bytes) {
        size_t e = nbytes - s < d->bucket_bytes ? nbytes : s + d->bucket_bytes;
        /* the tensors overlapping [s, e), from tensor i on */
        int j = i;
        size_t t0 = start;
        if (d->rank == 0)
            for (; j < n && t0 < e; j++) {
                size_t tl = nbytes_of(ts[j]);
                size_t a = s > t0 ? s - t0 : 0, b = e - t0 < tl ? e - t0 : tl;
                memcpy(buf + (t0 + a - s), tg__ptr(ts[j]) + a, b - a);
                t0 += tl;
            }
        int rc = MPI_Bcast(buf, (int)(e - s), MPI_BYTE, 0, d->comm);
        if (rc != MPI_SUCCESS) return tg__dist_mpi_fail(c, fn, "MPI_Bcast", rc);
        for (j = i, t0 = start; d->rank != 0 && j < n && t0 < e; j++) {
            size_t tl = nbytes_of(ts[j]);
            size_t a = s > t0 ? s - t0 : 0, b = e - t0 < tl ? e - t0 : tl;
            memcpy(tg__ptr(ts[j]) + a, buf + (t0 + a - s), b - a);
            t0 += tl;
        }
        /* move the cursor past the tensors that end in this bucket */
        for (; i < n && start + nbytes_of(ts[i]) <= e; i++) start += nbytes_of(ts[i]);
    }
    if (d->rank != 0)
        for (int k = 0; k < n; k++) tg__bump_version(ts[k]->st);
    return TG_OK;
}

tg_status tg_dist_broadcast_params(tg_dist *d, tg_tensor *const *tensors, int n)
{
    if (!d) return TG_ERR_INVALID;
    return broadcast(d, "tg_dist_broadcast_params", tensors, n, TG_OK);
}

tg_status tg_dist_broadcast_model(tg_dist *d, tg_model *m)
{
    const char *fn = "tg_dist_broadcast_model";
    if (!d) return TG_ERR_INVALID;
    tg_status local = m ? TG_OK : tg__fail(d->c, TG_ERR_INVALID, "%s: the model is NULL", fn);
    tg_status st = broadcast(d, fn, tg_model_params(m), tg_model_nparams(m), local);
    if (st != TG_OK) return st;
    return broadcast(d, fn, tg_model_buffers(m), tg_model_nbuffers(m), TG_OK);
}

tg_status tg_dist_allreduce_sum(tg_dist *d, double *vals, int n)
{
    const char *fn = "tg_dist_allreduce_sum";
    if (!d) return TG_ERR_INVALID;
    tg_ctx *c = d->c;
    tg_status local = c->status;
    if (local == TG_OK && (n < 0 || (n > 0 && !vals)))
        local = tg__fail(c, TG_ERR_INVALID, "%s: %d values at %p", fn, n, (void *)vals);
    tg_status st = agree(d, fn, CALL_SUM, local, n, 0);
    if (st != TG_OK || n == 0) return st;
    int rc = MPI_Allreduce(MPI_IN_PLACE, vals, n, MPI_DOUBLE, MPI_SUM, d->comm);
    if (rc != MPI_SUCCESS) return tg__dist_mpi_fail(c, fn, "MPI_Allreduce", rc);
    return TG_OK;
}
