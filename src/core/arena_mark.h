/*
 * arena_mark.h - scratch memory in a step: mark the arena, allocate
 * temporaries, rewind to the mark. Library-internal.
 *
 * A step context's arena frees nothing until tg_ctx_reset, so every
 * temporary of an op (im2col columns, contiguous copies, a backward's
 * intermediate products) stays resident until the end of the step and adds
 * to the step's peak. An op that allocates its result first, then takes a
 * mark, then its scratch, can rewind to the mark before it returns: the
 * scratch is reused by whatever is allocated next. Costs O(1), allocates
 * nothing, and keeps the arena's other contracts (a steady step allocates
 * nothing; reset merges blocks).
 *
 * Contract (a library bug otherwise): the mark was taken on the same
 * context since its last reset and is rewound to at most once; nothing
 * allocated after the mark is used after the rewind; the tape did not grow
 * in between (checked: an op records its node after its kernels ran).
 */
#ifndef TG_ARENA_MARK_H
#define TG_ARENA_MARK_H

#include "core_impl.h"

typedef struct {
    tg__chunk *chunk; /* the block allocations came from, or NULL */
    char *bump;       /* its next free byte */
    size_t used;      /* bytes handed out since the reset */
    int64_t tape_n, tape_cap;
    void *young;      /* c->young then (see tg__recycle_young) */
    void *taken;      /* c->taken then */
} tg__arena_pos;

/* The arena's position now. */
tg__arena_pos tg__arena_mark(const tg_ctx *c);

/* Frees every arena allocation made on c since m, for reuse; a block that
 * a tensor made since m took off the free list of blocks given back (see
 * tg__recycle_give) goes back on it, unless the tensor gave it back
 * itself. */
void tg__arena_rewind(tg_ctx *c, tg__arena_pos m);

#endif /* TG_ARENA_MARK_H */
