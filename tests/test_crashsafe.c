/*
 * test_crashsafe.c - saves never lose the previous file and are never
 * read back half-written.
 *
 *  - I/O faults: the atomic-write layer's test hook (src/io/io_impl.h)
 *    fails the k-th system call of a save (open, each write, fsync, close,
 *    rename) for k = 1, 2, ... until a save makes no more calls. Every
 *    failing save returns TG_ERR_IO with a message naming the function,
 *    the path and the system error; the previous file is byte-identical
 *    and loads with the same contents (or stays absent); no temporary file
 *    is left; the context works again after tg_ctx_clear_error. EINTR on
 *    any write is retried and the save succeeds.
 *  - Kills: a forked child saving the file is SIGKILLed at each of its
 *    system calls in turn (the hook raises SIGKILL), and at spread-out
 *    moments of a large save; the target is then the complete old or the
 *    complete new file, and a temporary file the kill left behind is
 *    either complete or refused by the loader.
 *  - Every proper prefix of a saved file is refused by the loader.
 *
 *  - Allocation failure across tg_checkpoint_save and tg_checkpoint_load:
 *    the k-th allocation fails, for every k; each run gives an error with
 *    a message, leaves model, optimizer, batcher and RNG as they were and
 *    the file on disk untouched, and leaks nothing.
 *
 * Writers covered: tg_safetensors_write (contiguous and strided tensors,
 * several write calls), tg_npy_write and tg_checkpoint_save.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tapegrad.h>

#include "io/io_impl.h"
#include "test_util.h"

/* ---------------------------------------------------------------------- */
/* Files and directories                                                  */
/* ---------------------------------------------------------------------- */

typedef struct {
    char dir[256];
    char path[320]; /* the target, dir/target */
} scratch;

static void scratch_new(scratch *s, const char *name)
{
    const char *t = getenv("TMPDIR");
    snprintf(s->dir, sizeof s->dir, "%s/tg-crashsafe-XXXXXX", t && t[0] ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(s->dir));
    snprintf(s->path, sizeof s->path, "%s/%s", s->dir, name);
}

/* Calls f(full path) for every entry of s->dir but the target. */
static int for_each_other(const scratch *s, void (*f)(const char *p, void *ud), void *ud)
{
    const char *base = strrchr(s->path, '/') + 1;
    int n = 0;
    DIR *d = opendir(s->dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    char p[640];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (strcmp(e->d_name, base) == 0) continue;
        snprintf(p, sizeof p, "%s/%s", s->dir, e->d_name);
        if (f) f(p, ud);
        n++;
    }
    closedir(d);
    return n;
}

static void unlink_cb(const char *p, void *ud)
{
    (void)ud;
    unlink(p);
}

static void scratch_free(scratch *s)
{
    for_each_other(s, unlink_cb, NULL);
    unlink(s->path);
    rmdir(s->dir);
}

typedef struct {
    unsigned char *bytes; /* NULL: the file must not exist */
    size_t len;
} blob;

static void assert_file_is(const char *path, const blob *want, const char *what)
{
    size_t len = 0;
    unsigned char *got = tu_read_file(path, &len);
    if (want->bytes == NULL) {
        ck_assert_msg(got == NULL, "%s: %s exists, but must not", what, path);
        return;
    }
    ck_assert_msg(got != NULL, "%s: %s is gone", what, path);
    ck_assert_msg(len == want->len && memcmp(got, want->bytes, len) == 0,
                  "%s: %s is not the expected file (%zu bytes, expected %zu)", what, path, len,
                  want->len);
    free(got);
}

/* ---------------------------------------------------------------------- */
/* What is saved: version v of a few tensors, deterministic               */
/* ---------------------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void fill(tg_tensor *t, uint64_t seed)
{
    void *p = tg_data(t);
    int64_t n = tg_numel(t);
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = mix(seed * 1000003u + (uint64_t)i);
        switch (tg_tensor_dtype(t)) {
        case TG_F32: ((float *)p)[i] = (float)(r >> 40) / (float)(1 << 24) - 0.5f; break;
        case TG_F64: ((double *)p)[i] = (double)(r >> 11) / 9007199254740992.0 - 0.5; break;
        case TG_I64: ((int64_t *)p)[i] = (int64_t)(r >> 1); break;
        }
    }
}

enum { NSET = 4 };
static const char *const set_names[NSET] = {"fc.weight", "fc.bias", "optim.step", "emb.t"};

/* Version v in c: "fc.weight" f32 [rows, 64], "fc.bias" f64 [64],
 * "optim.step" i64 [3] and "emb.t", the transpose of an f32 [40, 300]
 * (a strided view of 12,000 elements, so written in two calls). */
