/*
 * threads.c - the per-context thread pool behind tg__parallel_for.
 *
 * Each context owns at most one pool of n_threads - 1 pthread workers; the
 * thread that calls tg__parallel_for runs the first range itself. The pool
 * is created lazily, the first time a loop is big enough to split, with its
 * memory from the context's allocator hook. If it cannot be created (no
 * memory, no threads) loops simply run serially: threading is never an
 * error.
 *
 * Hand-off: the caller publishes a job under the mutex and bumps a
 * generation counter. Workers poll that counter for a while (spin_ns, see
 * TG__SPIN_NS), then sleep on a condition variable until it moves (a
 * worker remembers the last generation it saw, so a bump that lands before
 * it sleeps is never lost). The caller runs range 0; every other range is
 * claimed, by whichever thread gets there first, from a counter tagged with
 * the job's generation (so a worker that wakes after its job is over
 * claims nothing of the next one): a worker that is late, or not running,
 * leaves its range to the caller instead of making it wait. Each range run
 * decrements a pending count (a worker's under the mutex); the caller polls
 * it for a while, then sleeps on a second condition variable, and always
 * confirms completion under the mutex. The counters are atomic only so the
 * spins and claims may use them unlocked: every hand-off of data goes
 * through the mutex, which keeps TSan, helgrind and DRD able to see it.
 *
 * The split depends only on n, grain and the pool size, and kernels keep
 * their results independent of it and of which thread runs a range (see
 * core_impl.h). A pool inherited through fork() has no threads in the
 * child; it is detected by pid and replaced there.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* pthread_attr_setaffinity_np, sched_getcpu */
#endif
#include "core_impl.h"

#include <errno.h>
#include <pthread.h>
#ifdef __linux__
#include <sched.h>
#endif
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TG__MAX_THREADS 256 /* cap on the automatic thread count */
/* How long a waiting thread polls before it sleeps. A sleep costs a
 * futex wait and, to end it, a futex wake: tens of microseconds on a
 * virtual machine, where the LSTM's 2-thread step (a few parallel loops per
 * time step, short serial stretches between them) spent 18% of its time
 * in the scheduler with 2,000 polls (about a microsecond) and took 31 ms
 * against 20.5 ms with waits that outlast those stretches. A thread that
 * waits longer than this sleeps, so an idle pool costs nothing. A pool with
 * more threads (the caller's included) than online CPUs polls only
 * TG__SPIN_NS_OVER: there a polling thread may hold the CPU the thread it
 * waits for needs. */
#define TG__SPIN_NS 100000
#define TG__SPIN_NS_OVER 1000

struct tg__pool {
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* workers: the generation moved or shutdown */
    pthread_cond_t done_cv; /* caller: pending reached zero */

    /* The current job; written by the caller and read by workers, both
     * under mu. */
    tg__range_fn fn;
    void *arg;
    int64_t n;
    int nchunks;  /* ranges of this job; worker i runs range i if i < nchunks */
    bool shutdown;
    int sleeping; /* workers blocked on work_cv (under mu) */
    bool caller_waiting; /* the caller is blocked on done_cv (under mu) */

    int64_t spin_ns;      /* how long a waiting thread polls (TG__SPIN_NS...) */
    _Atomic uint64_t gen; /* bumped once per job, under mu */
    _Atomic uint64_t claim; /* the job's generation (low 32 bits) << 32 | the
                               next range to claim; set under mu with gen */
    _Atomic int pending;  /* ranges 1.. of the current job not yet done */

    bool busy;           /* a job is running (the caller's thread only) */
    pid_t owner;         /* the process whose threads these are */
    size_t bytes;        /* size of this allocation, for tg__heap_free */
    int nworkers;        /* threads actually started */
    struct tg__worker *workers; /* nworkers entries, inside this allocation */
};

typedef struct tg__worker {
    struct tg__pool *pool;
    pthread_t tid;
#ifdef __linux__
    bool moved;       /* started away from its creator's CPU (see start_away) */
    cpu_set_t mask;   /* ...and the CPUs it inherited, restored once running */
#endif
} tg__worker;

/* ---- splitting ------------------------------------------------------ */

/* Range i of [0, n) cut into nchunks nearly equal contiguous parts (the
 * first n % nchunks parts get one extra item). No overflow for any n. */
