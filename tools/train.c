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
 *
 * Data-parallel training (dist.h): started by mpirun with several
 * processes (OMPI_COMM_WORLD_SIZE or PMI_SIZE above 1), or with --dist,
 * each process is one rank holding the whole data and model. --batch-size
 * is the global batch, and must be divisible by the rank count; the
 * batcher is sharded (each rank gets batch_size / world samples of every
 * global batch, same seed everywhere), the gradients are all-reduced with
 * each rank's share as weight before every optimizer step, so N ranks
 * follow the single-process trajectory up to the rounding of the sums.
 * The test set is evaluated in contiguous shards and the counts summed.
 * Only rank 0 prints to stdout and writes the checkpoint and the SVG; the
 * batcher state is world-independent, so --resume works with any rank
 * count. The dropout stream (s's RNG) is the same on every rank (it is
 * the one stored in checkpoints); each rank draws it for its own samples.
 * Every failure of one rank is agreed on by all (all_ok, or the context
 * status that fails the next collective call), so no rank is left waiting.
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
        stop_after, threads, dist;
    double lr, momentum, weight_decay, gamma; /* NaN: the optimizer's / schedule's default */
    const char *data, *save, *resume, *svg;
} train_opts;

typedef enum { K_INT, K_REAL, K_CHOICE, K_PATH, K_FLAG } value_kind;

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
     "kernel threads (default 0: $TG_NUM_THREADS, else every CPU; under mpirun, the CPUs "
     "shared among the ranks of each machine)"},
    {"dist", NULL, K_FLAG, OFF(dist), 0, 0, NULL, 0, "",
     "train data-parallel over MPI, one rank per process (implied when started by mpirun "
     "with more than one process); --batch-size stays the global batch, split evenly over "
     "the ranks"},
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
        .stop_after = 0, .threads = 0, .dist = 0, .lr = NAN, .momentum = NAN, .weight_decay = NAN,
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
        if (sp->kind == K_FLAG) {
            if (a.inline_value != NULL) {
                cli_error(CMD, "%s takes no value", a.name);
                return EXIT_USAGE;
            }
            *int_field(o, sp) = 1;
            given[k] = true;
            continue;
        }
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
        case K_FLAG: break; /* handled above */
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
    case K_PATH:
    case K_FLAG: return "";
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
    /* Data-parallel runs (dist NULL otherwise: rank 0 of 1) */
    tg_dist *dist;
    int rank, world;
    int64_t rank_batch;       /* batch_size / world */
    fmnist_split test_shard;  /* this rank's contiguous part of test */
    double reduce_seconds;    /* in tg_dist_allreduce_grads */
} run;

/* ---------------------------------------------------------------------- */
/* Data-parallel runs                                                     */
/* ---------------------------------------------------------------------- */

/* The integer value of the first of the environment variables set, or 0. */
static long env_int(const char *const *names)
{
    for (int i = 0; names[i] != NULL; i++) {
        const char *v = getenv(names[i]);
        if (v != NULL && *v != '\0') {
            int64_t n;
            return cli_str_int(v, &n) && n > 0 && n < 1000000 ? (long)n : 0;
        }
    }
    return 0;
}

/* The size of the job this process was started in by mpirun (Open MPI, or
 * a PMI launcher such as MPICH's hydra), 0 when not started so. */
static long launch_world(void)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", NULL};
    return env_int(names);
}

/* Ranks of the job on this machine, 0 when unknown. */
static long launch_local_size(void)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", NULL};
    return env_int(names);
}

/* Whether every rank is fine: each rank passes its own verdict and all get
 * the same answer (one small all-reduce), so a rank that failed alone (and
 * printed why) stops the others instead of leaving them waiting in the
 * next collective call. Rank 0 says why it stops when it did not fail
 * itself. Alone: ok. */
static bool all_ok(run *r, bool ok)
{
    if (r->dist == NULL) return ok;
    double bad = ok ? 0.0 : 1.0;
    if (tg_dist_allreduce_sum(r->dist, &bad, 1) == TG_OK && bad == 0.0) return true;
    if (ok && r->rank == 0) {
        cli_error(CMD, "stopping: %s", tg_ctx_status(r->p) != TG_OK ? tg_ctx_errmsg(r->p)
                                                                     : "another rank failed");
    }
    return false;
}

/* Joins the group when asked to (--dist) or started by mpirun with more
 * than one process; sets rank, world and the per-rank batch. Other ranks
 * than 0 print nothing to stdout from here on. */