static void make_set(tg_ctx *c, int v, int64_t rows, tg_tensor *t[NSET])
{
    t[0] = tg_tensor_new(c, TG_F32, TG_SHAPE(rows, 64));
    t[1] = tg_tensor_new(c, TG_F64, TG_SHAPE(64));
    t[2] = tg_tensor_new(c, TG_I64, TG_SHAPE(3));
    tg_tensor *base = tg_tensor_new(c, TG_F32, TG_SHAPE(40, 300));
    if (t[0] && t[1] && t[2] && base) {
        fill(t[0], 10u * (uint64_t)v + 0);
        fill(t[1], 10u * (uint64_t)v + 1);
        fill(t[2], 10u * (uint64_t)v + 2);
        fill(base, 10u * (uint64_t)v + 3);
    }
    t[3] = tg_transpose(c, base, 0, 1);
}

static bool same_tensor(const tg_tensor *a, const tg_tensor *b)
{
    if (!a || !b || tg_tensor_dtype(a) != tg_tensor_dtype(b) || tg_ndim(a) != tg_ndim(b))
        return false;
    for (int i = 0; i < tg_ndim(a); i++)
        if (tg_shape(a)[i] != tg_shape(b)[i]) return false;
    size_t n = (size_t)tg_numel(a) * tg_dtype_size(tg_tensor_dtype(a));
    unsigned char *x = malloc(n + 1), *y = malloc(n + 1);
    ck_assert(x && y);
    bool same = tg_copy_out(a, x, n) == TG_OK && tg_copy_out(b, y, n) == TG_OK &&
                memcmp(x, y, n) == 0;
    free(x);
    free(y);
    return same;
}

/* A writer under test: save version v to path in c; check that path loads
 * in c and holds version v. */
typedef struct {
    const char *fn; /* the public function, expected in messages */
    const char *file;
    tg_status (*save)(tg_ctx *c, const char *path, int v, int64_t rows);
    bool (*holds)(tg_ctx *c, const char *path, int v, int64_t rows);
    tg_status (*parse)(tg_ctx *c, const void *buf, size_t len);
} writer;

static tg_status st_save(tg_ctx *c, const char *path, int v, int64_t rows)
{
    tg_tensor *t[NSET];
    make_set(c, v, rows, t);
    char meta[32];
    snprintf(meta, sizeof meta, "%d", v);
    return tg_safetensors_write(c, path, NSET, t, set_names, 1, (const char *const[]){"version"},
                                (const char *const[]){meta});
}

static bool st_holds(tg_ctx *c, const char *path, int v, int64_t rows)
{
    tg_tensor *t[NSET];
    make_set(c, v, rows, t);
    tg_safetensors *f = tg_safetensors_read(c, path);
    if (f == NULL || tg_safetensors_count(f) != NSET) return false;
    for (int i = 0; i < NSET; i++)
        if (!same_tensor(tg_safetensors_find(f, set_names[i]), t[i])) return false;
    char meta[32];
    snprintf(meta, sizeof meta, "%d", v);
    const char *m = tg_safetensors_meta(f, "version");
    return m != NULL && strcmp(m, meta) == 0;
}

static tg_status st_parse(tg_ctx *c, const void *buf, size_t len)
{
    return tg_safetensors_parse(c, buf, len) ? TG_OK : tg_ctx_status(c);
}

static tg_status npy_save(tg_ctx *c, const char *path, int v, int64_t rows)
{
    tg_tensor *t[NSET];
    make_set(c, v, rows, t);
    return tg_npy_write(c, path, t[3]);
}

static bool npy_holds(tg_ctx *c, const char *path, int v, int64_t rows)
{
    tg_tensor *t[NSET];
    make_set(c, v, rows, t);
    return same_tensor(tg_npy_read(c, path), t[3]);
}

static tg_status npy_parse(tg_ctx *c, const void *buf, size_t len)
{
    return tg_npy_parse(c, buf, len) ? TG_OK : tg_ctx_status(c);
}


/* A training run's objects for tg_checkpoint_save / _load, in c: a model
 * ("fc" [rows, 64] + bias, "bn" with its buffers), Adam with its state, a
 * batcher and c's RNG, all set from version v. */
