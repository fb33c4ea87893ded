/*
 * schedule.c - learning-rate schedules as pure functions of the step count.
 *
 * tg_lr_at(s, t) is the lr of the optimizer step that follows t completed
 * steps; each kind is the closed form of the PyTorch scheduler it names
 * (torch.optim.lr_scheduler, 1.13), which PyTorch itself computes
 * recursively: the two agree to rounding (tests/test_optim.c checks 1e-12
 * relative against PyTorch's values, tools/optim_reference.py). A
 * closed form needs no state, so a checkpoint only has to store the step
 * count, and a resumed run gets exactly the same lr.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../tensor/tensor_impl.h"
#include "tapegrad/optim.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

static tg_lr_schedule base(tg_lr_kind kind, double lr)
{
    tg_lr_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.lr = lr;
    s.gamma = 1.0;
    s.step_size = 1;
    s.t_max = 1;
    s.t_0 = 1;
    s.t_mult = 1;
    s.total_steps = 1;
    s.pct_start = 0.3;
    s.div_factor = 25.0;
    s.final_div_factor = 1e4;
    s.warmup_start_factor = 1.0 / 3.0;
    return s;
}

tg_lr_schedule tg_lr_constant(double lr) { return base(TG_LR_CONSTANT, lr); }

tg_lr_schedule tg_lr_step(double lr, int64_t step_size, double gamma)
{
    tg_lr_schedule s = base(TG_LR_STEP, lr);
    s.step_size = step_size;
    s.gamma = gamma;
    return s;
}

tg_lr_schedule tg_lr_exponential(double lr, double gamma)
{
    tg_lr_schedule s = base(TG_LR_EXPONENTIAL, lr);
    s.gamma = gamma;
    return s;
}

tg_lr_schedule tg_lr_cosine(double lr, int64_t t_max, double eta_min)
{
    tg_lr_schedule s = base(TG_LR_COSINE, lr);
    s.t_max = t_max;
    s.eta_min = eta_min;
    return s;
}

tg_lr_schedule tg_lr_cosine_restarts(double lr, int64_t t_0, int64_t t_mult, double eta_min)
{
    tg_lr_schedule s = base(TG_LR_COSINE_RESTARTS, lr);
    s.t_0 = t_0;
    s.t_mult = t_mult;
    s.eta_min = eta_min;
    return s;
}

tg_lr_schedule tg_lr_one_cycle(double max_lr, int64_t total_steps)
{
    tg_lr_schedule s = base(TG_LR_ONE_CYCLE, max_lr);
    s.total_steps = total_steps;
    return s;
}

#define BAD(...)                                                                         \
    do {                                                                                 \
        if (msg && n) snprintf(msg, n, "tg_lr_schedule: " __VA_ARGS__);                  \
        return TG_ERR_INVALID;                                                           \
    } while (0)

tg_status tg_lr_check(const tg_lr_schedule *s, char *msg, size_t n)
{
    if (msg && n) msg[0] = '\0';
    if (!s) BAD("schedule is NULL");
    if (!isfinite(s->lr) || s->lr < 0) BAD("lr = %g must be finite and >= 0", s->lr);
    if (s->warmup_steps < 0) BAD("warmup_steps = %lld is negative", (long long)s->warmup_steps);
    if (s->warmup_steps > 0 && !(s->warmup_start_factor > 0 && s->warmup_start_factor <= 1))
        BAD("warmup_start_factor = %g is outside (0, 1]", s->warmup_start_factor);
    switch (s->kind) {
    case TG_LR_CONSTANT: break;
    case TG_LR_STEP:
        if (s->step_size <= 0) BAD("step_size = %lld must be > 0", (long long)s->step_size);
        if (!isfinite(s->gamma) || s->gamma <= 0) BAD("gamma = %g must be finite and > 0",
                                                      s->gamma);
        break;
    case TG_LR_EXPONENTIAL:
        if (!isfinite(s->gamma) || s->gamma <= 0) BAD("gamma = %g must be finite and > 0",
                                                      s->gamma);
        break;
    case TG_LR_COSINE:
        if (s->t_max <= 0) BAD("t_max = %lld must be > 0", (long long)s->t_max);
        if (!isfinite(s->eta_min) || s->eta_min < 0) BAD("eta_min = %g must be >= 0", s->eta_min);
        break;
    case TG_LR_COSINE_RESTARTS:
        if (s->t_0 <= 0) BAD("t_0 = %lld must be > 0", (long long)s->t_0);
        if (s->t_mult < 1) BAD("t_mult = %lld must be >= 1", (long long)s->t_mult);
        if (!isfinite(s->eta_min) || s->eta_min < 0) BAD("eta_min = %g must be >= 0", s->eta_min);
        break;
    case TG_LR_ONE_CYCLE:
        if (s->total_steps <= 0)
            BAD("total_steps = %lld must be > 0", (long long)s->total_steps);
        if (!(s->pct_start >= 0 && s->pct_start <= 1))
            BAD("pct_start = %g is outside [0, 1]", s->pct_start);
        if (!isfinite(s->div_factor) || s->div_factor <= 0)
            BAD("div_factor = %g must be finite and > 0", s->div_factor);
        if (!isfinite(s->final_div_factor) || s->final_div_factor <= 0)
            BAD("final_div_factor = %g must be finite and > 0", s->final_div_factor);
        break;
    default: BAD("unknown kind %d", (int)s->kind);
    }
    return TG_OK;
}

/* CosineAnnealingLR's closed form. */
static double cosine(double base_lr, double eta_min, double t, double period)
{
    return eta_min + (base_lr - eta_min) * (1 + cos(M_PI * t / period)) / 2;
}

