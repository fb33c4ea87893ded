/*
 * io_impl.h - file helpers shared by the readers and writers: atomic
 * writes (temporary file, write, fsync, close, rename) and whole-file
 * reads. Library-internal.
 */
#ifndef TG_IO_IMPL_H
#define TG_IO_IMPL_H

#include <stdio.h>

#include "../tensor/tensor_impl.h"
#include "tapegrad/io.h"

/* Files store little-endian data, written and read as the host's bytes. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tapegrad's file formats need a little-endian host"
#endif

typedef struct {
    tg_ctx *c;
    const char *fn;   /* public function, for messages */
    const char *path; /* the target */
    char *tmp;        /* the temporary file's name (heap, through c's hook) */
    size_t tmp_size;
    int fd;           /* the temporary file, -1 once closed */
} tg__afile;

/* Creates a temporary file next to path. TG_ERR_IO / TG_ERR_NOMEM on c. */
tg_status tg__afile_open(tg__afile *a, tg_ctx *c, const char *fn, const char *path);
/* Writes n bytes (retrying short writes and EINTR); TG_ERR_IO on c. */
tg_status tg__afile_write(tg__afile *a, const void *p, size_t n);
/* Writes t's elements in row-major order, little-endian. */
tg_status tg__afile_write_tensor(tg__afile *a, const tg_tensor *t);
/* Syncs, closes and renames over the target, then syncs the directory
 * (best effort: the new file is in place by then). On failure removes
 * the temporary file and leaves the target untouched. Either way a is
 * finished. */
tg_status tg__afile_commit(tg__afile *a);
/* Closes and removes the temporary file (after an error). */
void tg__afile_abort(tg__afile *a);

/* Reads the whole file into heap memory from c's hook (*len bytes; free
 * with tg__heap_free(c, buf, *len + 1)); NULL with TG_ERR_IO / NOMEM. */
char *tg__read_file(tg_ctx *c, const char *fn, const char *path, size_t *len);

/*
 * Test-only fault injection for the atomic writes. Every system call an
 * atomic write makes (in this order: OPEN of the temporary file, WRITEs,
 * FSYNC, CLOSE, RENAME over the target, SYNC_DIR of the directory) first
 * calls the hook set on the calling thread, if any; a nonzero return is an
 * errno value the call then fails with, without being made (SYNC_DIR is
 * best effort, so its failure is not reported). The hook may also stop the
 * process there (tests/test_crashsafe.c kills itself at every call).
 * Thread-local; NULL (the default) turns it off.
 */
typedef enum {
    TG__IO_OPEN,
    TG__IO_WRITE,
    TG__IO_FSYNC,
    TG__IO_CLOSE,
    TG__IO_RENAME,
    TG__IO_SYNC_DIR
} tg__io_call;

typedef int (*tg__io_hook_fn)(tg__io_call call, void *ud);
void tg__io_set_hook(tg__io_hook_fn fn, void *ud);

#endif /* TG_IO_IMPL_H */