typedef struct {
    tg_model *m;
    tg_optim *o;
    tg_batcher *b;
    tg_checkpoint ck;
    char meta[32];
    const char *mk[1], *mv[1];
} run_objs;

static bool make_run(tg_ctx *c, int v, int64_t rows, run_objs *r)
{
    memset(r, 0, sizeof *r);
    r->m = tg_model_new(c);
    if (!tg_nn_linear_new(r->m, "fc", 64, rows, true) ||
        !tg_nn_batch_norm1d_new(r->m, "bn", rows, 1e-5, 0.1, true))
        return false;
    for (int i = 0; i < tg_model_nparams(r->m) + tg_model_nbuffers(r->m); i++) {
        int np = tg_model_nparams(r->m);
        tg_tensor *t = i < np ? tg_model_param(r->m, i) : tg_model_buffer(r->m, i - np);
        fill(t, 100u * (uint64_t)v + (uint64_t)i);
        if (tg_tensor_dtype(t) == TG_I64) ((int64_t *)tg_data(t))[0] &= 0xffff; /* a count */
    }
    r->o = tg_adam_new(c, tg_model_params(r->m), tg_model_nparams(r->m), NULL);
    if (!r->o || tg_optim_init_state(r->o) != TG_OK) return false;
    for (int i = 0; i < tg_optim_state_count(r->o); i++) {
        const char *name;
        tg_tensor *t;
        if (tg_optim_state_get(r->o, i, &name, &t) != TG_OK) return false;
        if (tg_tensor_dtype(t) == TG_I64) ((int64_t *)tg_data(t))[0] = v + i;
        else if (i > 1) fill(t, 1000u * (uint64_t)v + (uint64_t)i);
    }
    tg_optim_set_lr(r->o, 1e-3 * v);
    tg_batcher_opts bo = tg_batcher_defaults();
    bo.seed = (uint64_t)v;
    r->b = tg_batcher_new(c, 100, &bo);
    if (!r->b) return false;
    const int64_t *idx;
    for (int i = 0; i < v; i++) tg_batcher_next(r->b, &idx);
    tg_ctx_seed(c, 77u + (uint64_t)v);
    snprintf(r->meta, sizeof r->meta, "%d", v);
    r->mk[0] = "version";
    r->mv[0] = r->meta;
    r->ck = (tg_checkpoint){r->m, r->o, r->b, c, 1, r->mk, r->mv};
    return tg_ctx_status(c) == TG_OK;
}

/* Everything the run holds, as bytes (malloc'd). */
static unsigned char *run_bytes(run_objs *r, size_t *len)
{
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    int np = tg_model_nparams(r->m), nb = tg_model_nbuffers(r->m);
    for (int i = 0; i < np + nb + tg_optim_state_count(r->o); i++) {
        tg_tensor *t = NULL;
        if (i < np) t = tg_model_param(r->m, i);
        else if (i < np + nb) t = tg_model_buffer(r->m, i - np);
        else ck_assert_int_eq(tg_optim_state_get(r->o, i - np - nb, NULL, &t), TG_OK);
        size_t k = (size_t)tg_numel(t) * tg_dtype_size(tg_tensor_dtype(t));
        ck_assert(n + k <= cap);
        ck_assert_int_eq(tg_copy_out(t, buf + n, k), TG_OK);
        n += k;
    }
    tg_batcher_state bs = tg_batcher_get_state(r->b);
    uint64_t rng[4];
    tg_ctx_get_rng(r->ck.rng, rng);
    ck_assert(n + sizeof bs + sizeof rng <= cap);
    memcpy(buf + n, &bs, sizeof bs);
    n += sizeof bs;
    memcpy(buf + n, rng, sizeof rng);
    n += sizeof rng;
    *len = n;
    return buf;
}

static tg_status ck_save(tg_ctx *c, const char *path, int v, int64_t rows)
{
    run_objs r;
    if (!make_run(c, v, rows, &r)) return tg_ctx_status(c) ? tg_ctx_status(c) : TG_ERR_NOMEM;
    return tg_checkpoint_save(c, path, &r.ck);
}