/* OneCycleLR.get_lr at step t (clamped to the last step). */
static double one_cycle(const tg_lr_schedule *s, int64_t t)
{
    double T = (double)s->total_steps;
    double max_lr = s->lr, initial = max_lr / s->div_factor, min_lr = initial / s->final_div_factor;
    if (t > s->total_steps - 1) t = s->total_steps - 1;
    double end[3], from[3], to[3];
    int nph;
    if (s->three_phase) {
        nph = 3;
        end[0] = s->pct_start * T - 1, from[0] = initial, to[0] = max_lr;
        end[1] = 2 * s->pct_start * T - 2, from[1] = max_lr, to[1] = initial;
        end[2] = T - 1, from[2] = initial, to[2] = min_lr;
    } else {
        nph = 2;
        end[0] = s->pct_start * T - 1, from[0] = initial, to[0] = max_lr;
        end[1] = T - 1, from[1] = max_lr, to[1] = min_lr;
    }
    double step = (double)t, start = 0;
    for (int i = 0; i < nph; i++) {
        if (step <= end[i] || i == nph - 1) {
            double span = end[i] - start;
            double pct = span != 0 ? (step - start) / span : 1.0; /* PyTorch divides by 0 */
            if (s->anneal_linear) return (to[i] - from[i]) * pct + from[i];
            return to[i] + (from[i] - to[i]) / 2.0 * (cos(M_PI * pct) + 1);
        }
        start = end[i];
    }
    return min_lr; /* not reached */
}

double tg_lr_at(const tg_lr_schedule *s, int64_t step)
{
    if (!s || step < 0 || tg_lr_check(s, NULL, 0) != TG_OK) return NAN;
    if (step < s->warmup_steps) {
        /* LinearLR(start_factor=f, end_factor=1, total_iters=W) */
        double f = s->warmup_start_factor;
        return s->lr * (f + (1.0 - f) * (double)step / (double)s->warmup_steps);
    }
    int64_t t = step - s->warmup_steps;
    switch (s->kind) {
    case TG_LR_CONSTANT: return s->lr;
    case TG_LR_STEP: return s->lr * pow(s->gamma, (double)(t / s->step_size));
    case TG_LR_EXPONENTIAL: return s->lr * pow(s->gamma, (double)t);
    case TG_LR_COSINE: return cosine(s->lr, s->eta_min, (double)t, (double)s->t_max);
    case TG_LR_COSINE_RESTARTS: {
        /* T_cur counts steps into the current cycle of length T_i; cycles
         * grow by T_mult (integer arithmetic, as PyTorch's step() does). */
        int64_t ti = s->t_0, tc = t;
        if (s->t_mult == 1) {
            tc = t % ti;
        } else {
            while (tc >= ti) {
                tc -= ti;
                if (ti > INT64_MAX / s->t_mult) {
                    ti = INT64_MAX;
                    break;
                }
                ti *= s->t_mult;
            }
        }
        return cosine(s->lr, s->eta_min, (double)tc, (double)ti);
    }
    case TG_LR_ONE_CYCLE: return one_cycle(s, t);
    }
    return NAN;
}

tg_status tg_optim_apply_schedule(tg_optim *o, const tg_lr_schedule *s)
{
    tg_ctx *c = tg_optim_ctx(o);
    if (!c) return TG_ERR_INVALID;
    if (tg_ctx_status(c) != TG_OK) return tg_ctx_status(c);
    char msg[256];
    if (tg_lr_check(s, msg, sizeof msg) != TG_OK)
        return tg__fail(c, TG_ERR_INVALID, "tg_optim_apply_schedule: %s", msg);
    int64_t t = tg_optim_step_count(o);
    if (t < 0) return tg_optim_set_lr(o, 0.0); /* freed: reports TG_ERR_MISUSE */
    return tg_optim_set_lr(o, tg_lr_at(s, t));
}