static void chunk_range(int64_t n, int nchunks, int i, int64_t *begin, int64_t *end)
{
    int64_t base = n / nchunks, rem = n % nchunks;
    *begin = (int64_t)i * base + (i < rem ? i : rem);
    *end = *begin + base + (i < rem ? 1 : 0);
}

/* ---- waiting -------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Tells the core this is a spin loop (less power, no memory-order
 * mis-speculation when the polled line changes). */
static inline void cpu_relax(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_ia32_pause();
#elif defined(__GNUC__) && defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Polls until gen differs from seen (want_gen) or pending is zero (the
 * other), for at most pool->spin_ns; true when it happened. The clock is read
 * every 64 polls. Only saves a sleep: callers confirm under mu. */
static bool spin_wait(struct tg__pool *pool, bool want_gen, uint64_t seen)
{
    const int64_t start = now_ns();
    for (unsigned i = 1;; i++) {
        if (want_gen ? atomic_load_explicit(&pool->gen, memory_order_acquire) != seen
                     : atomic_load_explicit(&pool->pending, memory_order_relaxed) == 0)
            return true;
        cpu_relax();
        if (i % 64 == 0 && now_ns() - start > pool->spin_ns) return false;
    }
}

/* The claim word of generation g with range i next. */
static uint64_t claim_word(uint64_t g, uint64_t i)
{
    return (g & UINT64_C(0xffffffff)) << 32 | i;
}

/* The next unclaimed range of the job of generation g (nchunks ranges),
 * now this thread's; -1 when none is left or the job is no longer g. */
static int claim_range(struct tg__pool *pool, uint64_t g, int nchunks)
{
    uint64_t v = atomic_load_explicit(&pool->claim, memory_order_relaxed);
    for (;;) {
        if (v >> 32 != (g & UINT64_C(0xffffffff)) || (v & 0xffffffffu) >= (uint64_t)nchunks)
            return -1;
        if (atomic_compare_exchange_weak_explicit(&pool->claim, &v, v + 1,
                                                  memory_order_relaxed, memory_order_relaxed))
            return (int)(v & 0xffffffffu);
    }
}

/* ---- workers -------------------------------------------------------- */

static void *worker_main(void *p)
{
    tg__worker *w = p;
    struct tg__pool *pool = w->pool;
    uint64_t seen = 0; /* the pool starts at generation 0 */
#ifdef __linux__
    if (w->moved) (void)pthread_setaffinity_np(pthread_self(), sizeof w->mask, &w->mask);
#endif

    for (;;) {
        /* back-to-back jobs then cost no syscalls */
        (void)spin_wait(pool, true, seen);

        pthread_mutex_lock(&pool->mu);
        while (atomic_load_explicit(&pool->gen, memory_order_relaxed) == seen &&
               !pool->shutdown) {
            pool->sleeping++;
            pthread_cond_wait(&pool->work_cv, &pool->mu);
            pool->sleeping--;
        }
        if (pool->shutdown) {
            pthread_mutex_unlock(&pool->mu);
            return NULL;
        }
        seen = atomic_load_explicit(&pool->gen, memory_order_relaxed);
        tg__range_fn fn = pool->fn;
        void *arg = pool->arg;
        int64_t n = pool->n;
        int nchunks = pool->nchunks;
        pthread_mutex_unlock(&pool->mu);

        /* Ranges until none is left: a job with fewer ranges than threads
         * leaves some idle, and a range claimed by no worker is the
         * caller's; only ranges run count in pending. */
        for (int i; (i = claim_range(pool, seen, nchunks)) >= 0;) {
            int64_t begin, end;
            chunk_range(n, nchunks, i, &begin, &end);
            fn(arg, begin, end);

            /* Under mu, so that the caller's final lock of mu orders every
             * worker's writes before its return (which valgrind's race
             * checkers can see, unlike a lock-free count), and so that the
             * signal cannot fall between the caller's check of pending and
             * its wait. */
            pthread_mutex_lock(&pool->mu);
            if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_relaxed) == 1 &&
                pool->caller_waiting) {
                pthread_cond_signal(&pool->done_cv);
            }
            pthread_mutex_unlock(&pool->mu);
        }
    }
}

/* ---- pool lifetime -------------------------------------------------- */

/* Joins every started worker and frees the pool. In a child of fork() the
 * workers do not exist (and mu may be held by one that vanished), so only
 * the memory is released. */
