/*
 * dist_impl.h - what the MPI tests need of src/dist/mpi.c beyond dist.h.
 * Library-internal; only in builds with MPI.
 */
#ifndef TG_DIST_IMPL_H
#define TG_DIST_IMPL_H

#include "tapegrad/dist.h"

/* Turns the failed MPI call's code rc into TG_ERR_IO on c with MPI's own
 * text: "fn: call failed: <MPI_Error_string(rc)>". Returns TG_ERR_IO. */
tg_status tg__dist_mpi_fail(tg_ctx *c, const char *fn, const char *call, int rc);

/* The number of live tg_dist handles and whether tapegrad initialised MPI
 * (and so will finalize it with the last handle). */
int tg__dist_live(void);
bool tg__dist_owns_mpi(void);

#endif /* TG_DIST_IMPL_H */
