/*
 * dist.c - the part of data-parallel training (dist.h) that every build
 * has: the defaults, and, in a build without MPI, the functions that say
 * so. The MPI implementation is mpi.c, compiled only when meson found MPI
 * (which then defines TG_HAVE_MPI for the library).
 *
 * The functions exist in both builds so a program links against either;
 * tg_dist_available() tells them apart at run time (see DECISIONS.md).
 */
#include "../core/core_impl.h"
#include "tapegrad/dist.h"

#include <string.h>

tg_dist_opts tg_dist_defaults(void)
{
    tg_dist_opts o;
    memset(&o, 0, sizeof o);
    o.bucket_bytes = (size_t)4 << 20;
    o.comm = NULL;
    return o;
}

#ifndef TG_HAVE_MPI

bool tg_dist_available(void) { return false; }

tg_dist *tg_dist_init(tg_ctx *c, const tg_dist_opts *opts)
{
    (void)opts;
    if (!tg__ok(c)) return NULL;
    tg__fail(c, TG_ERR_UNSUPPORTED,
             "tg_dist_init: this tapegrad was built without MPI "
             "(install an MPI such as libopenmpi-dev and configure with meson -Dmpi=enabled)");
    return NULL;
}

/* No tg_dist can exist in this build: every handle is NULL. */
int tg_dist_rank(const tg_dist *d)
{
    (void)d;
    return 0;
}

int tg_dist_world(const tg_dist *d)
{
    (void)d;
    return 1;
}

tg_status tg_dist_allreduce_grads(tg_dist *d, tg_tensor *const *params, int n, double weight)
{
    (void)d, (void)params, (void)n, (void)weight;
    return TG_ERR_INVALID;
}

tg_status tg_dist_broadcast_params(tg_dist *d, tg_tensor *const *tensors, int n)
{
    (void)d, (void)tensors, (void)n;
    return TG_ERR_INVALID;
}

tg_status tg_dist_broadcast_model(tg_dist *d, tg_model *m)
{
    (void)d, (void)m;
    return TG_ERR_INVALID;
}

tg_status tg_dist_allreduce_sum(tg_dist *d, double *vals, int n)
{
    (void)d, (void)vals, (void)n;
    return TG_ERR_INVALID;
}

tg_status tg_dist_finalize(tg_dist *d)
{
    (void)d;
    return TG_OK;
}

#endif /* !TG_HAVE_MPI */
