/*
 * io_impl.h - file helpers shared by the readers and writers: atomic
 * writes (temporary file, flush, fsync, rename) and whole-file reads.
 * Library-internal.
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
    FILE *f;
} tg__afile;

/* Creates a temporary file next to path. TG_ERR_IO / TG_ERR_NOMEM on c. */
tg_status tg__afile_open(tg__afile *a, tg_ctx *c, const char *fn, const char *path);
/* Writes n bytes; TG_ERR_IO on c. */
tg_status tg__afile_write(tg__afile *a, const void *p, size_t n);
/* Writes t's elements in row-major order, little-endian. */
tg_status tg__afile_write_tensor(tg__afile *a, const tg_tensor *t);
/* Flushes, syncs, closes and renames over the target; on failure removes
 * the temporary file. Either way a is finished. */
tg_status tg__afile_commit(tg__afile *a);
/* Closes and removes the temporary file (after an error). */
void tg__afile_abort(tg__afile *a);

/* Reads the whole file into heap memory from c's hook (*len bytes; free
 * with tg__heap_free(c, buf, *len + 1)); NULL with TG_ERR_IO / NOMEM. */
char *tg__read_file(tg_ctx *c, const char *fn, const char *path, size_t *len);

#endif /* TG_IO_IMPL_H */
