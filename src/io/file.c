/*
 * file.c - atomic file writes and whole-file reads (see io_impl.h).
 *
 * An atomic write goes to "<path>.tmp.<pid>.<random>" in the target's
 * directory through a plain file descriptor, then fsync + close + rename +
 * fsync of the directory: a reader sees the old file or the new one, never
 * a partial one, even across a crash. Any failure before the rename
 * removes the temporary file and leaves the target as it was. A process
 * killed mid-save can leave its temporary file behind (nothing runs to
 * remove it); the target is still whole.
 *
 * Every system call of a write goes through io_fault() first, the
 * test-only hook of tests/test_crashsafe.c.
 */
#include "io_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- fault injection (tests only) --------------------------------------- */

static _Thread_local tg__io_hook_fn io_hook;
static _Thread_local void *io_hook_ud;

void tg__io_set_hook(tg__io_hook_fn fn, void *ud)
{
    io_hook = fn;
    io_hook_ud = ud;
}

/* 0 to make the call; otherwise the errno it fails with. */
static int io_fault(tg__io_call call)
{
    return io_hook ? io_hook(call, io_hook_ud) : 0;
}

/* ---- atomic writes ------------------------------------------------------ */

tg_status tg__afile_open(tg__afile *a, tg_ctx *c, const char *fn, const char *path)
{
    memset(a, 0, sizeof *a);
    a->c = c;
    a->fn = fn;
    a->path = path;
    a->fd = -1;
    /* A fresh name next to the target, created with O_EXCL and mode 0666
     * so the umask applies (mkstemp would make every checkpoint 0600). */
    size_t n = strlen(path) + 48;
    a->tmp = tg__heap_alloc(c, n);
    if (!a->tmp) return tg__fail(c, TG_ERR_NOMEM, "%s: out of memory", fn);
    a->tmp_size = n;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t salt = (uint64_t)(uintptr_t)a ^ ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec;
    int fd = -1, err = 0;
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        salt = salt * 6364136223846793005ull + 1442695040888963407ull;
        snprintf(a->tmp, n, "%s.tmp.%ld.%08llx", path, (long)getpid(),
                 (unsigned long long)(salt >> 32));
        if ((err = io_fault(TG__IO_OPEN)) != 0) break;
        fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        err = fd < 0 ? errno : 0;
        if (fd < 0 && err != EEXIST) break;
    }
    if (fd < 0) {
        tg_status st = tg__fail(c, TG_ERR_IO, "%s: cannot create a temporary file for %s: %s",
                                fn, path, strerror(err));
        tg__heap_free(c, a->tmp, a->tmp_size);
        a->tmp = NULL;
        return st;
    }
    a->fd = fd;
    return TG_OK;
}

tg_status tg__afile_write(tg__afile *a, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        /* Linux writes at most 0x7ffff000 bytes per call */
        size_t chunk = n < ((size_t)1 << 30) ? n : (size_t)1 << 30;
        int err = io_fault(TG__IO_WRITE);
        ssize_t w = -1;
        if (!err) {
            w = write(a->fd, s, chunk);
            err = w < 0 ? errno : w == 0 ? ENOSPC : 0;
        }
        if (err == EINTR) continue;
        if (err)
            return tg__fail(a->c, TG_ERR_IO, "%s: writing %s: %s", a->fn, a->path, strerror(err));
        s += w;
        n -= (size_t)w;
    }
    return TG_OK;
}

tg_status tg__afile_write_tensor(tg__afile *a, const tg_tensor *t)
{
    size_t es = tg__esize(t->dtype);
    int64_t n = tg__numel(t->ndim, t->shape);
    if (tg_is_contiguous(t)) return tg__afile_write(a, tg__ptr(t), (size_t)n * es);
    /* strided: gather into a bounded buffer, in row-major order */
    enum { CHUNK = 8192 };
    char buf[CHUNK * 8];
    int64_t i = 0;
    while (i < n) {
        int64_t k = n - i < CHUNK ? n - i : CHUNK;
        for (int64_t j = 0; j < k; j++)
            memcpy(buf + j * (int64_t)es, tg__ptr(t) + tg__flat_offset(t, i + j), es);
        if (tg__afile_write(a, buf, (size_t)k * es)) return a->c->status;
        i += k;
    }
    return TG_OK;
}

static void finish(tg__afile *a)
{
    tg__heap_free(a->c, a->tmp, a->tmp_size);
    a->tmp = NULL;
    a->fd = -1;
}

void tg__afile_abort(tg__afile *a)
{
    if (!a->tmp) return;
    if (a->fd >= 0) close(a->fd);
    unlink(a->tmp);
    finish(a);
}

/* fsync of the directory holding path, so the rename itself is durable.
 * Best effort: the new file is already in place, and some file systems
 * refuse directory syncs. */
static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (io_fault(TG__IO_SYNC_DIR) != 0) return;
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

tg_status tg__afile_commit(tg__afile *a)
{
    tg_ctx *c = a->c;
    const char *what = NULL;
    int err = io_fault(TG__IO_FSYNC);
    if (err || fsync(a->fd) != 0) what = "fsync", err = err ? err : errno;
    /* close even after a failed fsync; its own error counts too (NFS
     * reports write errors there) */
    int cerr = io_fault(TG__IO_CLOSE);
    if (cerr) close(a->fd);
    else if (close(a->fd) != 0) cerr = errno;
    a->fd = -1;
    if (cerr && !what) what = "close", err = cerr;
    if (!what) {
        err = io_fault(TG__IO_RENAME);
        if (err || rename(a->tmp, a->path) != 0) what = "rename", err = err ? err : errno;
    }
    if (what) {
        unlink(a->tmp);
        finish(a);
        return tg__fail(c, TG_ERR_IO, "%s: %s of %s failed: %s", a->fn, what, a->path,
                        strerror(err));
    }
    sync_dir(a->path);
    finish(a);
    return TG_OK;
}

char *tg__read_file(tg_ctx *c, const char *fn, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        tg__fail(c, TG_ERR_IO, "%s: cannot open %s: %s", fn, path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    long size = -1;
    struct stat sb;
    /* fopen opens a directory for reading, and ftell then says LONG_MAX */
    if (fstat(fileno(f), &sb) == 0 && !S_ISREG(sb.st_mode)) {
        tg__fail(c, TG_ERR_IO, "%s: %s is not a regular file", fn, path);
        fclose(f);
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        tg__fail(c, TG_ERR_IO, "%s: cannot size %s: %s", fn, path, strerror(errno));
    } else if (!(buf = tg__heap_alloc(c, (size_t)size + 1))) {
        tg__fail(c, TG_ERR_NOMEM, "%s: out of memory reading %s (%ld bytes)", fn, path, size);
    } else if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        tg__fail(c, TG_ERR_IO, "%s: cannot read %s: %s", fn, path,
                 ferror(f) ? strerror(errno) : "file changed while reading");
        tg__heap_free(c, buf, (size_t)size + 1);
        buf = NULL;
    } else {
        buf[size] = '\0';
        *len = (size_t)size;
    }
    fclose(f);
    return buf;
}
