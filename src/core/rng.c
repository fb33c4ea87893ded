/*
 * rng.c - the context's random number generator.
 *
 * xoshiro256** (Blackman and Vigna), seeded by expanding a 64-bit seed
 * through splitmix64 as its authors recommend. The whole state is the four
 * words in c->rng: normals are drawn by Box-Muller without caching the
 * second value, so saving and restoring those words replays the stream
 * exactly.
 */
#include "core_impl.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void tg__rng_seed(uint64_t st[4], uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) st[i] = splitmix64(&x);
    /* xoshiro's one forbidden state; splitmix64 is a bijection of distinct
     * counters, so this cannot happen, but the guard costs nothing. */
    if ((st[0] | st[1] | st[2] | st[3]) == 0) st[0] = 0x9e3779b97f4a7c15u;
}

uint64_t tg__rng_next(uint64_t st[4])
{
    uint64_t result = rotl(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return result;
}

double tg__rng_uniform(uint64_t st[4])
{
    return (double)(tg__rng_next(st) >> 11) * 0x1.0p-53;
}

double tg__rng_normal(uint64_t st[4])
{
    static const double two_pi = 6.283185307179586476925286766559;
    double u1 = 1.0 - tg__rng_uniform(st); /* (0, 1]: log(u1) is finite */
    double u2 = tg__rng_uniform(st);
    return sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
}

void tg_ctx_seed(tg_ctx *c, uint64_t seed)
{
    if (!c) return;
    tg__rng_seed(c->rng, seed);
}

void tg_ctx_get_rng(const tg_ctx *c, uint64_t state[4])
{
    if (!state) return;
    for (int i = 0; i < 4; i++) state[i] = c ? c->rng[i] : 0;
}

tg_status tg_ctx_set_rng(tg_ctx *c, const uint64_t state[4])
{
    if (!c) return TG_ERR_INVALID;
    if (!state) return tg__fail(c, TG_ERR_INVALID, "tg_ctx_set_rng: NULL state");
    if ((state[0] | state[1] | state[2] | state[3]) == 0)
        return tg__fail(c, TG_ERR_INVALID,
                        "tg_ctx_set_rng: the all-zero state is not a valid xoshiro256** state");
    for (int i = 0; i < 4; i++) c->rng[i] = state[i];
    return TG_OK;
}
