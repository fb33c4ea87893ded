/*
 * train.c - `tapegrad train`: trains an MLP or a CNN on Fashion-MNIST.
 *
 * Two contexts, as DESIGN.md section 1 asks: p (persistent) holds the
 * data, the model, its gradients, the optimizer state, the batcher and the
 * two batch tensors; s (the step context) holds one step's activations
 * and tape and is reset before every step, so from the third step of an
 * epoch on a step makes no heap allocation (counted through the allocator
 * hook and printed at the end).
 *
 * Every option is one row of the `specs` table: its parser, its usage
 * line, whether it is stored in checkpoints, and whether --resume may
 * change it. Options that shape the numbers (model, batch size, optimizer,
 * lr, schedule, seed, ...) are stored in the checkpoint's metadata and
 * read back by --resume, so a resumed run continues bit for bit as the
 * uninterrupted one (same thread count); giving one of them with another
 * value on --resume is an error. --epochs may be raised on resume (the
 * schedules that span the run then follow the new length).
 *
 * A checkpoint (tg_checkpoint_save, written atomically at the end of
 * every epoch with --save) holds the parameters under their PyTorch names,
 * "optim.*", "batcher.state", "rng.state", and the metadata: the
 * library's "format", "format_version", "optimizer"; ours "model" (mlp or
 * cnn, which eval rebuilds), "train.<option>" for every stored option,
 * "epoch" (epochs done), "history" (train loss, train accuracy, test loss,
 * test accuracy of each epoch: "l,a,tl,ta;..." in numbers that read back
 * exactly, so a resumed run draws the whole curve), "arch", "tool". No
 * timing goes in, so an interrupted and resumed run writes the same bytes
 * as an uninterrupted one.
 *
 * Randomness: weights from p's RNG (seeded with --seed), the batch order
 * from the batcher's own RNG (seed + 1), dropout from s's RNG (seed + 2);
 * a checkpoint stores the last two, so nothing else can change a resume.
 */
#include "cli.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD "train"

/* ---------------------------------------------------------------------- */
/* Options                                                                */
/* ---------------------------------------------------------------------- */

typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP, OPT_ADAGRAD } optim_kind;
static const char *const optim_names[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad", NULL};

typedef enum {
    SCHED_NONE,
    SCHED_STEP,
    SCHED_EXPONENTIAL,
    SCHED_COSINE,
    SCHED_RESTARTS,
    SCHED_ONECYCLE
} sched_kind;
static const char *const sched_names[] = {"none",     "step",     "exponential", "cosine",
                                          "restarts", "onecycle", NULL};

typedef struct {
    int64_t model, epochs, batch_size, optimizer, schedule, warmup, seed, limit, test_limit,
        stop_after, threads;
    double lr, momentum, weight_decay, gamma; /* NaN: the optimizer's / schedule's default */
    const char *data, *save, *resume, *svg;
} train_opts;

typedef enum { K_INT, K_REAL, K_CHOICE, K_PATH } value_kind;

enum {
    SAVED = 1,   /* stored in checkpoints, and taken from them by --resume */
    OVERRIDE = 2 /* --resume may change it */
};

typedef struct {
    const char *name; /* without "--" */
    const char *key;  /* checkpoint metadata key (SAVED) */
    value_kind kind;
    size_t off;
    double lo, hi; /* K_INT, K_REAL range */
    const char *const *choices;
    unsigned flags;
    const char *arg, *help;
} opt_spec;

#define OFF(f) offsetof(train_opts, f)
static const opt_spec specs[] = {
    {"model", "model", K_CHOICE, OFF(model), 0, 0, arch_names, SAVED, "mlp|cnn",
     "the network (default mlp: 784-256-128-10; cnn: two conv3x3+pool blocks, fc128, fc10)"},
    {"epochs", "train.epochs", K_INT, OFF(epochs), 1, 100000, NULL, SAVED | OVERRIDE, "N",
     "epochs to train (default 10; may be raised on --resume)"},
    {"batch-size", "train.batch_size", K_INT, OFF(batch_size), 1, 65536, NULL, SAVED, "N",
     "samples per step (default 64)"},
    {"optimizer", "train.optimizer", K_CHOICE, OFF(optimizer), 0, 0, optim_names, SAVED,
     "NAME", "sgd|adam|adamw|rmsprop|adagrad (default adam)"},
    {"lr", "train.lr", K_REAL, OFF(lr), 0, 1e3, NULL, SAVED, "X",
     "learning rate (default: sgd 0.05, adagrad 0.01, others 0.001; one-cycle's peak)"},
    {"momentum", "train.momentum", K_REAL, OFF(momentum), 0, 1, NULL, SAVED, "X",
     "momentum of sgd (default 0.9) and rmsprop (default 0)"},
    {"weight-decay", "train.weight_decay", K_REAL, OFF(weight_decay), 0, 10, NULL, SAVED, "X",
     "weight decay (default 0.01 for adamw, else 0)"},
    {"schedule", "train.schedule", K_CHOICE, OFF(schedule), 0, 0, sched_names, SAVED, "NAME",
     "learning-rate schedule (default cosine): none, step (x gamma every epoch), "
     "exponential (x gamma per epoch, smoothly), cosine (to 0 over the run), restarts "
     "(cosine with warm restarts after 1, 2, 4, ... epochs), onecycle"},
    {"gamma", "train.gamma", K_REAL, OFF(gamma), 1e-6, 1, NULL, SAVED, "X",
     "decay factor per epoch of step and exponential (default 0.7)"},
    {"warmup", "train.warmup", K_INT, OFF(warmup), 0, 1e12, NULL, SAVED, "STEPS",
     "linear learning-rate warm-up over the first STEPS steps (default 0)"},
    {"seed", "train.seed", K_INT, OFF(seed), 0, 1e18, NULL, SAVED, "N",
     "seed of the weights, the batch order and dropout (default 1)"},
    {"limit", "train.limit", K_INT, OFF(limit), 0, 1e12, NULL, SAVED, "N",
     "train on the first N training samples only (default 0: all 60000)"},
    {"test-limit", "train.test_limit", K_INT, OFF(test_limit), 0, 1e12, NULL, SAVED, "N",
     "evaluate on the first N test samples only (default 0: all 10000)"},
    {"threads", NULL, K_INT, OFF(threads), 0, 256, NULL, 0, "N",
     "kernel threads (default 0: $TG_NUM_THREADS, else every CPU)"},
    {"stop-after", NULL, K_INT, OFF(stop_after), 0, 100000, NULL, 0, "N",
     "stop after N epochs of this run (the schedule still spans --epochs; continue with "
     "--resume)"},
    {"data", NULL, K_PATH, OFF(data), 0, 0, NULL, 0, "DIR",
     "the Fashion-MNIST *-ubyte.gz files (default " FMNIST_DEFAULT_DIR ")"},
    {"save", NULL, K_PATH, OFF(save), 0, 0, NULL, 0, "PATH",
     "write a checkpoint (safetensors) at the end of every epoch"},
    {"resume", NULL, K_PATH, OFF(resume), 0, 0, NULL, 0, "PATH",
     "continue the run saved in PATH exactly where it stopped"},
    {"svg", NULL, K_PATH, OFF(svg), 0, 0, NULL, 0, "PATH",
     "write the loss and accuracy curves there (default training_curves.svg; '' for none)"},
};
#define N_SPECS ((int)(sizeof specs / sizeof specs[0]))

static int64_t *int_field(train_opts *o, const opt_spec *sp) { return (int64_t *)((char *)o + sp->off); }
static double *real_field(train_opts *o, const opt_spec *sp) { return (double *)((char *)o + sp->off); }
static const char **path_field(train_opts *o, const opt_spec *sp)
{
    return (const char **)((char *)o + sp->off);
}

static train_opts default_opts(void)
{
    train_opts o = {
        .model = ARCH_MLP, .epochs = 10, .batch_size = 64, .optimizer = OPT_ADAM,
        .schedule = SCHED_COSINE, .warmup = 0, .seed = 1, .limit = 0, .test_limit = 0,
        .stop_after = 0, .threads = 0, .lr = NAN, .momentum = NAN, .weight_decay = NAN,
        .gamma = NAN, .data = FMNIST_DEFAULT_DIR, .save = NULL, .resume = NULL,
        .svg = "training_curves.svg",
    };
    return o;
}

void train_usage(FILE *f)
{
    fprintf(f, "usage: tapegrad train [options]   (--name VALUE or --name=VALUE)\n");
    for (int i = 0; i < N_SPECS; i++) {
        char left[48];
        snprintf(left, sizeof left, "--%s %s", specs[i].name, specs[i].arg);
        fprintf(f, "  %-22s", left);
        /* the help text word-wrapped into columns 26..79 */
        const char *h = specs[i].help;
        while (*h) {
            int len = (int)strlen(h);
            if (len > 53) {
                len = 53;
                while (len > 0 && h[len] != ' ') len--;
                if (len == 0) len = 53;
            }
            fprintf(f, " %.*s\n", len, h);
            h += len;
            while (*h == ' ') h++;
            if (*h) fprintf(f, "%24s", "");
        }
    }
}

/* Fills the defaults that depend on other options. */
static void resolve_defaults(train_opts *o)
{
    if (isnan(o->lr)) {
        o->lr = o->optimizer == OPT_SGD ? 0.05 : o->optimizer == OPT_ADAGRAD ? 0.01 : 1e-3;
    }
    if (isnan(o->momentum)) o->momentum = o->optimizer == OPT_SGD ? 0.9 : 0.0;
    if (isnan(o->weight_decay)) o->weight_decay = o->optimizer == OPT_ADAMW ? 0.01 : 0.0;
    if (isnan(o->gamma)) o->gamma = 0.7;
}

#define HELP_SHOWN (-1)

/* Parses argv into o; given[i] records which specs were on the command
 * line. EXIT_OK, HELP_SHOWN, or EXIT_USAGE with a message printed. */
static int parse_args(int argc, char **argv, train_opts *o, bool *given)
{
    cli_args a;
    cli_args_init(&a, CMD, argc, argv, 1);
    const char *arg;
    while ((arg = cli_args_next(&a)) != NULL) {
        if (a.name == NULL) {
            cli_error(CMD, "unexpected argument '%s' (options start with --)", arg);
            return EXIT_USAGE;
        }
        if (strcmp(a.name, "--help") == 0) {
            train_usage(stdout);
            return HELP_SHOWN;
        }
        int k = 0;
        while (k < N_SPECS && strcmp(a.name + 2, specs[k].name) != 0) k++;
        if (k == N_SPECS) {
            cli_error(CMD, "unknown option '%s' (see tapegrad train --help)", a.name);
            return EXIT_USAGE;
        }
        const opt_spec *sp = &specs[k];
        const char *v = cli_args_value(&a);
        if (v == NULL) return EXIT_USAGE;
        bool ok = true;
        int choice;
        switch (sp->kind) {
        case K_INT: ok = cli_parse_int(&a, v, (int64_t)sp->lo, (int64_t)sp->hi, int_field(o, sp)); break;
        case K_REAL: ok = cli_parse_double(&a, v, sp->lo, sp->hi, real_field(o, sp)); break;
        case K_CHOICE:
            ok = cli_parse_choice(&a, v, sp->choices, &choice);
            if (ok) *int_field(o, sp) = choice;
            break;
        case K_PATH:
            if (*v == '\0' && sp->off != OFF(svg)) {
                cli_error(CMD, "%s: empty path", a.name);
                ok = false;
            }
            *path_field(o, sp) = v;
            break;
        }
        if (!ok) return EXIT_USAGE;
        given[k] = true;
    }
    return EXIT_OK;
}

/* ---------------------------------------------------------------------- */
/* Checkpoint metadata                                                    */
/* ---------------------------------------------------------------------- */

#define MAX_META (N_SPECS + 8)

typedef struct {
    int n;
    const char *keys[MAX_META];
    const char *values[MAX_META];
    char buf[MAX_META][40];
    char *history; /* malloc'ed */
} meta_list;

static void meta_add(meta_list *m, const char *key, const char *value)
{
    m->keys[m->n] = key;
    m->values[m->n] = value;
    m->n++;
}

static const char *meta_fmt_spec(meta_list *m, train_opts *o, const opt_spec *sp)
{
    char *b = m->buf[m->n];
    switch (sp->kind) {
    case K_INT: snprintf(b, sizeof m->buf[0], "%lld", (long long)*int_field(o, sp)); break;
    case K_REAL: cli_fmt_double(b, sizeof m->buf[0], *real_field(o, sp)); break;
    case K_CHOICE: return sp->choices[*int_field(o, sp)];
    case K_PATH: return "";
    }
    return b;
}

/* "loss,acc,test_loss,test_acc;..." in forms that read back exactly. */
static char *history_str(const epoch_stats *h, int n)
{
    size_t cap = (size_t)n * 4 * 32 + 1;
    char *s = malloc(cap);
    if (s == NULL) return NULL;
    size_t len = 0;
    s[0] = '\0';
    for (int i = 0; i < n; i++) {
        const double v[4] = {h[i].train_loss, h[i].train_acc, h[i].test_loss, h[i].test_acc};
        for (int j = 0; j < 4; j++) {
            char num[32];
            cli_fmt_double(num, sizeof num, v[j]);
            len += (size_t)snprintf(s + len, cap - len, "%s%s", j ? "," : i ? ";" : "", num);
        }
    }
    return s;
}

static bool history_parse(const char *s, epoch_stats *h, int n)
{
    for (int i = 0; i < n; i++) {
        double v[4];
        for (int j = 0; j < 4; j++) {
            char *end;
            v[j] = strtod(s, &end);
            if (end == s) return false;
            char want = j < 3 ? ',' : (i < n - 1 ? ';' : '\0');
            if (*end != want) return false;
            s = *end ? end + 1 : end;
        }
        h[i] = (epoch_stats){v[0], v[1], v[2], v[3]};
    }
    return *s == '\0';
}

/* ---------------------------------------------------------------------- */
/* The run                                                                */
/* ---------------------------------------------------------------------- */

typedef struct {
    long allocs; /* allocator calls with nsize > 0 */
} alloc_counter;

static void *counting_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    ((alloc_counter *)ud)->allocs++;
    return malloc(nsize);
}