static bool ck_holds(tg_ctx *c, const char *path, int v, int64_t rows)
{
    run_objs want, got;
    if (!make_run(c, v, rows, &want)) return false;
    size_t wl, gl;
    unsigned char *wb = run_bytes(&want, &wl);
    if (!make_run(c, v + 50, rows, &got)) return false; /* other values */
    bool ok = tg_checkpoint_load(c, path, &got.ck) == TG_OK;
    unsigned char *gb = run_bytes(&got, &gl);
    ok = ok && wl == gl && memcmp(wb, gb, wl) == 0;
    free(wb);
    free(gb);
    return ok;
}

static const writer writers[] = {
    {"tg_safetensors_write", "model.safetensors", st_save, st_holds, st_parse},
    {"tg_npy_write", "t.npy", npy_save, npy_holds, npy_parse},
    {"tg_checkpoint_save", "run.ckpt", ck_save, ck_holds, st_parse},
};
#define N_WRITERS ((int)(sizeof writers / sizeof writers[0]))

/* A context whose kernels run on the calling thread only, so that a forked
 * child can free it (it has no thread pool to join). */
static tg_ctx *ctx1(void)
{
    tg_ctx_opts o = tg_ctx_defaults();
    o.n_threads = 1;
    tg_ctx *c = tg_ctx_new_opts(&o);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* Saves version v with no fault and returns the file's bytes. */
static blob save_ref(const writer *w, tg_ctx *c, const char *path, int v, int64_t rows)
{
    tu_assert_status(w->save(c, path, v, rows), TG_OK);
    blob b = {NULL, 0};
    b.bytes = tu_read_file(path, &b.len);
    ck_assert_ptr_nonnull(b.bytes);
    ck_assert(w->holds(c, path, v, rows));
    tu_assert_ok(c);
    tg_ctx_reset(c);
    return b;
}

static void assert_works(tg_ctx *c)
{
    tu_assert_ok(c);
    tg_tensor *x = tg_tensor_from(c, TG_F32, TG_SHAPE(2), (const float[]){1, 2});
    tu_assert_values(tg_add(c, x, x), 0.0, 2.0, 4.0);
}

/* ---------------------------------------------------------------------- */
/* The hooks                                                              */
/* ---------------------------------------------------------------------- */

enum { MAX_CALLS = 4096 };

typedef struct {
    int calls;                /* calls seen so far */
    int fail_at;              /* 1-based call to fail (0: none) */
    int err;                  /* ...with this errno */
    bool every_write_eintr;   /* instead: every write fails with EINTR once */
    bool fired;
    tg__io_call fired_call;
    tg__io_call seq[MAX_CALLS]; /* the calls, in order */
} fault;

static int fault_hook(tg__io_call call, void *ud)
{
    fault *f = ud;
    int k = ++f->calls;
    if (k <= MAX_CALLS) f->seq[k - 1] = call;
    if (f->every_write_eintr && call == TG__IO_WRITE) {
        /* odd calls fail, so each real write is preceded by an EINTR */
        if (k % 2 == 1) {
            f->fired = true;
            return EINTR;
        }
        return 0;
    }
    if (k == f->fail_at) {
        f->fired = true;
        f->fired_call = call;
        return f->err;
    }
    return 0;
}

static int kill_at; /* the child kills itself at this call (1-based) */
static int kill_calls;

static int kill_hook(tg__io_call call, void *ud)
{
    (void)call;
    (void)ud;
    if (++kill_calls == kill_at) raise(SIGKILL);
    return 0;
}

/* The sequence of system calls a save of version v makes. */
static int record_calls(const writer *w, tg_ctx *c, const char *path, int v, int64_t rows,
                        fault *f)
{
    memset(f, 0, sizeof *f);
    tg__io_set_hook(fault_hook, f);
    tg_status st = w->save(c, path, v, rows);
    tg__io_set_hook(NULL, NULL);
    tu_assert_status(st, TG_OK);
    tg_ctx_reset(c);
    ck_assert(f->calls > 0 && f->calls <= MAX_CALLS);
    return f->calls;
}

static const char *call_name(tg__io_call c)
{
    static const char *const names[] = {"open", "write", "fsync", "close", "rename", "sync_dir"};
    return (unsigned)c < 6 ? names[c] : "?";
}

/* ---------------------------------------------------------------------- */
/* (a) A fault at every system call                                       */
/* ---------------------------------------------------------------------- */

START_TEST(test_fault_every_call)
{
    const writer *w = &writers[_i / 2];
    bool had_old = _i % 2 == 0; /* with a previous file, or none */
    scratch s;
    scratch_new(&s, w->file);
    tg_ctx *c = ctx1();
    enum { ROWS = 50 };
    blob newer = save_ref(w, c, s.path, 2, ROWS);
    blob old = {NULL, 0};
    if (had_old) old = save_ref(w, c, s.path, 1, ROWS);
    else unlink(s.path);

    static const int errs[] = {ENOSPC, EIO, EDQUOT, EACCES};
    bool seen[TG__IO_SYNC_DIR + 1] = {false};
    int k;
    for (k = 1;; k++) {
        int err = errs[k % 4];
        fault *f = calloc(1, sizeof *f);
        ck_assert_ptr_nonnull(f);
        f->fail_at = k;
        f->err = err;
        tg__io_set_hook(fault_hook, f);
        tg_status st = w->save(c, s.path, 2, ROWS);
        tg__io_set_hook(NULL, NULL);
        bool fired = f->fired;
        tg__io_call call = f->fired_call;
        free(f);
        if (fired) seen[call] = true;

        if (!fired || call == TG__IO_SYNC_DIR) {
            /* past the end of the save, or the best-effort directory sync
             * after the rename: the new file is in place */
            tu_assert_status(st, TG_OK);
            assert_file_is(s.path, &newer, "after a save that succeeded");
            ck_assert(w->holds(c, s.path, 2, ROWS));
            tu_assert_ok(c);
            ck_assert_int_eq(for_each_other(&s, NULL, NULL), 0);
            if (!fired) break;
            /* back to the old file for the next k */
            tg_ctx_reset(c);
            if (had_old) ck_assert_int_eq(w->save(c, s.path, 1, ROWS), TG_OK);
            else unlink(s.path);
            tg_ctx_reset(c);
            continue;
        }
        char why[96];
        snprintf(why, sizeof why, "%s failing at call %d (%s)", w->fn, k, call_name(call));
        ck_assert_msg(st == TG_ERR_IO, "%s: returned %s", why, tg_status_str(st));
        tu_assert_status(tg_ctx_status(c), TG_ERR_IO);
        const char *msg = tg_ctx_errmsg(c);
        ck_assert_msg(strstr(msg, w->fn) && strstr(msg, s.path) && strstr(msg, strerror(err)),
                      "%s: message \"%s\" lacks %s, the path or \"%s\"", why, msg, w->fn,
                      strerror(err));
        /* the previous file is untouched (or still absent), nothing left */
        assert_file_is(s.path, &old, why);
        ck_assert_msg(for_each_other(&s, NULL, NULL) == 0, "%s: a temporary file is left", why);
        tg_ctx_clear_error(c);
        assert_works(c);
        if (had_old) ck_assert_msg(w->holds(c, s.path, 1, ROWS), "%s: the old file does not load", why);
        tu_assert_ok(c);
        tg_ctx_reset(c);
    }
    /* every kind of call was failed once */
    for (int i = 0; i <= TG__IO_SYNC_DIR; i++)
        ck_assert_msg(seen[i], "%s: no %s call was failed", w->fn, call_name((tg__io_call)i));
    ck_assert_msg(k >= 8, "%s: only %d calls", w->fn, k - 1);

    free(newer.bytes);
    free(old.bytes);
    tg_ctx_free(c);
    scratch_free(&s);
}
END_TEST

START_TEST(test_eintr_retried)
{
    const writer *w = &writers[_i];
    scratch s;
    scratch_new(&s, w->file);
    tg_ctx *c = ctx1();
    blob want = save_ref(w, c, s.path, 3, 50);
    blob old = save_ref(w, c, s.path, 1, 50);
    free(old.bytes);
    fault *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    f->every_write_eintr = true;
    tg__io_set_hook(fault_hook, f);
    tg_status st = w->save(c, s.path, 3, 50);
    tg__io_set_hook(NULL, NULL);
    ck_assert(f->fired);
    free(f);
    tu_assert_status(st, TG_OK);
    assert_file_is(s.path, &want, "after EINTR on every write");
    ck_assert_int_eq(for_each_other(&s, NULL, NULL), 0);
    free(want.bytes);
    tg_ctx_free(c);
    scratch_free(&s);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* (b) Killed while saving                                                */
/* ---------------------------------------------------------------------- */

/* In a forked child: save version v in a fresh context, optionally with
 * the kill hook, and _exit with 0 on success. Never returns. */
static void child_save(const writer *w, const char *path, int v, int64_t rows, int at)
{
    tg_ctx *c = ctx1();
    if (at > 0) {
        kill_at = at;
        kill_calls = 0;
        tg__io_set_hook(kill_hook, NULL);
    }
    tg_status st = w->save(c, path, v, rows);
    tg__io_set_hook(NULL, NULL);
    tg_ctx_free(c);
    _exit(st == TG_OK ? 0 : 1);
}

typedef struct {
    const writer *w;
    const blob *newer;
    tg_ctx *c;
    int complete, refused;
} leftover_check;

/* A temporary file left by a kill: either the complete new file (killed
 * after its last write) or refused by the loader. */
static void check_leftover(const char *p, void *ud)
{
    leftover_check *lc = ud;
    size_t len = 0;
    unsigned char *b = tu_read_file(p, &len);
    ck_assert_ptr_nonnull(b);
    if (len == lc->newer->len && memcmp(b, lc->newer->bytes, len) == 0) {
        lc->complete++;
    } else {
        ck_assert_msg(len < lc->newer->len, "%s: %zu bytes, more than the file", p, len);
        tg_status st = lc->w->parse(lc->c, b, len);
        ck_assert_msg(st == TG_ERR_FORMAT, "%s: a partial file (%zu of %zu bytes) gave %s", p,
                      len, lc->newer->len, tg_status_str(st));
        tg_ctx_clear_error(lc->c);
        lc->refused++;
    }
    tg_ctx_reset(lc->c);
    free(b);
    unlink(p);
}

START_TEST(test_kill_at_every_call)
{
    const writer *w = &writers[_i];
    if (_i > 0 && tu_under_valgrind()) return; /* forks under valgrind are slow: one writer */
    scratch s;
    scratch_new(&s, w->file);
    tg_ctx *c = ctx1();
    enum { ROWS = 50 };
    blob newer = save_ref(w, c, s.path, 2, ROWS);
    blob old = save_ref(w, c, s.path, 1, ROWS);
    fault *f = calloc(1, sizeof *f);
    ck_assert_ptr_nonnull(f);
    int n = record_calls(w, c, s.path, 2, ROWS, f);
    int rename_at = 0;
    for (int i = 0; i < n; i++)
        if (f->seq[i] == TG__IO_RENAME) rename_at = i + 1;
    ck_assert_int_gt(rename_at, 0);
    ck_assert_int_eq(w->save(c, s.path, 1, ROWS), TG_OK);
    tg_ctx_reset(c);

    leftover_check lc = {w, &newer, c, 0, 0};
    for (int k = 1; k <= n + 1; k++) {
        fflush(NULL);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) child_save(w, s.path, 2, ROWS, k);
        int status = 0;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        char why[96];
        snprintf(why, sizeof why, "%s killed at call %d of %d (%s)", w->fn, k, n,
                 k <= n ? call_name(f->seq[k - 1]) : "none");
        if (k <= n)
            ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "%s: not killed",
                          why);
        else
            ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: save failed", why);
        /* killed before the rename ran: the old file; after: the new one */
        assert_file_is(s.path, k <= rename_at ? &old : &newer, why);
        ck_assert(w->holds(c, s.path, k <= rename_at ? 1 : 2, ROWS));
        tu_assert_ok(c);
        tg_ctx_reset(c);
        for_each_other(&s, check_leftover, &lc);
        if (k > rename_at) {
            ck_assert_int_eq(w->save(c, s.path, 1, ROWS), TG_OK);
            tg_ctx_reset(c);
        }
    }
    /* kills after the open and before the rename leave a temporary file:
     * partial ones (during the writes) and complete ones (at fsync, close
     * and rename) */
    ck_assert_int_gt(lc.refused, 0);
    ck_assert_int_gt(lc.complete, 0);
    free(f);
    free(newer.bytes);
    free(old.bytes);
    tg_ctx_free(c);
    scratch_free(&s);
}
END_TEST

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A large save killed by the parent at moments spread over its duration
 * (and somewhat past it). Whatever the moment, the target is the complete
 * old or the complete new file. */
