/*
 * ctx.c - contexts: the arena, the allocator hook, sticky errors.
 *
 * The arena is a list of blocks obtained through the hook. Allocation bumps
 * a pointer in the current block and moves to the next kept block (or asks
 * the hook for a new one) when it does not fit. tg_ctx_reset() rewinds to
 * the first block in O(1); on the first reset after the arena grew past one
 * block it merges everything into one block of the total size, so a step
 * that needs the same memory as the last one allocates nothing.
 */
#include "arena_mark.h"
#include "core_impl.h"

#include <string.h>

#define TG__DEFAULT_CHUNK ((size_t)1 << 20)

static const char *const status_strs[] = {
#define TG__STATUS_STR(name, desc) desc,
    TG_STATUS_MAP(TG__STATUS_STR)
#undef TG__STATUS_STR
};

_Static_assert(sizeof(status_strs) / sizeof(status_strs[0]) == TG_STATUS_COUNT,
               "one description per status");

const char *tg_status_str(tg_status s)
{
    if ((int)s < 0 || s >= TG_STATUS_COUNT) return "unknown status";
    return status_strs[s];
}

_Noreturn void tg__assert_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "tapegrad: internal error at %s:%d: assertion '%s' failed\n", file, line,
            expr);
    abort(); /* TG_ASSERT: library bugs only */
}

/* ---- allocator ---------------------------------------------------------- */

static void *default_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return malloc(nsize);
}

void *tg__heap_alloc(tg_ctx *c, size_t n) { return c->alloc(c->alloc_ud, NULL, 0, n); }

void tg__heap_free(tg_ctx *c, void *p, size_t n)
{
    if (p) c->alloc(c->alloc_ud, p, n, 0);
}

/* ---- contexts ----------------------------------------------------------- */

tg_ctx_opts tg_ctx_defaults(void)
{
    tg_ctx_opts o;
    memset(&o, 0, sizeof o);
    o.alloc = NULL;
    o.alloc_ud = NULL;
    o.arena_chunk = 0;
    o.n_threads = 0;
    o.seed = 0x5eed;
    return o;
}

tg_ctx *tg_ctx_new(void) { return tg_ctx_new_opts(NULL); }

tg_ctx *tg_ctx_new_opts(const tg_ctx_opts *opts)
{
    tg_ctx_opts o = opts ? *opts : tg_ctx_defaults();
    if (o.n_threads < 0) return NULL;
    tg_alloc_fn alloc = o.alloc ? o.alloc : default_alloc;
    tg_ctx *c = alloc(o.alloc_ud, NULL, 0, sizeof *c);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->alloc = alloc;
    c->alloc_ud = o.alloc_ud;
    c->chunk_size = o.arena_chunk ? o.arena_chunk : TG__DEFAULT_CHUNK;
    c->grad_enabled = true;
    c->status = TG_OK;
    c->n_threads = o.n_threads ? o.n_threads : tg__default_threads();
    tg__rng_seed(c->rng, o.seed);
    tg__profile_init(c);
    return c;
}

static void free_chunks(tg_ctx *c, tg__chunk *ch)
{
    while (ch) {
        tg__chunk *next = ch->next;
        tg__heap_free(c, ch, sizeof *ch + TG__ALIGN + ch->size);
        ch = next;
    }
}

void tg_ctx_free(tg_ctx *c)
{
    if (!c) return;
    tg__profile_free(c);
    tg__pool_free(c);
    free_chunks(c, c->head);
    c->alloc(c->alloc_ud, c, sizeof *c, 0);
}

static tg__chunk *chunk_new(tg_ctx *c, size_t size)
{
    /* header, then padding up to TG__ALIGN, then size usable bytes */
    if (size > SIZE_MAX - sizeof(tg__chunk) - TG__ALIGN) return NULL;
    tg__chunk *ch = tg__heap_alloc(c, sizeof *ch + TG__ALIGN + size);
    if (!ch) return NULL;
    ch->next = NULL;
    ch->size = size;
    return ch;
}

static char *chunk_base(tg__chunk *ch)
{
    uintptr_t p = (uintptr_t)(ch + 1);
    p = (p + TG__ALIGN - 1) & ~(uintptr_t)(TG__ALIGN - 1);
    return (char *)p;
}

/* Makes ch the block allocations come from, with all its space free. */
static void use_chunk(tg_ctx *c, tg__chunk *ch)
{
    c->cur = ch;
    c->bump = ch ? chunk_base(ch) : NULL;
    c->bump_end = ch ? c->bump + (ch->size & ~(size_t)(TG__ALIGN - 1)) : NULL;
}

void tg_ctx_reset(tg_ctx *c)
{
    if (!c) return;
    c->tape.nodes = NULL;
    c->tape.n = 0;
    c->tape.cap = 0;
    c->used = 0;
    c->free_blocks = NULL;
    c->given = NULL;
    c->young = NULL;
    c->taken = NULL;
    if (c->head && c->head->next) {
        /* Merge all blocks into one so the next identical step fits. On
         * failure keep the old blocks: correctness does not depend on it. */
        size_t total = 0;
        for (tg__chunk *ch = c->head; ch; ch = ch->next) total += ch->size;
        tg__chunk *one = chunk_new(c, total);
        if (one) {
            free_chunks(c, c->head);
            c->head = one;
        }
    }
    use_chunk(c, c->head);
    if (c->profile) tg__profile_mark(c);
}

