/*
 * tapegrad/dist.h - data-parallel training over MPI.
 *
 * These functions are in libtapegrad-dist, not libtapegrad: link with
 * `pkg-config --libs tapegrad-dist`, so programs that do not use them do
 * not load MPI.
 *
 * N processes (ranks), started by mpirun on one machine or several, each
 * hold a full copy of the model and train on their own shard of every
 * batch (tg_batcher_opts.rank / .world in data.h). After each backward,
 * tg_dist_allreduce_grads replaces every rank's gradients by their
 * weighted sum over the ranks, so every rank takes the same optimizer
 * step and the model copies stay identical: N ranks at batch B train like
 * one process at batch N*B.
 *
 *     tg_dist *d = tg_dist_init(p, NULL);              // p: persistent ctx
 *     tg_batcher_opts bo = tg_batcher_defaults();
 *     bo.batch_size = 64;                              // per rank
 *     bo.rank = tg_dist_rank(d);
 *     bo.world = tg_dist_world(d);                     // same seed everywhere
 *     ... make the model and the optimizer ...
 *     tg_dist_broadcast_model(d, model);               // rank 0's weights
 *     while ((m = tg_batcher_next(b, &idx)) > 0) {
 *         ... forward on the m rows, tg_backward ...
 *         tg_dist_allreduce_grads(d, tg_model_params(model),
 *                                 tg_model_nparams(model), tg_batcher_weight(b));
 *         tg_optim_step(opt);
 *         tg_optim_zero_grad(opt);
 *     }
 *     tg_dist_finalize(d);
 *
 * Every function that takes a tg_dist is collective: every rank of the
 * group must call it, in the same order, with tensors of the same count,
 * dtypes and shapes. Each call first agrees on that with one small
 * MPI_Allreduce, so a rank that passes other tensors, or whose context
 * already holds an error (a failed forward, say), makes the call fail on
 * every rank with the same status and a message naming the rank, instead
 * of a hang or a silently wrong sum. Keep calling on every rank after a
 * local failure, and stop together on the status.
 *
 * Errors of MPI calls never abort: the library's communicator (a duplicate
 * of the one given, MPI_COMM_WORLD by default) returns errors, which
 * become TG_ERR_IO with MPI's own message ("tg_dist_allreduce_grads:
 * MPI_Allreduce failed: MPI_ERR_TRUNCATE: message truncated"). Errors are
 * recorded on the context given to tg_dist_init, which is sticky as usual.
 *
 * Builds without MPI (meson -Dmpi=disabled, or no MPI found) have the same
 * functions: tg_dist_available() is false and tg_dist_init fails with
 * TG_ERR_UNSUPPORTED, so one program can be built against either.
 *
 * Threads: call these functions from one thread (MPI is initialised with
 * MPI_THREAD_FUNNELED); the context's kernel threads never call MPI.
 */
#ifndef TAPEGRAD_DIST_H
#define TAPEGRAD_DIST_H

#include "tensor.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A process's membership of a training group; opaque. */
typedef struct tg_dist tg_dist;

typedef struct {
    /* Bytes of one reduction bucket. Gradients are packed, converted to
     * double, into buckets of this size, one MPI_Allreduce each; parameters
     * and buffers are broadcast in buckets of the same size. At least 64;
     * default 4 MiB. Must be the same on every rank. */
    size_t bucket_bytes;
    /* NULL (the default): the group is MPI_COMM_WORLD. Otherwise a pointer
     * to an MPI_Comm of the caller (e.g. &my_comm), duplicated by
     * tg_dist_init, so the library's messages and error handler never
     * touch the caller's communicator. */
    const void *comm;
} tg_dist_opts;

/* Defaults: 4 MiB buckets, MPI_COMM_WORLD. */
tg_dist_opts tg_dist_defaults(void);

/* True when this build of tapegrad has MPI support. */
bool tg_dist_available(void);