typedef struct {
    train_opts o;
    bool given[N_SPECS];
    tg_ctx *p, *s;
    alloc_counter counter;
    fmnist_split train, test;
    fmnist_net net;
    tg_optim *optim;
    tg_lr_schedule sched;
    tg_batcher *batcher;
    tg_tensor *bx, *by;
    epoch_stats *history; /* o.epochs entries */
    int64_t epoch;        /* epochs completed */
    eval_result last;
    bool have_last;
    long steady_steps, steady_allocs;
    double train_seconds;
    int64_t train_samples;
} run;

static tg_ctx *make_ctx(run *r)
{
    tg_ctx_opts co = tg_ctx_defaults();
    co.alloc = counting_alloc;
    co.alloc_ud = &r->counter;
    co.n_threads = (int)r->o.threads;
    return tg_ctx_new_opts(&co);
}

static tg_optim *make_optim(run *r)
{
    tg_tensor *const *params = tg_model_params(r->net.model);
    int n = tg_model_nparams(r->net.model);
    const train_opts *o = &r->o;
    switch ((optim_kind)o->optimizer) {
    case OPT_SGD: {
        tg_sgd_opts so = tg_sgd_defaults();
        so.lr = o->lr;
        so.momentum = o->momentum;
        so.weight_decay = o->weight_decay;
        return tg_sgd_new(r->p, params, n, &so);
    }
    case OPT_ADAM:
    case OPT_ADAMW: {
        tg_adam_opts ao = o->optimizer == OPT_ADAM ? tg_adam_defaults() : tg_adamw_defaults();
        ao.lr = o->lr;
        ao.weight_decay = o->weight_decay;
        return o->optimizer == OPT_ADAM ? tg_adam_new(r->p, params, n, &ao)
                                        : tg_adamw_new(r->p, params, n, &ao);
    }
    case OPT_RMSPROP: {
        tg_rmsprop_opts ro = tg_rmsprop_defaults();
        ro.lr = o->lr;
        ro.momentum = o->momentum;
        ro.weight_decay = o->weight_decay;
        return tg_rmsprop_new(r->p, params, n, &ro);
    }
    case OPT_ADAGRAD: {
        tg_adagrad_opts go = tg_adagrad_defaults();
        go.lr = o->lr;
        go.weight_decay = o->weight_decay;
        return tg_adagrad_new(r->p, params, n, &go);
    }
    }
    return NULL;
}