static const char *api_name(const tg_ctx *c) { return c->api ? c->api : "tapegrad"; }

/* The inline tg__arena_alloc's way out when the current block is full (or
 * n is 0 or huge): the next kept block that fits, or a new one. Blocks
 * after cur are untouched since the last reset, so all their space is free;
 * the rest of a block that is left is wasted until the reset, which merges
 * blocks anyway. */
void *tg__arena_alloc_slow(tg_ctx *c, size_t n)
{
    if (n == 0) n = 1;
    if (n > SIZE_MAX - TG__ALIGN) {
        tg__fail(c, TG_ERR_NOMEM, "%s: out of memory: %zu bytes requested", api_name(c), n);
        return NULL;
    }
    size_t need = tg__arena_size(n);
    if ((size_t)(c->bump_end - c->bump) < need) {
        tg__chunk *ch = c->cur ? c->cur->next : c->head;
        while (ch && (ch->size & ~(size_t)(TG__ALIGN - 1)) < need) ch = ch->next;
        if (!ch) {
            size_t size = need > c->chunk_size ? need : c->chunk_size;
            /* grow geometrically so a large step settles in few blocks */
            size_t held = tg_ctx_bytes_reserved(c);
            if (held > size && held <= SIZE_MAX / 2) size = held;
            ch = chunk_new(c, size);
            if (!ch && size > need) ch = chunk_new(c, need);
            if (!ch) {
                tg__fail(c, TG_ERR_NOMEM, "%s: out of memory: arena block of %zu bytes",
                         api_name(c), need);
                return NULL;
            }
            /* append at the end of the list */
            if (!c->head) {
                c->head = ch;
            } else {
                tg__chunk *last = c->cur ? c->cur : c->head;
                while (last->next) last = last->next;
                last->next = ch;
            }
        }
        use_chunk(c, ch);
    }
    char *p = c->bump;
    c->bump += need;
    c->used += need;
    return p;
}

void *tg__arena_calloc(tg_ctx *c, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size) {
        tg__fail(c, TG_ERR_NOMEM, "%s: out of memory: %zu x %zu bytes", api_name(c), count,
                 size);
        return NULL;
    }
    void *p = tg__arena_alloc(c, count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

tg__arena_pos tg__arena_mark(const tg_ctx *c)
{
    return (tg__arena_pos){c->cur, c->bump, c->used, c->tape.n, c->tape.cap, c->young, c->taken};
}

/* Blocks after the mark's block hold only allocations made since the mark,
 * so after the rewind all their space is free again, as the slow path
 * expects of blocks after cur. */
void tg__arena_rewind(tg_ctx *c, tg__arena_pos m)
{
    TG_ASSERT(m.used <= c->used && m.tape_n == c->tape.n && m.tape_cap == c->tape.cap);
    /* the storage headers since the mark are read before anything reuses
     * their memory: nothing is allocated in between */
    tg__recycle_untake(c, m.taken);
    use_chunk(c, m.chunk);
    if (m.chunk) c->bump = m.bump;
    c->used = m.used;
    c->young = m.young; /* storage made since the mark is gone */
}

size_t tg_ctx_bytes_used(const tg_ctx *c) { return c ? c->used : 0; }

size_t tg_ctx_bytes_reserved(const tg_ctx *c)
{
    size_t total = 0;
    if (c)
        for (const tg__chunk *ch = c->head; ch; ch = ch->next) total += ch->size;
    return total;
}

/* ---- errors ------------------------------------------------------------- */

tg_status tg__vfail(tg_ctx *c, tg_status s, const char *fmt, va_list ap)
{
    if (!c || c->status != TG_OK || s == TG_OK) return s;
    c->status = s;
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    return s;
}

tg_status tg__fail(tg_ctx *c, tg_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tg__vfail(c, s, fmt, ap);
    va_end(ap);
    return s;
}

tg_status tg_ctx_set_error(tg_ctx *c, tg_status s, const char *fmt, ...)
{
    if (!c) return TG_ERR_INVALID;
    if ((int)s <= TG_OK || s >= TG_STATUS_COUNT) s = TG_ERR_INVALID;
    if (!fmt) return tg__fail(c, s, "%s", tg_status_str(s));
    va_list ap;
    va_start(ap, fmt);
    tg__vfail(c, s, fmt, ap);
    va_end(ap);
    return s;
}

tg_status tg_ctx_status(const tg_ctx *c) { return c ? c->status : TG_ERR_INVALID; }

const char *tg_ctx_errmsg(const tg_ctx *c)
{
    if (!c) return "NULL context";
    return c->status == TG_OK ? "" : c->msg;
}

void tg_ctx_clear_error(tg_ctx *c)
{
    if (!c) return;
    c->status = TG_OK;
    c->msg[0] = '\0';
}

bool tg_set_grad_enabled(tg_ctx *c, bool on)
{
    if (!c) return false;
    bool prev = c->grad_enabled;
    c->grad_enabled = on;
    return prev;
}

bool tg_grad_enabled(const tg_ctx *c) { return c && c->grad_enabled; }
