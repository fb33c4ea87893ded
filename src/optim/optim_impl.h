/*
 * optim_impl.h - what tg_backward_step (autograd/backward.c) needs of an
 * optimizer: the step of tg_optim_step, one parameter and one range of
 * its elements at a time, from gradient values it is handed instead of
 * the parameter's .grad. Library-internal.
 */
#ifndef TG_OPTIM_IMPL_H
#define TG_OPTIM_IMPL_H

#include "tapegrad/optim.h"

#include <stdint.h>

/* The index of t among o's parameters, or -1. */
int tg__optim_index(const tg_optim *o, const tg_tensor *t);

/* o's context (where its errors go); NULL when o is not an optimizer. */
tg_ctx *tg__optim_ctx(const tg_optim *o);

/* tg_optim_step's checks and its state's allocation (the only part of a
 * step that can fail); the error is recorded on o's context. */
tg_status tg__optim_prepare(tg_optim *o, const char *fn);

/* Parameter i takes a step: its step count goes up (once per step, before
 * its first tg__optim_update). */
void tg__optim_begin_param(tg_optim *o, int i);

/* Elements [e0, e0 + n) of parameter i updated as tg_optim_step updates
 * them, from the n gradient values at g (the parameter's dtype, dense):
 * the same operations, so the bits tg_optim_step gives for that gradient
 * (at any thread count). Runs on pool's threads (the walk's context: its
 * threads are awake, between the walk's products). */
void tg__optim_update(tg_optim *o, tg_ctx *pool, int i, int64_t e0, int64_t n, const void *g);

/* The step is done: o's step count goes up. */
void tg__optim_end(tg_optim *o);

#endif /* TG_OPTIM_IMPL_H */