static void pool_destroy(tg_ctx *c, struct tg__pool *pool)
{
    if (pool->owner != getpid()) {
        tg__heap_free(c, pool, pool->bytes);
        return;
    }
    pthread_mutex_lock(&pool->mu);
    pool->shutdown = true;
    pthread_cond_broadcast(&pool->work_cv);
    pthread_mutex_unlock(&pool->mu);

    for (int i = 0; i < pool->nworkers; i++) pthread_join(pool->workers[i].tid, NULL);

    pthread_cond_destroy(&pool->done_cv);
    pthread_cond_destroy(&pool->work_cv);
    pthread_mutex_destroy(&pool->mu);
    tg__heap_free(c, pool, pool->bytes);
}

#ifdef __linux__
/* Attributes that start a worker on any CPU the creating thread may use but
 * the one it runs on, with w->mask the CPUs to give the worker back once it
 * runs (its whole inherited set). A new thread otherwise starts on its
 * creator's CPU, and on some hosts (a Firecracker VM with 2 vCPUs here) the
 * scheduler left it there for 80-90 ms, so the first parallel loops ran
 * one range after the other on one CPU. Only the worker's own affinity is
 * touched, and only until it starts. False (plain attributes) when there is
 * no other CPU or a call fails. */
static bool start_away(pthread_attr_t *attr, tg__worker *w)
{
    cpu_set_t away;
    int cpu = sched_getcpu();
    if (cpu < 0 || cpu >= CPU_SETSIZE ||
        pthread_getaffinity_np(pthread_self(), sizeof w->mask, &w->mask) != 0)
        return false;
    away = w->mask;
    CPU_CLR(cpu, &away);
    return CPU_COUNT(&away) > 0 && pthread_attr_setaffinity_np(attr, sizeof away, &away) == 0;
}
#endif

/* A pool of up to want workers, or NULL when not even one could start. */
static struct tg__pool *pool_create(tg_ctx *c, int want)
{
    if (want < 1) return NULL;
    size_t head = sizeof(struct tg__pool);
    head = (head + _Alignof(tg__worker) - 1) / _Alignof(tg__worker) * _Alignof(tg__worker);
    if ((size_t)want > (SIZE_MAX - head) / sizeof(tg__worker)) return NULL;
    size_t bytes = head + (size_t)want * sizeof(tg__worker);

    struct tg__pool *pool = tg__heap_alloc(c, bytes);
    if (!pool) return NULL;
    memset(pool, 0, bytes);
    pool->bytes = bytes;
    pool->owner = getpid();
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    pool->spin_ns = ncpu >= 1 && want + 1 > ncpu ? TG__SPIN_NS_OVER : TG__SPIN_NS;
    pool->workers = (tg__worker *)(void *)((char *)pool + head);
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->claim, claim_word(0, 0));
    atomic_init(&pool->pending, 0);

    if (pthread_mutex_init(&pool->mu, NULL) != 0) goto fail_mu;
    if (pthread_cond_init(&pool->work_cv, NULL) != 0) goto fail_work;
    if (pthread_cond_init(&pool->done_cv, NULL) != 0) goto fail_done;

    /* Workers start with asynchronous signals blocked, so signals meant for
     * the application keep going to its own threads. Faults stay open: a
     * crash in a kernel still reaches the sanitizers' and Check's handlers. */
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGABRT);
    int masked = pthread_sigmask(SIG_SETMASK, &all, &old) == 0;
    for (int i = 0; i < want; i++) {
        tg__worker *w = &pool->workers[i];
        w->pool = pool;
        pthread_attr_t attr;
        bool have_attr = pthread_attr_init(&attr) == 0;
#ifdef __linux__
        w->moved = have_attr && start_away(&attr, w);
#endif
        int rc = pthread_create(&w->tid, have_attr ? &attr : NULL, worker_main, w);
        if (have_attr) pthread_attr_destroy(&attr);
#ifdef __linux__
        if (rc != 0 && w->moved) { /* the affinity refused (a sandbox, a cpuset): without */
            w->moved = false;
            rc = pthread_create(&w->tid, NULL, worker_main, w);
        }
#endif
        if (rc != 0) break;
        pool->nworkers++;
    }
    if (masked) pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (pool->nworkers == 0) {
        pthread_cond_destroy(&pool->done_cv);
        goto fail_done;
    }
    return pool;

fail_done:
    pthread_cond_destroy(&pool->work_cv);
fail_work:
    pthread_mutex_destroy(&pool->mu);
