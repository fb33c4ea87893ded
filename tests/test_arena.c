/*
 * test_arena.c - the arena's marks and rewinds (src/core/arena_mark.h):
 * scratch is reused, what came before the mark is intact, a steady step
 * with scratch allocates nothing and holds less, and a rewind across a
 * recorded node is caught as the library bug it would be.
 */
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tapegrad.h>

#include "core/arena_mark.h"
#include "tensor/tensor_impl.h"
#include "test_util.h"

/* A context on test_util.h's counting allocator hook. */
static tg_ctx *counted_ctx(tu_alloc *k, size_t chunk)
{
    tg_ctx *c = tu_alloc_ctx(k, chunk);
    ck_assert_ptr_nonnull(c);
    return c;
}

START_TEST(test_rewind_reuses_scratch)
{
    tu_alloc k = {0};
    tg_ctx *c = counted_ctx(&k, 4096);
    unsigned char *keep = tg__arena_alloc(c, 1000);
    ck_assert_ptr_nonnull(keep);
    memset(keep, 0xab, 1000);
    size_t used = tg_ctx_bytes_used(c);
    tg__arena_pos m = tg__arena_mark(c);
    /* bigger than the first block: the scratch takes a new one */
    char *scratch = tg__arena_alloc(c, 10000);
    ck_assert_ptr_nonnull(scratch);
    memset(scratch, 0x11, 10000);
    ck_assert_uint_gt(tg_ctx_bytes_used(c), used);
    long allocs = k.allocs;
    size_t reserved = tg_ctx_bytes_reserved(c);
    tg__arena_rewind(c, m);
    ck_assert_uint_eq(tg_ctx_bytes_used(c), used);
    /* The same request again gets memory back without the allocator: the
     * rest of the first block is too small, so the kept block is used. */
    char *again = tg__arena_alloc(c, 10000);
    ck_assert_ptr_eq(again, scratch);
    ck_assert_int_eq(k.allocs, allocs);
    ck_assert_uint_eq(tg_ctx_bytes_reserved(c), reserved);
    /* a small one after a rewind lands where the first scratch started */
    tg__arena_rewind(c, m);
    char *small = tg__arena_alloc(c, 64);
    ck_assert_ptr_nonnull(small);
    ck_assert_uint_eq(tg_ctx_bytes_used(c), used + 64);
    memset(small, 0x22, 64);
    for (int i = 0; i < 1000; i++) ck_assert_uint_eq(keep[i], 0xab);
    tu_assert_ok(c);
    tg_ctx_free(c);
    tu_alloc_assert_no_leak(&k);
}
END_TEST

START_TEST(test_rewind_to_empty_arena)
{
    tu_alloc k = {0};
    tg_ctx *c = counted_ctx(&k, 0);
    tg__arena_pos m = tg__arena_mark(c); /* before the first block exists */
    ck_assert_ptr_nonnull(tg__arena_alloc(c, 100));
    long allocs = k.allocs;
    tg__arena_rewind(c, m);
    ck_assert_uint_eq(tg_ctx_bytes_used(c), 0);
    /* the block made after the mark is kept and reused */
    ck_assert_ptr_nonnull(tg__arena_alloc(c, 100));
    ck_assert_int_eq(k.allocs, allocs);
    /* and a reset after it is an ordinary reset */
    tg_ctx_reset(c);
    ck_assert_uint_eq(tg_ctx_bytes_used(c), 0);
    tg_ctx_free(c);
    tu_alloc_assert_no_leak(&k);
}
END_TEST

/* One "step" of the shape an op with scratch has: a result, then scratch
 * larger than the result, rewound (or not), over several layers; the
 * results must stay intact. Returns the step's arena bytes in use. */
static size_t step(tg_ctx *c, bool rewind, int layers)
{
    float *res[8];
    for (int l = 0; l < layers; l++) {
        res[l] = tg__arena_alloc(c, 4000 * sizeof(float));
        ck_assert_ptr_nonnull(res[l]);
        tg__arena_pos m = tg__arena_mark(c);
        float *scratch = tg__arena_alloc(c, 40000 * sizeof(float));
        ck_assert_ptr_nonnull(scratch);
        for (int i = 0; i < 40000; i++) scratch[i] = (float)(i + l);
        for (int i = 0; i < 4000; i++) res[l][i] = scratch[10 * i] - (float)l;
        if (rewind) tg__arena_rewind(c, m);
    }
    for (int l = 0; l < layers; l++)
        for (int i = 0; i < 4000; i++) ck_assert_float_eq(res[l][i], (float)(10 * i));
    return tg_ctx_bytes_used(c);
}