START_TEST(test_kill_at_random_moments)
{
    const writer *w = &writers[0];
    bool vg = tu_under_valgrind();
    int64_t rows = vg ? 2048 : 32768; /* 0.5 MiB or 8 MiB of weights */
    int kills = vg ? 4 : 24;
    scratch s;
    scratch_new(&s, w->file);
    tg_ctx *c = ctx1();
    blob newer = save_ref(w, c, s.path, 2, rows);
    blob old = save_ref(w, c, s.path, 1, rows);

    /* how long one save takes in a child, start to exit */
    double t0 = now_s();
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) child_save(w, s.path, 1, rows, 0);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    double span = now_s() - t0;

    leftover_check lc = {w, &newer, c, 0, 0};
    int saw_old = 0, saw_new = 0;
    for (int i = 0; i < kills; i++) {
        /* delays from 0 to 1.2 times the measured span */
        double d = span * 1.2 * (double)i / (double)(kills - 1);
        fflush(NULL);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) child_save(w, s.path, 2, rows, 0);
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        size_t len = 0;
        unsigned char *b = tu_read_file(s.path, &len);
        ck_assert_ptr_nonnull(b);
        bool is_old = len == old.len && memcmp(b, old.bytes, len) == 0;
        bool is_new = len == newer.len && memcmp(b, newer.bytes, len) == 0;
        free(b);
        ck_assert_msg(is_old || is_new, "kill %d after %.4f s: the file is neither version", i, d);
        ck_assert(w->holds(c, s.path, is_old ? 1 : 2, rows));
        tu_assert_ok(c);
        tg_ctx_reset(c);
        for_each_other(&s, check_leftover, &lc);
        if (is_new) {
            saw_new++;
            ck_assert_int_eq(w->save(c, s.path, 1, rows), TG_OK);
            tg_ctx_reset(c);
        } else {
            saw_old++;
        }
    }
    /* which outcomes the timing produced is not asserted; print it for the log */
    if (getenv("CK_VERBOSITY") && strcmp(getenv("CK_VERBOSITY"), "verbose") == 0)
        printf("crashsafe: %d kills over %.3f s: %d old, %d new; leftovers %d complete, %d "
               "refused\n",
               kills, span, saw_old, saw_new, lc.complete, lc.refused);
    free(newer.bytes);
    free(old.bytes);
    tg_ctx_free(c);
    scratch_free(&s);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Every proper prefix of a saved file is refused                          */