/* The schedule over the run, in optimizer steps (bpe per epoch). */
static bool make_schedule(run *r, int64_t bpe)
{
    const train_opts *o = &r->o;
    int64_t total = o->epochs * bpe;
    switch ((sched_kind)o->schedule) {
    case SCHED_NONE: r->sched = tg_lr_constant(o->lr); break;
    case SCHED_STEP: r->sched = tg_lr_step(o->lr, bpe, o->gamma); break;
    case SCHED_EXPONENTIAL:
        r->sched = tg_lr_exponential(o->lr, pow(o->gamma, 1.0 / (double)bpe));
        break;
    case SCHED_COSINE: r->sched = tg_lr_cosine(o->lr, total, 0.0); break;
    case SCHED_RESTARTS: r->sched = tg_lr_cosine_restarts(o->lr, bpe, 2, 0.0); break;
    case SCHED_ONECYCLE: r->sched = tg_lr_one_cycle(o->lr, total); break;
    }
    r->sched.warmup_steps = o->warmup;
    char msg[256];
    if (tg_lr_check(&r->sched, msg, sizeof msg) != TG_OK) {
        cli_error(CMD, "--schedule %s: %s", sched_names[o->schedule], msg);
        return false;
    }
    return true;
}

static void checkpoint_of(run *r, tg_checkpoint *ck, meta_list *m)
{
    memset(ck, 0, sizeof *ck);
    ck->model = r->net.model;
    ck->optim = r->optim;
    ck->batcher = r->batcher;
    ck->rng = r->s;
    if (m != NULL) {
        ck->n_meta = m->n;
        ck->meta_keys = m->keys;
        ck->meta_values = m->values;
    }
}

