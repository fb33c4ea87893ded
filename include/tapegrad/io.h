/*
 * tapegrad/io.h - safetensors files, training checkpoints built on them,
 * and single-tensor .npy files.
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

#include "data.h"
#include "nn.h"
#include "optim.h"
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

/* ====================================================================== */
/* Checkpoints: a training run's whole state in one safetensors file       */
/* ====================================================================== */

/*
 * What a checkpoint holds. Every member may be NULL (n_meta 0): only what
 * is named is saved or restored. In the file:
 *   the model's parameters and buffers  under their own names ("fc1.weight",
 *                                       "bn.running_mean"), so PyTorch users
 *                                       can load_state_dict them directly
 *   the optimizer's state               "optim.<entry>" for every entry of
 *                                       tg_optim_state_get ("optim.step",
 *                                       "optim.lr", "optim.fc1.weight.exp_avg")
 *   the batcher's state                 "batcher.state", I64 [7]: rng[4],
 *                                       epoch, pos, n (tg_batcher_state)
 *   the RNG of the context rng          "rng.state", I64 [4] (the words'
 *                                       bit patterns)
 * and as metadata "format" = "tapegrad.checkpoint", "format_version" = "1",
 * "optimizer" = tg_optim_kind (when optim is set), then the caller's pairs.
 */
typedef struct {
    tg_model *model;     /* parameters and buffers */
    tg_optim *optim;     /* optimizer state */
    tg_batcher *batcher; /* where the data order stands */
    tg_ctx *rng;         /* a context whose RNG stream is kept, e.g. the step
                            context dropout draws from */
    int n_meta;          /* caller's metadata: n_meta string key/value pairs */
    const char *const *meta_keys;
    const char *const *meta_values;
} tg_checkpoint;

/*
 * Writes everything ck names to path as one safetensors file, atomically
 * (temporary file, fsync, rename: a crash leaves the previous file whole).
 * Scratch memory comes from c's allocator and is returned before the call
 * ends; nothing is left in any arena. Errors, recorded on c and returned:
 * TG_ERR_INVALID (NULL c, path or ck; a negative n_meta or NULL metadata
 * arrays; a metadata key that is one of the three above; names that
 * collide, e.g. a parameter named "rng.state"), TG_ERR_NOMEM, TG_ERR_IO
 * (target untouched, no temporary left), or the error of reading the
 * optimizer's state (also on its context).
 */
tg_status tg_checkpoint_save(tg_ctx *c, const char *path, const tg_checkpoint *ck);

/*
 * Reads path and restores everything ck names, all or nothing: the file is
 * read and every entry checked (present; the exact shape; a floating dtype
 * for floating tensors, f32 and f64 converting into each other, I64 for
 * I64; valid batcher and RNG states; see tg_optim_load_state and
 * tg_batcher_set_state) before anything is written, so on error the model,
 * the optimizer, the batcher and the RNG are as they were. Tensors in the
 * file that ck does not ask for are ignored, so a plain safetensors file
 * of weights (from PyTorch, say) restores a model. A "format_version"
 * other than "1" is refused. To read the metadata first (which model to
 * build), use tg_safetensors_read and tg_safetensors_meta. Scratch memory
 * as for tg_checkpoint_save. Errors, recorded on c and returned (and on
 * the model's, optimizer's or batcher's context when theirs refused):
 * TG_ERR_INVALID (NULLs; a missing entry, named; an invalid state),
 * TG_ERR_SHAPE, TG_ERR_DTYPE, TG_ERR_IO, TG_ERR_FORMAT, TG_ERR_NOMEM.
 */
tg_status tg_checkpoint_load(tg_ctx *c, const char *path, const tg_checkpoint *ck);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_IO_H */