START_TEST(test_steady_step_with_scratch)
{
    enum { LAYERS = 6 };
    tu_alloc k = {0}, kn = {0};
    tg_ctx *c = counted_ctx(&k, 4096), *n = counted_ctx(&kn, 4096);
    size_t used = 0, used_n = 0;
    long allocs = 0;
    for (int round = 0; round < 5; round++) {
        tg_ctx_reset(c);
        tg_ctx_reset(n);
        if (round == 2) allocs = k.allocs;
        used = step(c, true, LAYERS);
        used_n = step(n, false, LAYERS);
    }
    /* from the third round on (the second reset merged the blocks) a step
     * with rewinds allocates nothing, like any steady step */
    ck_assert_int_eq(k.allocs, allocs);
    /* it holds the results, not every layer's scratch */
    ck_assert_uint_lt(used, used_n);
    ck_assert_uint_le(used, LAYERS * (4000 * sizeof(float) + 64));
    ck_assert_uint_lt(tg_ctx_bytes_reserved(c), tg_ctx_bytes_reserved(n));
    tg_ctx_free(c);
    tg_ctx_free(n);
}
END_TEST

/* A backward walk's list of storage made since its last look (c->young)
 * forgets what a rewind took back: those bytes are reused by whatever comes
 * next, so the walk must never read them as a storage header. */
START_TEST(test_rewind_forgets_young_storage)
{
    tg_ctx *c = tu_ctx();
    c->recycling = true;
    tg_tensor *a = tg__empty_valid(c, TG_F32, 1, (int64_t[]){1024});
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_eq(c->young, a->st);
    tg__arena_pos m = tg__arena_mark(c);
    tg_tensor *b = tg__empty_valid(c, TG_F32, 1, (int64_t[]){1024});
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_eq(c->young, b->st);
    tg__arena_rewind(c, m);
    ck_assert_ptr_eq(c->young, a->st);
    unsigned char *raw = tg__arena_alloc(c, 8192); /* over b's bytes */
    ck_assert_ptr_nonnull(raw);
    memset(raw, 0xff, 8192);
    a->st->refs = 1; /* held by the walk: stays */
    tg__recycle_young(c);
    ck_assert_ptr_null(c->young);
    ck_assert_ptr_null(c->given);
    a->st->refs = 0;
    c->recycling = false;
    tg_ctx_free(c);
}
END_TEST

/* How many blocks c's free list holds, and whether one starts at data. */
static int free_count(const tg_ctx *c, const void *data, bool *found)
{
    int n = 0;
    *found = false;
    for (const struct tg__free_block *b = c->free_blocks; b; b = *(void *const *)(const void *)b) {
        n++;
        if ((const void *)b == data) *found = true;
    }
    return n;
}

/* Scratch that took a block off the free list (a gradient the walk gave
 * back, or an activation tg_recompute_later did) gives it back at the
 * rewind, in a walk and out of one, once even if the scratch tensor gave
 * it back itself; without that the block was lost to the rest of the step
 * (tg_gelu_linear's blocks in GPT's backward: 2 MB of arena). */