static bool save_checkpoint(run *r)
{
    meta_list m = {0};
    for (int k = 0; k < N_SPECS; k++) {
        if (specs[k].flags & SAVED) meta_add(&m, specs[k].key, meta_fmt_spec(&m, &r->o, &specs[k]));
    }
    snprintf(m.buf[m.n], sizeof m.buf[0], "%lld", (long long)r->epoch);
    meta_add(&m, "epoch", m.buf[m.n]);
    meta_add(&m, "arch", r->net.desc);
    meta_add(&m, "tool", "tapegrad train " TG_VERSION_STRING);
    m.history = history_str(r->history, (int)r->epoch);
    if (m.history == NULL) {
        cli_error(CMD, "out of memory");
        return false;
    }
    meta_add(&m, "history", m.history);
    tg_checkpoint ck;
    checkpoint_of(r, &ck, &m);
    tg_status st = tg_checkpoint_save(r->p, r->o.save, &ck);
    free(m.history);
    if (st != TG_OK) {
        cli_error(CMD, "--save %s: %s", r->o.save, tg_ctx_errmsg(r->p));
        return false;
    }
    return true;
}

/* Reads the options of the checkpoint into r->o (checking the ones given
 * on the command line agree) and its epoch count and history. */
static int resume_options(run *r, tg_ctx *scratch)
{
    arch_kind arch;
    tg_safetensors *f = ckpt_open(scratch, CMD, r->o.resume, &arch);
    if (f == NULL) return EXIT_RUNTIME;
    for (int k = 0; k < N_SPECS; k++) {
        const opt_spec *sp = &specs[k];
        if (!(sp->flags & SAVED)) continue;
        const char *v = tg_safetensors_meta(f, sp->key);
        int64_t iv = 0;
        double dv = 0.0;
        bool ok = v != NULL;
        if (ok && sp->kind == K_INT) ok = cli_str_int(v, &iv) && iv >= sp->lo && iv <= sp->hi;
        if (ok && sp->kind == K_REAL) ok = cli_str_double(v, &dv) && dv >= sp->lo && dv <= sp->hi;
        if (ok && sp->kind == K_CHOICE) {
            ok = false;
            for (int c = 0; sp->choices[c] != NULL; c++) {
                if (strcmp(v, sp->choices[c]) == 0) ok = true, iv = c;
            }
        }
        if (!ok) {
            cli_error(CMD, "--resume %s: metadata '%s' is %s%s%s", r->o.resume, sp->key,
                      v ? "invalid ('" : "missing", v ? v : "", v ? "')" : "");
            return EXIT_RUNTIME;
        }
        bool same = sp->kind == K_REAL ? *real_field(&r->o, sp) == dv : *int_field(&r->o, sp) == iv;
        if (r->given[k] && !same && !(sp->flags & OVERRIDE)) {
            cli_error(CMD, "--resume %s: the checkpoint was trained with --%s %s; options that "
                           "shape training come from the checkpoint (leave --%s out, or start "
                           "a new run)",
                      r->o.resume, sp->name, v, sp->name);
            return EXIT_RUNTIME;
        }
        if (r->given[k]) continue;
        if (sp->kind == K_REAL) *real_field(&r->o, sp) = dv;
        else *int_field(&r->o, sp) = iv;
    }
    int64_t done;
    const char *ev = tg_safetensors_meta(f, "epoch");
    const char *hv = tg_safetensors_meta(f, "history");
    r->history = calloc((size_t)(r->o.epochs > 0 ? r->o.epochs : 1), sizeof *r->history);
    if (!cli_str_int(ev, &done) || done < 1 || done > 100000 || hv == NULL) {
        cli_error(CMD, "--resume %s: metadata 'epoch' or 'history' is missing or invalid",
                  r->o.resume);
        return EXIT_RUNTIME;
    }
    if (done > r->o.epochs) {
        cli_error(CMD, "--resume %s: the checkpoint has %lld epochs, more than --epochs %lld",
                  r->o.resume, (long long)done, (long long)r->o.epochs);
        return EXIT_RUNTIME;
    }
    if (r->history == NULL || !history_parse(hv, r->history, (int)done)) {
        cli_error(CMD, "--resume %s: metadata 'history' does not hold %lld epochs",
                  r->o.resume, (long long)done);
        return EXIT_RUNTIME;
    }
    r->epoch = done;
    return EXIT_OK;
}

