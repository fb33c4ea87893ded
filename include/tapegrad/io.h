/*
 * tapegrad/io.h - checkpoints (safetensors) and single-tensor .npy files.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes
 * of JSON ({"name": {"dtype": "F32", "shape": [2, 3], "data_offsets":
 * [begin, end]}, ..., "__metadata__": {"key": "value"}}), then the raw
 * little-endian data, which the offsets tile exactly. Files written here
 * load in Python with the `safetensors` package or numpy alone, and files
 * PyTorch's `safetensors` writes in F32, F64 or I64 load here.
 *
 * Writing is atomic: data goes to a temporary file in the same directory,
 * which is flushed, synced and renamed over the target, so a crash during
 * a save leaves the previous file intact. Reading validates everything
 * (header length, JSON, dtypes, shapes, offsets that tile the data exactly,
 * overflow) and gives TG_ERR_FORMAT with a message for a truncated or
 * corrupt file, never a crash.
 */
#ifndef TAPEGRAD_IO_H
#define TAPEGRAD_IO_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ====================================================================== */
/* safetensors                                                            */
/* ====================================================================== */

/*
 * Writes n tensors (any strides; stored row-major) under the given names
 * (NULL: each tensor's tg_tensor_name) with n_meta string key/value pairs
 * as "__metadata__", atomically, to path. Names must be non-empty and
 * unique, and "__metadata__" is reserved. Errors, recorded on c (which
 * only reports them; nothing is allocated in it): TG_ERR_INVALID (NULLs,
 * a missing, empty, duplicated or reserved name, n < 0), TG_ERR_NOMEM,
 * TG_ERR_IO (the message names the path and the system error; the target
 * is untouched and no temporary file is left behind).
 */
tg_status tg_safetensors_write(tg_ctx *c, const char *path, int n, tg_tensor *const *tensors,
                               const char *const *names, int n_meta,
                               const char *const *meta_keys, const char *const *meta_values);

/* A parsed safetensors file: its tensors and metadata, living in the
 * context it was read into (freed by that context's reset or free). */
typedef struct tg_safetensors tg_safetensors;

/*
 * Reads and validates the file at path; every tensor is copied into a
 * contiguous tensor of c named after its key (in file order of offsets).
 * Returns NULL with the error on c: TG_ERR_INVALID (NULLs), TG_ERR_IO
 * (cannot open or read), TG_ERR_FORMAT (anything malformed: the message
 * says what and where), TG_ERR_DTYPE (a dtype other than F32, F64, I64),
 * TG_ERR_NOMEM.
 */
tg_safetensors *tg_safetensors_read(tg_ctx *c, const char *path);

/* The same from len bytes in memory (the file's whole contents). */
tg_safetensors *tg_safetensors_parse(tg_ctx *c, const void *buf, size_t len);

int tg_safetensors_count(const tg_safetensors *f);                  /* 0 for NULL */
const char *tg_safetensors_name(const tg_safetensors *f, int i);    /* NULL out of range */
tg_tensor *tg_safetensors_tensor(const tg_safetensors *f, int i);   /* NULL out of range */
tg_tensor *tg_safetensors_find(const tg_safetensors *f, const char *name); /* NULL if absent */
int tg_safetensors_meta_count(const tg_safetensors *f);
const char *tg_safetensors_meta_key(const tg_safetensors *f, int i);
/* The metadata value for key, or NULL. Strings are owned by f's context. */
const char *tg_safetensors_meta(const tg_safetensors *f, const char *key);

/* ====================================================================== */
/* .npy                                                                   */
/* ====================================================================== */

/* Writes t (any strides) as a NumPy .npy file (format 1.0, little-endian
 * '<f4', '<f8' or '<i8', C order), atomically. Errors as
 * tg_safetensors_write. */
tg_status tg_npy_write(tg_ctx *c, const char *path, const tg_tensor *t);

/* Reads a .npy file (format 1.0, 2.0 or 3.0; '<f4', '<f8', '<i8' in C
 * order) into a contiguous tensor of c. Errors as tg_safetensors_read. */
tg_tensor *tg_npy_read(tg_ctx *c, const char *path);

/* The same from len bytes in memory. */
tg_tensor *tg_npy_parse(tg_ctx *c, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_IO_H */
