/*
 * opgrad.h - the entry type of the table-driven gradient check
 * (tests/test_opgrad.c) and the fill function of every op family.
 *
 * Each family file tests/opgrad_<family>.c defines
 *     void opgrad_fill_<family>(op_entry *table);
 * which sets table[TG_OP_X] for each op of that family. test_opgrad.c calls
 * them all, then runs the check over every registered op: an op with no
 * entry fails.
 */
#ifndef TG_TEST_OPGRAD_H
#define TG_TEST_OPGRAD_H

#include <stdbool.h>
#include <stdint.h>

#include "tapegrad.h"

#define MAX_IN 7
#define MAX_VAR 4

/*
 * Tolerances. Central differences in f64 with eps = 1e-6 have truncation
 * error ~ eps^2 |f'''| / 6 ~ 1e-13 on these smooth, O(1) inputs and rounding
 * error ~ DBL_EPSILON |L| / eps ~ 2e-10 |L|, where |L| (a weighted sum of a
 * few dozen O(1) outputs) is at most ~1e2: so errors up to ~2e-8 are honest
 * noise. atol 1e-6 leaves a margin of ~50 over that, rtol 1e-4 absorbs
 * larger gradients; a wrong gradient is off by O(1) relative and fails.
 */
#define OPGRAD_EPS 1e-6
#define OPGRAD_ATOL 1e-6
#define OPGRAD_RTOL 1e-4

/* The domain of an input. Inputs of the *_CONST kinds, D_LABELS, D_INDEX
 * and D_MASK do not require grad (they are not checked). */
typedef enum {
    D_NORMAL,       /* standard normal */
    D_POS,          /* uniform in [0.5, 1.5): log, sqrt, fractional powers */
    D_AWAY,         /* +-[0.5, 1.5): relu's kink, divisors */
    D_LABELS,       /* TG_I64 class labels in [0, C), C = last dim of input 0 */
    D_INDEX,        /* TG_I64 indices in [0, index_hi), fixed pseudo-random */
    D_MASK,         /* f64 0/1 mask (about half ones), no grad */
    D_UNIT,         /* uniform in [0.1, 0.9): probabilities */
    D_NORMAL_CONST, /* as D_NORMAL, no grad */
    D_POS_CONST,    /* as D_POS, no grad: variances, positive weights */
    D_UNIT_CONST,   /* as D_UNIT, no grad: probability targets */
} dom_kind;

typedef struct {
    int ndim;
    int64_t d[TG_MAX_DIMS];
} shp;

/* clang-format off */
/* S(3, 4) is the shape [3,4]; S0 is a 0-d shape. */
#define S(...) {(int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), {__VA_ARGS__}}
#define S0 {0, {0}}
/* clang-format on */

/* One variant: shapes, domains and the op's constant arguments. */
typedef struct {
    const char *what; /* shown in failure messages */
    int n_in;         /* 0 ends the variant list */
    shp in[MAX_IN];   /* contiguous and strided cases */
    dom_kind dom[MAX_IN];
    bool has_bc;               /* broadcast case present */
    shp bc[MAX_IN];            /* broadcast case shapes */
    double s;                  /* scalar argument: scale, add_scalar, exponent */
    int naxes;                 /* sum/mean: -1 reduces everything with tg_sum/tg_mean */
    int axes[4];               /* sum/mean axes */
    bool keepdim;              /* sum/mean */
    int axis;                  /* softmax, slice, slice_scatter */
    int d0, d1;                /* transpose */
    int perm[TG_MAX_DIMS];     /* permute */
    shp to;                    /* reshape / expand / slice_scatter target shape */
    int64_t start, stop, step; /* slice, slice_scatter */
    /* free-form arguments for builders of the op families */
    double f[4];
    int64_t iv[16];
    int niv;
    bool flag;
    int64_t index_hi;          /* D_INDEX: exclusive upper bound */
} op_case;

typedef struct {
    tg_fn f; /* builds op(inputs) with the variant's constant arguments */
    op_case v[MAX_VAR];
} op_entry;

/* clang-format off */
#define BUILD(name, call)                                                                          \
    static tg_tensor *name(tg_ctx *c, tg_tensor **in, int n, void *user)                           \
    {                                                                                              \
        const op_case *a = user;                                                                   \
        (void)n;                                                                                   \
        (void)a;                                                                                   \
        return call;                                                                               \
    }

/* clang-format on */

void opgrad_fill_math(op_entry *table);
void opgrad_fill_reduce(op_entry *table);
void opgrad_fill_index(op_entry *table);
void opgrad_fill_conv(op_entry *table);
void opgrad_fill_nn(op_entry *table);
void opgrad_fill_loss(op_entry *table);
void opgrad_fill_custom(op_entry *table);

#endif /* TG_TEST_OPGRAD_H */