/* Data, model, optimizer, schedule, batcher, batch tensors. */
static int setup(run *r)
{
    train_opts *o = &r->o;
    r->p = make_ctx(r);
    r->s = make_ctx(r);
    if (r->p == NULL || r->s == NULL) {
        cli_error(CMD, "out of memory");
        return EXIT_RUNTIME;
    }
    if (o->resume != NULL) {
        int rc = resume_options(r, r->s);
        tg_ctx_reset(r->s);
        if (rc != EXIT_OK) return rc;
    } else {
        r->history = calloc((size_t)o->epochs, sizeof *r->history);
        if (r->history == NULL) {
            cli_error(CMD, "out of memory");
            return EXIT_RUNTIME;
        }
    }
    resolve_defaults(o);
    tg_ctx_seed(r->p, (uint64_t)o->seed);     /* the weights */
    tg_ctx_seed(r->s, (uint64_t)o->seed + 2); /* dropout */
    if (!fmnist_load(r->p, CMD, o->data, "train", o->limit, &r->train) ||
        !fmnist_load(r->p, CMD, o->data, "t10k", o->test_limit, &r->test)) {
        return EXIT_RUNTIME;
    }
    tg_model *m = tg_model_new(r->p);
    if (m == NULL || !fmnist_net_new(m, (arch_kind)o->model, CMD, &r->net)) return EXIT_RUNTIME;
    r->optim = make_optim(r);
    tg_batcher_opts bo = tg_batcher_defaults();
    bo.batch_size = o->batch_size;
    bo.seed = (uint64_t)o->seed + 1;
    r->batcher = tg_batcher_new(r->p, r->train.n, &bo);
    r->bx = tg_tensor_new(r->p, TG_F32, TG_SHAPE(o->batch_size, 28, 28));
    r->by = tg_tensor_new(r->p, TG_I64, TG_SHAPE(o->batch_size));
    if (r->optim == NULL || r->batcher == NULL || r->bx == NULL || r->by == NULL) {
        cli_error(CMD, "%s", tg_ctx_errmsg(r->p));
        return EXIT_RUNTIME;
    }
    if (!make_schedule(r, tg_batcher_batches(r->batcher))) return EXIT_USAGE;
    if (o->resume != NULL) {
        tg_checkpoint ck;
        checkpoint_of(r, &ck, NULL);
        if (tg_checkpoint_load(r->p, o->resume, &ck) != TG_OK) {
            cli_error(CMD, "--resume %s: %s", o->resume, tg_ctx_errmsg(r->p));
            return EXIT_RUNTIME;
        }
    }
    return EXIT_OK;
}

static void print_header(const run *r)
{
    const train_opts *o = &r->o;
    printf("tapegrad train: %s %s (%lld parameters)\n", arch_names[o->model], r->net.desc,
           (long long)tg_model_numel(r->net.model));
    printf("data: %lld training and %lld test samples from %s\n", (long long)r->train.n,
           (long long)r->test.n, o->data);
    printf("%s lr %g", optim_names[o->optimizer], o->lr);
    if (o->optimizer == OPT_SGD || (o->optimizer == OPT_RMSPROP && o->momentum > 0))
        printf(" momentum %g", o->momentum);
    if (o->weight_decay > 0) printf(" weight decay %g", o->weight_decay);
    printf(", schedule %s", sched_names[o->schedule]);
    if (o->schedule == SCHED_STEP || o->schedule == SCHED_EXPONENTIAL) printf(" gamma %g", o->gamma);
    if (o->warmup > 0) printf(" warm-up %lld steps", (long long)o->warmup);
    printf(", batch %lld, %lld epochs, seed %lld, %d threads\n", (long long)o->batch_size,
           (long long)o->epochs, (long long)o->seed, tg_ctx_threads(r->p));
    if (o->resume != NULL)
        printf("resuming %s after epoch %lld\n", o->resume, (long long)r->epoch);
    fflush(stdout);
}

