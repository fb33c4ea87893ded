/*
 * file.c - atomic file writes and whole-file reads (see io_impl.h).
 *
 * An atomic write goes to "<path>.tmp.<pid>.<random>" in the target's directory,
 * then fflush + fsync + rename + fsync of the directory: a reader sees the
 * old file or the new one, never a partial one, even across a crash.
 */
#include "io_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

tg_status tg__afile_open(tg__afile *a, tg_ctx *c, const char *fn, const char *path)
{
    memset(a, 0, sizeof *a);
    a->c = c;
    a->fn = fn;
    a->path = path;
    /* A fresh name next to the target, created with O_EXCL and mode 0666
     * so the umask applies (mkstemp would make every checkpoint 0600). */
    size_t n = strlen(path) + 48;
    a->tmp = tg__heap_alloc(c, n);
    if (!a->tmp) return tg__fail(c, TG_ERR_NOMEM, "%s: out of memory", fn);
    a->tmp_size = n;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t salt = (uint64_t)(uintptr_t)a ^ ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec;
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 100; tries++) {
        salt = salt * 6364136223846793005ull + 1442695040888963407ull;
        snprintf(a->tmp, n, "%s.tmp.%ld.%08llx", path, (long)getpid(),
                 (unsigned long long)(salt >> 32));
        fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        tg_status st = tg__fail(c, TG_ERR_IO, "%s: cannot create a temporary file for %s: %s",
                                fn, path, strerror(errno));
        tg__heap_free(c, a->tmp, a->tmp_size);
        a->tmp = NULL;
        return st;
    }
    a->f = fdopen(fd, "wb");
    if (!a->f) {
        tg_status st = tg__fail(c, TG_ERR_IO, "%s: %s: %s", fn, a->tmp, strerror(errno));
        close(fd);
        unlink(a->tmp);
        tg__heap_free(c, a->tmp, a->tmp_size);
        a->tmp = NULL;
        return st;
    }
    return TG_OK;
}

tg_status tg__afile_write(tg__afile *a, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, a->f) != n)
        return tg__fail(a->c, TG_ERR_IO, "%s: writing %s: %s", a->fn, a->path, strerror(errno));
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
    a->f = NULL;
}

void tg__afile_abort(tg__afile *a)
{
    if (!a->tmp) return;
    if (a->f) fclose(a->f);
    unlink(a->tmp);
    finish(a);
}

/* fsync of the directory holding path, so the rename itself is durable. */
static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        fsync(fd); /* best effort: some file systems refuse directory syncs */
        close(fd);
    }
}

tg_status tg__afile_commit(tg__afile *a)
{
    tg_ctx *c = a->c;
    const char *what = NULL;
    if (fflush(a->f) != 0) what = "flush";
    else if (fsync(fileno(a->f)) != 0) what = "fsync";
    int err = errno;
    if (fclose(a->f) != 0 && !what) what = "close", err = errno;
    a->f = NULL;
    if (!what && rename(a->tmp, a->path) != 0) what = "rename", err = errno;
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