/* ---------------------------------------------------------------------- */

START_TEST(test_every_prefix_refused)
{
    const writer *w = &writers[_i];
    scratch s;
    scratch_new(&s, w->file);
    tg_ctx *c = ctx1();
    blob b = save_ref(w, c, s.path, 1, 3);
    /* under valgrind a stride keeps it short; the header bytes always all */
    size_t step = tu_under_valgrind() ? 61 : 1;
    for (size_t len = 0; len < b.len; len += (len < 256 ? 1 : step)) {
        tg_status st = w->parse(c, b.bytes, len);
        ck_assert_msg(st == TG_ERR_FORMAT, "%s: a %zu-byte prefix of %zu gave %s", w->fn, len,
                      b.len, tg_status_str(st));
        ck_assert(strlen(tg_ctx_errmsg(c)) > 0);
        tg_ctx_clear_error(c);
        tg_ctx_reset(c);
    }
    tu_assert_status(w->parse(c, b.bytes, b.len), TG_OK);
    free(b.bytes);
    tg_ctx_free(c);
    scratch_free(&s);
}
END_TEST


/* ---------------------------------------------------------------------- */
/* Allocation failure across checkpoint save and load                      */
/* ---------------------------------------------------------------------- */

START_TEST(test_checkpoint_alloc_failure)
{
    bool load = _i == 1;
    const char *fn = load ? "tg_checkpoint_load" : "tg_checkpoint_save";
    enum { ROWS = 600 }; /* ~0.5 MB of state: the scratch arena grows several times */
    scratch s;
    scratch_new(&s, "run.ckpt");
    tg_ctx *plain = ctx1();
    blob disk = save_ref(&writers[2], plain, s.path, 1, ROWS); /* version 1 on disk */
    tu_alloc h = {0};
    tg_ctx *c = tu_alloc_ctx(&h, 0);
    ck_assert_ptr_nonnull(c);
    run_objs r;
    ck_assert_msg(make_run(c, 2, ROWS, &r), "%s", tg_ctx_errmsg(c));
    size_t before_len, now_len;
    unsigned char *before = run_bytes(&r, &before_len);

    int k, failed = 0;
    for (k = 1;; k++) {
        size_t live = h.live;
        long blocks = h.live_blocks;
        h.allocs = 0;
        h.fail_at = k;
        h.failed = false;
        tg_status st = load ? tg_checkpoint_load(c, s.path, &r.ck)
                            : tg_checkpoint_save(c, s.path, &r.ck);
        h.fail_at = 0;
        if (!h.failed) {
            tu_assert_status(st, TG_OK);
            break;
        }
        if (st == TG_OK) {
            /* an allocation with a fallback (the library went on without
             * it): the call must then have done its whole job */
            if (load) {
                run_objs want;
                ck_assert(make_run(plain, 1, ROWS, &want));
                size_t wl;
                unsigned char *wb = run_bytes(&want, &wl), *now = run_bytes(&r, &now_len);
                ck_assert_msg(wl == now_len && memcmp(wb, now, wl) == 0,
                              "allocation %d failed, load said ok, state is not the file's", k);
                free(wb);
                free(now);
                tg_ctx_reset(plain);
                ck_assert(make_run(c, 2, ROWS, &r)); /* back to version 2 */
                free(before);
                before = run_bytes(&r, &before_len);
            } else {
                ck_assert_msg(ck_holds(plain, s.path, 2, ROWS),
                              "allocation %d failed, save said ok, the file is not complete", k);
                tg_ctx_reset(plain);
                ck_assert_int_eq(ck_save(plain, s.path, 1, ROWS), TG_OK);
                tg_ctx_reset(plain);
            }
            continue;
        }
        failed++;
        char why[64];
        snprintf(why, sizeof why, "%s failing allocation %d", fn, k);
        ck_assert_msg(st == TG_ERR_NOMEM, "%s: returned %s", why, tg_status_str(st));
        tu_assert_status(tg_ctx_status(c), TG_ERR_NOMEM);
        ck_assert_msg(strncmp(tg_ctx_errmsg(c), fn, strlen(fn)) == 0 &&
                          strstr(tg_ctx_errmsg(c), "out of memory"),
                      "%s: message \"%s\"", why, tg_ctx_errmsg(c));
        /* everything the call took was given back */
        ck_assert_msg(h.live == live && h.live_blocks == blocks,
                      "%s: %zu bytes in %ld blocks before, %zu in %ld after", why, live, blocks,
                      h.live, h.live_blocks);
        /* model, optimizer, batcher and RNG as they were; the file too */
        tg_ctx_clear_error(c);
        unsigned char *now = run_bytes(&r, &now_len);
        ck_assert_msg(now_len == before_len && memcmp(now, before, now_len) == 0,
                      "%s: the run's state changed", why);
        free(now);
        assert_file_is(s.path, &disk, why);
        ck_assert_msg(for_each_other(&s, NULL, NULL) == 0, "%s: a temporary file is left", why);
    }
    ck_assert_msg(failed >= 1 && k > 2, "%s: %d allocations, %d failing", fn, k - 1, failed);
    if (getenv("CK_VERBOSITY") && strcmp(getenv("CK_VERBOSITY"), "verbose") == 0)
        printf("crashsafe: %s makes %d allocations; failing one of them fails the call %d times\n",
               fn, k - 1, failed);
    /* the call that went through did its job */
    if (load) {
        run_objs want;
        ck_assert(make_run(plain, 1, ROWS, &want));
        size_t wl;
        unsigned char *wb = run_bytes(&want, &wl), *now = run_bytes(&r, &now_len);
        ck_assert(wl == now_len && memcmp(wb, now, wl) == 0);
        free(wb);
        free(now);
    } else {
        tg_ctx_reset(plain);
        ck_assert(ck_holds(plain, s.path, 2, ROWS));
    }
    free(before);
    free(disk.bytes);
    tg_ctx_free(c);
    tu_alloc_assert_no_leak(&h);
    tg_ctx_free(plain);
    scratch_free(&s);
}
END_TEST

Suite *crashsafe_suite(void)
{
    Suite *s = suite_create("crashsafe");
    TCase *tc = tu_tcase("faults");
    tcase_add_loop_test(tc, test_fault_every_call, 0, 2 * N_WRITERS);
    tcase_add_loop_test(tc, test_eintr_retried, 0, N_WRITERS);
    tcase_add_loop_test(tc, test_every_prefix_refused, 0, N_WRITERS);
    tcase_add_loop_test(tc, test_checkpoint_alloc_failure, 0, 2);
    suite_add_tcase(s, tc);
    tc = tu_tcase("kills");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_kill_at_every_call, 0, N_WRITERS);
    tcase_add_test(tc, test_kill_at_random_moments);
    suite_add_tcase(s, tc);
    return s;
}