fail_mu:
    tg__heap_free(c, pool, bytes);
    return NULL;
}

void tg__pool_free(tg_ctx *c)
{
    if (!c || !c->pool) return;
    pool_destroy(c, c->pool);
    c->pool = NULL;
}

/* ---- parallel_for --------------------------------------------------- */

/* tg__parallel_for's work when it may split (core_impl.h) */
void tg__parallel_split(tg_ctx *c, int64_t n, int64_t grain, tg__range_fn fn, void *arg)
{
    TG_ASSERT(fn != NULL);
    if (n <= 0) return;
    if (grain < 1) grain = 1;

    int threads = c ? c->n_threads : 1;
    int64_t nchunks = n / grain; /* every range gets at least grain items */
    if (nchunks > threads) nchunks = threads;
    if (nchunks < 2) {
        fn(arg, 0, n);
        return;
    }

    /* A nested call (from fn, on any thread) would deadlock the pool: run
     * it serially instead. busy is written only by this thread, before the
     * job is published and after every worker has finished. */
    if (c->pool && c->pool->busy) {
        fn(arg, 0, n);
        return;
    }
    if (c->pool && c->pool->owner != getpid()) tg__pool_free(c); /* forked */
    if (!c->pool) c->pool = pool_create(c, threads - 1);
    struct tg__pool *pool = c->pool;
    if (!pool) {
        fn(arg, 0, n);
        return;
    }
    if (nchunks > pool->nworkers + 1) nchunks = pool->nworkers + 1;

    pool->busy = true;
    pthread_mutex_lock(&pool->mu);
    pool->fn = fn;
    pool->arg = arg;
    pool->n = n;
    pool->nchunks = (int)nchunks;
    atomic_store_explicit(&pool->pending, (int)nchunks - 1, memory_order_relaxed);
    const uint64_t g = atomic_load_explicit(&pool->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&pool->claim, claim_word(g, 1), memory_order_relaxed);
    atomic_store_explicit(&pool->gen, g, memory_order_release);
    if (pool->sleeping > 0) pthread_cond_broadcast(&pool->work_cv);
    pthread_mutex_unlock(&pool->mu);

    int64_t begin, end;
    chunk_range(n, (int)nchunks, 0, &begin, &end);
    fn(arg, begin, end);
    /* then whatever no worker has claimed yet */
    for (int i; (i = claim_range(pool, g, (int)nchunks)) >= 0;) {
        chunk_range(n, (int)nchunks, i, &begin, &end);
        fn(arg, begin, end);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_relaxed);
    }

    /* The spin only saves a sleep; completion is confirmed under mu. */
    (void)spin_wait(pool, false, 0);
    pthread_mutex_lock(&pool->mu);
    while (atomic_load_explicit(&pool->pending, memory_order_relaxed) != 0) {
        pool->caller_waiting = true;
        pthread_cond_wait(&pool->done_cv, &pool->mu);
    }
    pool->caller_waiting = false;
    pthread_mutex_unlock(&pool->mu);
    pool->busy = false;
}

/* ---- thread count --------------------------------------------------- */

int tg__default_threads(void)
{
    const char *env = getenv("TG_NUM_THREADS");
    if (env) {
        char *endp;
        errno = 0;
        long v = strtol(env, &endp, 10);
        while (*endp == ' ' || *endp == '\t' || *endp == '\n') endp++;
        if (endp != env && *endp == '\0' && errno == 0 && v >= 1) {
            return v > TG__MAX_THREADS ? TG__MAX_THREADS : (int)v;
        }
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1) return 1;
    return ncpu > TG__MAX_THREADS ? TG__MAX_THREADS : (int)ncpu;
}

tg_status tg_ctx_set_threads(tg_ctx *c, int n)
{
    if (!c) return TG_ERR_INVALID;
    if (n < 1) return tg__fail(c, TG_ERR_INVALID, "tg_ctx_set_threads: n = %d; need >= 1", n);
    if (c->pool && c->pool->busy) {
        return tg__fail(c, TG_ERR_MISUSE, "tg_ctx_set_threads: called from a running kernel");
    }
    if (n != c->n_threads) {
        tg__pool_free(c); /* recreated, with the new size, on first use */
        c->n_threads = n;
    }
    return TG_OK;
}

int tg_ctx_threads(const tg_ctx *c)
{
    if (!c) return 1;
    return c->n_threads;
}