START_TEST(test_rewind_returns_taken_blocks)
{
    for (int walk = 0; walk < 2; walk++)
        for (int self = 0; self < 1 + walk; self++) {
            tg_ctx *c = tu_ctx();
            c->recycling = true;
            tg_tensor *a = tg__empty_valid(c, TG_F32, 1, (int64_t[]){16384});
            ck_assert_ptr_nonnull(a);
            char *data = a->st->data;
            tg__recycle_give(c, a->st);
            tg__recycle_settle(c);
            c->recycling = walk;
            bool found;
            ck_assert_int_eq(free_count(c, data, &found), 1);
            tg__arena_pos m = tg__arena_mark(c);
            tg_tensor *b = tg__empty_valid(c, TG_F32, 1, (int64_t[]){12000});
            ck_assert_ptr_nonnull(b);
            ck_assert_ptr_eq(b->st->data, data); /* off the free list */
            ck_assert_int_eq(free_count(c, data, &found), 0);
            if (self) { /* the walk gave it back before the rewind */
                tg__recycle_give(c, b->st);
                tg__recycle_settle(c);
            }
            tg__arena_rewind(c, m);
            ck_assert_int_eq(free_count(c, data, &found), 1);
            ck_assert(found);
            size_t used = tg_ctx_bytes_used(c);
            tg_tensor *d = tg__empty_valid(c, TG_F32, 1, (int64_t[]){16384});
            ck_assert_ptr_eq(d->st->data, data); /* reused, not new arena */
            ck_assert_uint_lt(tg_ctx_bytes_used(c) - used, 1024);
            c->recycling = false;
            tg_ctx_free(c);
        }
}
END_TEST

/* A tensor of up to 48 data bytes keeps its data in its header's padding
 * (16-aligned): a scalar's arena is no larger than the header, and filling
 * the data leaves its own and its neighbours' headers as they were. */
START_TEST(test_small_data_in_header)
{
    tg_ctx *c = tu_ctx();
    size_t used = tg_ctx_bytes_used(c);
    tg_tensor *s = tg__empty_valid(c, TG_F64, 0, NULL);
    size_t head = tg_ctx_bytes_used(c) - used;
    ck_assert_uint_ge(head, sizeof(tg_tensor) + sizeof(tg__storage));
    tg_tensor *prev = s;
    for (int n = 1; n <= 24; n++) {
        used = tg_ctx_bytes_used(c);
        tg_tensor *t = tg__empty_valid(c, TG_F32, 1, (int64_t[]){n});
        ck_assert_ptr_nonnull(t);
        ck_assert_uint_eq((uintptr_t)t->st->data % 16, 0);
        bool inside = t->st->data < (char *)t + head;
        ck_assert(inside == (n * sizeof(float) <= head - ((sizeof(tg_tensor) +
                                                           sizeof(tg__storage) + 15) & ~15u)));
        if (inside) ck_assert_uint_eq(tg_ctx_bytes_used(c) - used, head);
        float *d = tg_data(t);
        for (int i = 0; i < n; i++) d[i] = -1.0f;
        ck_assert_int_eq(tg_ndim(t), 1);
        ck_assert_int_eq(tg_shape(t)[0], n);
        ck_assert_int_eq(tg_strides(t)[0], 1);
        ck_assert_ptr_eq(t->st->data, (char *)d);
        ck_assert_int_eq(tg_ndim(prev), prev == s ? 0 : 1);
        prev = t;
    }
    tg_ctx_free(c);
}
END_TEST

/* Rewinding past a recorded node would free the node: TG_ASSERT aborts. */
START_TEST(test_rewind_across_node_aborts)
{
    tg_ctx *c = tu_ctx();
    tg_tensor *x = tg_full(c, TG_F32, TG_SHAPE(4), 1.0);
    tg_set_requires_grad(x, true);
    tg__arena_pos m = tg__arena_mark(c);
    ck_assert_ptr_nonnull(tg_tanh(c, x)); /* records a node */
    tg__arena_rewind(c, m);
    tg_ctx_free(c);
}
END_TEST

Suite *arena_suite(void)
{
    Suite *s = suite_create("arena");
    TCase *tc = tcase_create("rewind");
    tcase_set_timeout(tc, TU_TIMEOUT);
    tcase_add_test(tc, test_rewind_reuses_scratch);
    tcase_add_test(tc, test_rewind_to_empty_arena);
    tcase_add_test(tc, test_steady_step_with_scratch);
    tcase_add_test(tc, test_rewind_forgets_young_storage);
    tcase_add_test(tc, test_rewind_returns_taken_blocks);
    tcase_add_test(tc, test_small_data_in_header);
    /* A test that aborts needs its own process: not under CK_FORK=no
     * (valgrind), where it would end the whole run. */
    const char *fork = getenv("CK_FORK");
    if (!fork || strcmp(fork, "no") != 0)
        tcase_add_test_raise_signal(tc, test_rewind_across_node_aborts, SIGABRT);
    suite_add_tcase(s, tc);
    return s;
}