/* The progress bar of a terminal, redrawn in place. */
static void draw_progress(const run *r, int64_t done, int64_t total, double loss, int64_t seen,
                          double elapsed)
{
    enum { BAR = 24 };
    char bar[BAR + 1];
    int fill = total > 0 ? (int)(BAR * done / total) : BAR;
    for (int i = 0; i < BAR; i++) bar[i] = i < fill ? '#' : '.';
    bar[BAR] = '\0';
    double rate = elapsed > 0 ? (double)seen / elapsed : 0.0;
    double left = done > 0 ? elapsed * (double)(total - done) / (double)done : 0.0;
    printf("\r\033[Kepoch %*lld/%lld [%s] %lld/%lld  loss %.4f  %.0f samples/s  %d:%02d left",
           r->o.epochs >= 10 ? 2 : 1, (long long)r->epoch + 1, (long long)r->o.epochs, bar,
           (long long)done, (long long)total, loss, rate, (int)(left / 60), (int)fmod(left, 60));
    fflush(stdout);
}

/* One epoch of training: fills the history entry's train fields. */
static int train_epoch(run *r, bool tty)
{
    epoch_stats *h = &r->history[r->epoch];
    int64_t total = tg_batcher_batches(r->batcher), done = 0, seen = 0, correct = 0;
    double loss_sum = 0.0, t0 = cli_now(), last_draw = 0.0;
    const int64_t *idx;
    int64_t m;
    while ((m = tg_batcher_next(r->batcher, &idx)) > 0) {
        long a0 = r->counter.allocs;
        tg_ctx *s = r->s;
        tg_ctx_reset(s);
        tg_gather_rows(r->p, r->bx, r->train.x, idx, m);
        tg_gather_rows(r->p, r->by, r->train.y, idx, m);
        bool full = m == r->o.batch_size;
        tg_tensor *x = full ? r->bx : tg_slice(s, r->bx, 0, 0, m, 1);
        tg_tensor *y = full ? r->by : tg_slice(s, r->by, 0, 0, m, 1);
        tg_tensor *logits = fmnist_forward(s, &r->net, x);
        tg_tensor *loss = tg_cross_entropy(s, logits, y);
        tg_optim_zero_grad(r->optim);
        if (tg_ctx_status(r->p) != TG_OK || tg_backward(s, loss) != TG_OK) {
            cli_error(CMD, "step %lld: %s", (long long)done + 1,
                      tg_ctx_status(r->p) ? tg_ctx_errmsg(r->p) : tg_ctx_errmsg(s));
            return EXIT_RUNTIME;
        }
        if (tg_optim_apply_schedule(r->optim, &r->sched) != TG_OK ||
            tg_optim_step(r->optim) != TG_OK) {
            cli_error(CMD, "step %lld: %s", (long long)done + 1, tg_ctx_errmsg(r->p));
            return EXIT_RUNTIME;
        }
        double lv = tg_item(loss);
        if (!isfinite(lv)) {
            if (tty) printf("\n");
            cli_error(CMD, "epoch %lld step %lld: the loss is %g; try a lower --lr",
                      (long long)r->epoch + 1, (long long)done + 1, lv);
            return EXIT_RUNTIME;
        }
        tg_tensor *pred = tg_argmax(s, logits, 1, false);
        const int64_t *pv = tg_data(pred), *yv = tg_data(r->by);
        for (int64_t k = 0; k < m; k++) correct += pv[k] == yv[k];
        loss_sum += lv * (double)m;
        seen += m;
        done++;
        if (done > 2) {
            r->steady_steps++;
            r->steady_allocs += r->counter.allocs - a0;
        }
        if (tty) {
            double now = cli_now();
            if (now - last_draw >= 0.1 || done == total) {
                draw_progress(r, done, total, loss_sum / (double)seen, seen, now - t0);
                last_draw = now;
            }
        }
    }
    double secs = cli_now() - t0;
    r->train_seconds += secs;
    r->train_samples += seen;
    h->train_loss = loss_sum / (double)seen;
    h->train_acc = (double)correct / (double)seen;
    return EXIT_OK;
}