/*
 * Joins the group (collective over the communicator). Initialises MPI
 * (MPI_Init_thread, MPI_THREAD_FUNNELED) unless the caller already did;
 * only then does the last tg_dist_finalize finalize it. Errors go to c,
 * which must outlive the result. opts NULL: tg_dist_defaults(). Returns a
 * handle the caller owns (free it with tg_dist_finalize), or NULL with the
 * error on c: TG_ERR_UNSUPPORTED (built without MPI), TG_ERR_INVALID (NULL
 * c, bucket_bytes < 64 or too large, *comm is MPI_COMM_NULL),
 * TG_ERR_MISUSE (MPI was already finalized in this process), TG_ERR_IO (an
 * MPI call failed), TG_ERR_NOMEM (on any rank: all ranks fail together),
 * or the error c already holds (then nothing is initialised).
 */
tg_dist *tg_dist_init(tg_ctx *c, const tg_dist_opts *opts);

/* This process's rank in [0, world), and the group's size. NULL gives
 * rank 0 of a world of 1, so single-process code can use them as is. */
int tg_dist_rank(const tg_dist *d);
int tg_dist_world(const tg_dist *d);

/*
 * grad(p) <- sum over ranks r of weight_r * grad_r(p), for each of the n
 * parameters (TG_F32 / TG_F64 contiguous leaves; their gradients are
 * written in place, versions bumped). weight is this rank's own factor:
 * 1.0 / world for a plain average, or tg_batcher_weight(b), this rank's
 * share of the global batch, which makes a last partial batch exact too.
 * A weight of 0 contributes zeros whatever the gradient holds (NaN too).
 * A parameter whose gradient is NULL on this rank contributes zeros; if
 * some rank has one, every rank gets the result (a gradient is allocated
 * in the parameter's context where missing); if none has, it stays NULL,
 * as one process would leave it.
 *
 * The sum is taken in double, packed into buckets of bucket_bytes, one
 * MPI_Allreduce each; the result is rounded once to the parameter's dtype.
 * Every rank gets bit-identical gradients (tested with 2 and 3 ranks), so
 * the model copies never drift apart. Allocates nothing after the first
 * call with a given parameter count, unless gradients are missing.
 *
 * Errors, on every rank alike where they concern the group: TG_ERR_INVALID
 * (NULL d or params with n > 0, n < 0, a NULL or non-float parameter, a
 * non-contiguous one, a weight that is not finite), TG_ERR_MISUSE (the
 * ranks passed different parameter counts, dtypes or shapes, or
 * different bucket sizes), the status of a rank whose context held an
 * error, TG_ERR_NOMEM, TG_ERR_IO (MPI). A failure before the reduction
 * leaves every gradient unchanged.
 */
tg_status tg_dist_allreduce_grads(tg_dist *d, tg_tensor *const *params, int n, double weight);

/*
 * Copies rank 0's values of the n tensors (any dtype, contiguous) into
 * every other rank's, in buckets of bucket_bytes, one MPI_Bcast each;
 * versions bumped. For parameters, buffers (batch-norm statistics) and
 * optimizer state at the start of a run, so differently initialised ranks
 * start identical. Errors as tg_dist_allreduce_grads (a tensor of another
 * dtype or shape on some rank is TG_ERR_MISUSE everywhere).
 */
tg_status tg_dist_broadcast_params(tg_dist *d, tg_tensor *const *tensors, int n);

/* tg_dist_broadcast_params of every parameter, then every buffer, of m. */
tg_status tg_dist_broadcast_model(tg_dist *d, tg_model *m);

/*
 * vals[i] <- sum over ranks of vals[i], i < n, in place: for metrics such
 * as the loss sum and the count of correct predictions. The same result
 * on every rank. Errors as tg_dist_allreduce_grads (TG_ERR_MISUSE when
 * the ranks pass different n).
 */
tg_status tg_dist_allreduce_sum(tg_dist *d, double *vals, int n);

/*
 * Leaves the group (collective) and frees d; the last handle of a process
 * whose MPI tg_dist_init initialised also finalizes MPI, and MPI cannot be
 * initialised again after that. NULL: TG_OK, nothing done. d is freed
 * even on error. Returns TG_OK or TG_ERR_IO (an MPI call failed; recorded
 * on d's context).
 */
tg_status tg_dist_finalize(tg_dist *d);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_DIST_H */