static int dist_join(run *r)
{
    r->world = 1;
    if (!r->o.dist && launch_world() <= 1) return EXIT_OK;
    r->dist = tg_dist_init(r->p, NULL);
    if (r->dist == NULL) {
        if (tg_ctx_status(r->p) == TG_ERR_UNSUPPORTED) {
            cli_error(CMD, "%s, but this tapegrad was built without MPI (rebuild with meson "
                           "-Dmpi=enabled)",
                      r->o.dist ? "--dist asks for data-parallel training"
                                : "started by mpirun with several processes");
        } else {
            cli_error(CMD, "cannot join the MPI group: %s", tg_ctx_errmsg(r->p));
        }
        return EXIT_RUNTIME;
    }
    r->rank = tg_dist_rank(r->dist);
    r->world = tg_dist_world(r->dist);
    if (r->rank != 0 && freopen("/dev/null", "w", stdout) == NULL) {
        cli_error(CMD, "rank %d: cannot silence stdout", r->rank);
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

/* This rank's contiguous part of the test set (views into it). */
static void shard_test(run *r)
{
    int64_t n = r->test.n, lo = n * r->rank / r->world, hi = n * (r->rank + 1) / r->world;
    r->test_shard.x = tg_slice(r->p, r->test.x, 0, lo, hi, 1);
    r->test_shard.y = tg_slice(r->p, r->test.y, 0, lo, hi, 1);
    r->test_shard.n = hi - lo;
}

/* Evaluates the test set; in a data-parallel run each rank its shard, and
 * the confusion matrices, counts and loss sums summed over the ranks. */
static bool evaluate(run *r, eval_result *e)
{
    if (r->dist == NULL) return fmnist_evaluate(r->s, &r->net, &r->test, EVAL_BATCH, CMD, e);
    bool ok = fmnist_evaluate(r->s, &r->net, &r->test_shard, EVAL_BATCH, CMD, e);
    if (!all_ok(r, ok)) return false;
    enum { NCM = FMNIST_CLASSES * FMNIST_CLASSES };
    double v[NCM + 3];
    for (int k = 0; k < NCM; k++) v[k] = (double)e->cm[k / FMNIST_CLASSES][k % FMNIST_CLASSES];
    v[NCM] = (double)e->n;
    v[NCM + 1] = (double)e->correct;
    v[NCM + 2] = e->loss * (double)e->n;
    if (tg_dist_allreduce_sum(r->dist, v, NCM + 3) != TG_OK) {
        cli_error(CMD, "evaluation: %s", tg_ctx_errmsg(r->p));
        return false;
    }
    for (int k = 0; k < NCM; k++) e->cm[k / FMNIST_CLASSES][k % FMNIST_CLASSES] = (int64_t)v[k];
    e->n = (int64_t)v[NCM];
    e->correct = (int64_t)v[NCM + 1];
    e->loss = e->n > 0 ? v[NCM + 2] / (double)e->n : 0.0;
    return true;
}

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
    long local = launch_local_size();
    if (o->threads == 0 && local > 1 && getenv("TG_NUM_THREADS") == NULL) {
        /* ranks sharing a machine share its CPUs */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads = cpus / local > 1 ? cpus / local : 1;
    }
    r->p = make_ctx(r);
    r->s = make_ctx(r);
    if (r->p == NULL || r->s == NULL) {
        cli_error(CMD, "out of memory");
        return EXIT_RUNTIME;
    }
    int rc = dist_join(r);
    if (rc != EXIT_OK) return rc;
    if (o->resume != NULL) {
        rc = resume_options(r, r->s);
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
    if (o->batch_size % r->world != 0) {
        cli_error(CMD, "--batch-size %lld is the global batch and must be divisible by the %d "
                       "ranks",
                  (long long)o->batch_size, r->world);
        return EXIT_USAGE;
    }
    r->rank_batch = o->batch_size / r->world;
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
    bo.batch_size = r->rank_batch;
    bo.seed = (uint64_t)o->seed + 1; /* the same on every rank: one permutation */
    bo.rank = r->rank;
    bo.world = r->world;
    r->batcher = tg_batcher_new(r->p, r->train.n, &bo);
    r->bx = tg_tensor_new(r->p, TG_F32, TG_SHAPE(r->rank_batch, 28, 28));
    r->by = tg_tensor_new(r->p, TG_I64, TG_SHAPE(r->rank_batch));
    if (r->dist != NULL) shard_test(r);
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

/* Setup on every rank: they agree that all succeeded, then every rank
 * starts from rank 0's weights (they built the same ones from the same
 * seed, or read the same checkpoint: the broadcast makes sure). */
static int setup_all(run *r)
{
    int rc = setup(r);
    if (r->dist == NULL) return rc;
    if (!all_ok(r, rc == EXIT_OK)) return rc != EXIT_OK ? rc : EXIT_RUNTIME;
    if (tg_dist_broadcast_model(r->dist, r->net.model) != TG_OK) {
        cli_error(CMD, "%s", tg_ctx_errmsg(r->p));
        return EXIT_RUNTIME;
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
    if (r->dist != NULL)
        printf("data-parallel: %d ranks, %lld samples per rank and step\n", r->world,
               (long long)r->rank_batch);
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
        bool full = m == r->rank_batch;
        tg_tensor *x = full ? r->bx : tg_slice(s, r->bx, 0, 0, m, 1);
        tg_tensor *y = full ? r->by : tg_slice(s, r->by, 0, 0, m, 1);
        tg_tensor *logits = fmnist_forward(s, &r->net, x);
        tg_tensor *loss = tg_cross_entropy(s, logits, y);
        tg_optim_zero_grad(r->optim);
        /* this rank's share of the global batch: 0 for a rank given a
         * sample only to keep step (its loss and sample count nothing) */
        double w = tg_batcher_weight(r->batcher);
        bool ok = tg_ctx_status(r->p) == TG_OK && tg_backward(s, loss) == TG_OK;
        if (!ok) {
            cli_error(CMD, "step %lld: %s", (long long)done + 1,
                      tg_ctx_status(r->p) ? tg_ctx_errmsg(r->p) : tg_ctx_errmsg(s));
        }
        double lv = ok ? tg_item(loss) : NAN;
        if (ok && w > 0 && !isfinite(lv)) {
            if (tty) printf("\n");
            cli_error(CMD, "epoch %lld step %lld: the loss is %g; try a lower --lr",
                      (long long)r->epoch + 1, (long long)done + 1, lv);
            ok = false;
        }
        if (r->dist != NULL) {
            /* A rank that failed records it on p, which fails the
             * all-reduce on every rank (with a message naming it). */
            if (!ok && tg_ctx_status(r->p) == TG_OK)
                tg_ctx_set_error(r->p, TG_ERR_NUMERIC, "rank %d failed its step", r->rank);
            double t1 = cli_now();
            tg_status st = tg_dist_allreduce_grads(r->dist, tg_model_params(r->net.model),
                                                   tg_model_nparams(r->net.model), w);
            r->reduce_seconds += cli_now() - t1;
            if (st != TG_OK) {
                if (ok && r->rank == 0) cli_error(CMD, "step %lld: %s", (long long)done + 1,
                                                  tg_ctx_errmsg(r->p));
                return EXIT_RUNTIME;
            }
        }
        if (!ok) return EXIT_RUNTIME;
        if (tg_optim_apply_schedule(r->optim, &r->sched) != TG_OK ||
            tg_optim_step(r->optim) != TG_OK) {
            cli_error(CMD, "step %lld: %s", (long long)done + 1, tg_ctx_errmsg(r->p));
            return EXIT_RUNTIME;
        }
        if (w > 0) {
            tg_tensor *pred = tg_argmax(s, logits, 1, false);
            const int64_t *pv = tg_data(pred), *yv = tg_data(r->by);
            for (int64_t k = 0; k < m; k++) correct += pv[k] == yv[k];
            loss_sum += lv * (double)m;
            seen += m;
        }
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
    if (r->dist != NULL) {
        /* the epoch's sums over the ranks */
        double v[3] = {loss_sum, (double)correct, (double)seen};
        if (tg_dist_allreduce_sum(r->dist, v, 3) != TG_OK) {
            cli_error(CMD, "%s", tg_ctx_errmsg(r->p));
            return EXIT_RUNTIME;
        }
        loss_sum = v[0];
        correct = (int64_t)v[1];
        seen = (int64_t)v[2];
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
        if (!evaluate(r, &r->last)) return EXIT_RUNTIME;
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
        /* rank 0 writes the checkpoints (every rank holds the same state) */
        if (r->o.save != NULL && !all_ok(r, r->rank != 0 || save_checkpoint(r)))
            return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

static int finish(run *r)
{
    if (!r->have_last && !evaluate(r, &r->last)) return EXIT_RUNTIME;
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
        if (r->dist != NULL)
            printf("%d ranks; rank 0 spent %.1f s (%.1f%%) in the gradient all-reduce\n",
                   r->world, r->reduce_seconds, 100.0 * r->reduce_seconds / r->train_seconds);
    }
    if (r->rank == 0 && r->o.svg != NULL && r->o.svg[0] != '\0' && r->epoch > 0) {
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
    if (rc == EXIT_OK) rc = setup_all(r);
    if (rc == EXIT_OK) {
        print_header(r);
        rc = train_loop(r, isatty(STDOUT_FILENO) == 1);
    }
    if (rc == EXIT_OK) rc = finish(r);
    if (r->dist != NULL && tg_dist_finalize(r->dist) != TG_OK) {
        cli_error(CMD, "%s", tg_ctx_errmsg(r->p));
        if (rc == EXIT_OK) rc = EXIT_RUNTIME;
    }
    tg_ctx_free(r->s);
    tg_ctx_free(r->p);
    free(r->history);
    free(r);
    return rc;
}