static int train_loop(run *r, bool tty)
{
    int64_t stop = r->o.stop_after > 0 ? r->epoch + r->o.stop_after : r->o.epochs;
    if (stop > r->o.epochs) stop = r->o.epochs;
    while (r->epoch < stop) {
        double t0 = cli_now(), tt = r->train_seconds;
        int64_t ts = r->train_samples;
        int rc = train_epoch(r, tty);
        if (rc != EXIT_OK) return rc;
        if (tty) {
            printf("\r\033[Kepoch %lld/%lld: evaluating on %lld test samples...",
                   (long long)r->epoch + 1, (long long)r->o.epochs, (long long)r->test.n);
            fflush(stdout);
        }
        if (!fmnist_evaluate(r->s, &r->net, &r->test, EVAL_BATCH, CMD, &r->last)) return EXIT_RUNTIME;
        r->have_last = true;
        epoch_stats *h = &r->history[r->epoch];
        h->test_loss = r->last.loss;
        h->test_acc = (double)r->last.correct / (double)r->last.n;
        r->epoch++;
        double rate = (double)(r->train_samples - ts) / (r->train_seconds - tt);
        if (tty) printf("\r\033[K");
        printf("epoch %*lld/%lld  loss %.4f  train_acc %.4f  test_loss %.4f  test_acc %.4f  "
               "lr %.3g  %.0f samples/s  %.1f s\n",
               r->o.epochs >= 10 ? 2 : 1, (long long)r->epoch, (long long)r->o.epochs,
               h->train_loss, h->train_acc, h->test_loss, h->test_acc, tg_optim_lr(r->optim),
               rate, cli_now() - t0);
        fflush(stdout);
        if (r->o.save != NULL && !save_checkpoint(r)) return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

static int finish(run *r)
{
    if (!r->have_last && !fmnist_evaluate(r->s, &r->net, &r->test, EVAL_BATCH, CMD, &r->last))
        return EXIT_RUNTIME;
    if (r->epoch < r->o.epochs) {
        printf("stopped after epoch %lld of %lld (--stop-after)%s%s\n", (long long)r->epoch,
               (long long)r->o.epochs, r->o.save ? "; continue with --resume " : "",
               r->o.save ? r->o.save : "");
    }
    if (r->train_samples > 0) {
        printf("trained %lld samples in %.1f s (%.0f samples/s); heap allocations in %ld "
               "steady-state steps: %ld\n",
               (long long)r->train_samples, r->train_seconds,
               (double)r->train_samples / r->train_seconds, r->steady_steps, r->steady_allocs);
    }
    if (r->o.svg != NULL && r->o.svg[0] != '\0' && r->epoch > 0) {
        char title[256];
        snprintf(title, sizeof title, "tapegrad train --model %s: %s lr %g, %s, batch %lld, "
                 "seed %lld; test accuracy %.4f",
                 arch_names[r->o.model], optim_names[r->o.optimizer], r->o.lr,
                 sched_names[r->o.schedule], (long long)r->o.batch_size, (long long)r->o.seed,
                 (double)r->last.correct / (double)r->last.n);
        if (!report_svg(r->o.svg, CMD, title, r->net.desc, r->history, (int)r->epoch))
            return EXIT_RUNTIME;
        printf("curves: %s\n", r->o.svg);
    }
    report_all(stdout, &r->last);
    report_final_line(stdout, &r->last);
    return EXIT_OK;
}

int cmd_train(int argc, char **argv)
{
    run *r = calloc(1, sizeof *r);
    if (r == NULL) {
        cli_error(CMD, "out of memory");
        return EXIT_RUNTIME;
    }
    r->o = default_opts();
    int rc = parse_args(argc, argv, &r->o, r->given);
    if (rc == HELP_SHOWN) {
        free(r);
        return EXIT_OK;
    }
    if (rc == EXIT_OK) rc = setup(r);
    if (rc == EXIT_OK) {
        print_header(r);
        rc = train_loop(r, isatty(STDOUT_FILENO) == 1);
    }
    if (rc == EXIT_OK) rc = finish(r);
    tg_ctx_free(r->s);
    tg_ctx_free(r->p);
    free(r->history);
    free(r);
    return rc;
}
