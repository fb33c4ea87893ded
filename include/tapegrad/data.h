/*
 * tapegrad/data.h - data sets: IDX files (MNIST, Fashion-MNIST), small
 * CSV tables, text for character-level models, and shuffled mini-batches.
 *
 * Every reader has two entry points: tg_X_read(c, path, ...) reads a file,
 * tg_X_parse(c, buf, len, ...) parses bytes already in memory (what a
 * fuzzer calls). Both trust nothing in the input: any bytes give either a
 * result or TG_ERR_FORMAT with a message "fn: path: what" (the path is
 * "buffer" for the parse functions), never a crash, an over-read or an
 * allocation larger than the input justifies. Results live in the context
 * they were read into (freed by its reset or free). The readers allocate
 * temporary memory through the context's allocator hook and free it before
 * returning.
 *
 * The batcher is the training loop's side: a seeded permutation of N
 * sample indices per epoch, cut into batches, with its whole state in a
 * small public struct so a checkpoint can save it and a resumed run can
 * continue the exact same sequence. tg_gather_rows copies a batch of rows
 * into a preallocated tensor, so a training step stays allocation-free.
 */
#ifndef TAPEGRAD_DATA_H
#define TAPEGRAD_DATA_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ====================================================================== */
/* IDX files                                                              */
/* ====================================================================== */

/*
 * The IDX format (LeCun's MNIST files): two zero bytes, an element-type
 * byte (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64), a
 * dimension count byte, that many big-endian u32 dims, then the elements,
 * big-endian, row-major, and nothing after them. Files may be gzipped
 * (recognised by the gzip magic 1f 8b, whatever their name; concatenated
 * gzip members are one stream): the reader inflates only as many bytes as
 * the header implies and refuses a stream that holds more, less, or more
 * than deflate's 1032:1 ratio could have produced from the file's size.
 */
typedef struct {
    /* The tensor's dtype: TG_F32, TG_F64 or TG_I64, or TG_IDX_AUTO (the
     * default): integer data with one dim (labels) -> TG_I64, anything
     * else (images) -> TG_F32. TG_I64 of f32/f64 data is TG_ERR_DTYPE. */
    int dtype;
    /* u8 data read into a floating dtype is divided by 255, into [0, 1]
     * (default false: raw 0..255). Ignored for other element types and for
     * TG_I64, so one opts value reads both images and labels. */
    bool scale;
    /* The most bytes of element data accepted (after inflating); larger
     * files are TG_ERR_FORMAT. 0 (the default): 4 GiB. */
    uint64_t max_bytes;
    /* Read only the first max_items items along dim 0 (dim 0 of the result
     * is then min(dim 0, max_items)); 0 (the default): all. A plain file
     * is still checked to hold all the data its dims say; of a gzip file
     * only the bytes of those items are inflated, and the rest of the
     * stream is neither read nor checked: a quick way to load a sample of
     * a large data set. Negative: TG_ERR_INVALID. */
    int64_t max_items;
} tg_idx_opts;

#define TG_IDX_AUTO (-1)

/* Defaults: dtype TG_IDX_AUTO, scale false, max_bytes 0 (4 GiB), max_items
 * 0 (all). */
tg_idx_opts tg_idx_defaults(void);

/*
 * Reads the IDX file at path (gzipped or not) into a new contiguous tensor
 * of c with the file's dims (at most 8; a 0-dim file is a 0-d tensor).
 * opts NULL: tg_idx_defaults(). Returns NULL with the error on c:
 * TG_ERR_INVALID (NULL c or path, a dtype that is not one of the four
 * choices), TG_ERR_IO (cannot open or read), TG_ERR_FORMAT (bad magic or
 * element type, more than 8 dims, a data length that does not match the
 * dims exactly, dims whose product overflows, corrupt or truncated gzip,
 * trailing bytes; the message says which and where), TG_ERR_DTYPE (float
 * data as TG_I64), TG_ERR_NOMEM.
 */
tg_tensor *tg_idx_read(tg_ctx *c, const char *path, const tg_idx_opts *opts);

/* The same from len bytes in memory (the file's whole contents). */
tg_tensor *tg_idx_parse(tg_ctx *c, const void *buf, size_t len, const tg_idx_opts *opts);

/* ====================================================================== */
/* CSV tables                                                             */
/* ====================================================================== */

/*
 * Small numeric tables in RFC 4180 CSV: records end in CRLF, LF or CR; a
 * field may be quoted ("a, ""b""" is a, "b"), and a quoted field may hold
 * delimiters and line breaks. Blank lines are skipped, a UTF-8 byte order
 * mark at the start is ignored, and every record must have as many fields
 * as the first. Every cell outside the label column must be a number as
 * C's strtod reads it in the "C" locale (surrounding spaces allowed, "nan"
 * and "inf" accepted); anything else, an empty cell included, is
 * TG_ERR_FORMAT naming the line (1-based, of the file) and column (1-based,
 * and its header name when there is a header).
 *
 * The label column, when asked for, is taken out of the features: if every
 * cell of it is an integer it becomes an I64 tensor of those integers (no
 * class names); otherwise each distinct cell is a class name, numbered
 * 0, 1, ... in order of first appearance, and the labels are those numbers.
 */
typedef struct {
    char delimiter;         /* field separator; default ',' */
    bool header;            /* the first record names the columns; default true */
    int label_col;          /* 0-based index of the label column, or -1 (default): none */
    const char *label_name; /* or the label column by header name (needs header);
                               takes precedence over label_col when non-NULL */
    tg_dtype dtype;         /* TG_F32 (default) or TG_F64 for the features */
} tg_csv_opts;

/* Defaults: ',', header true, no label column, TG_F32. */
tg_csv_opts tg_csv_defaults(void);

/* A parsed table: features, optional labels, names. Lives in the context
 * it was read into. */
typedef struct tg_csv tg_csv;

/*
 * Reads the CSV file at path. opts NULL: tg_csv_defaults(). Returns NULL
 * with the error on c: TG_ERR_INVALID (NULL c or path, a delimiter that is
 * '"', CR, LF or NUL, a dtype other than TG_F32 / TG_F64, label_name
 * without header), TG_ERR_IO, TG_ERR_FORMAT (no records at all, an
 * unterminated quote, text after a closing quote, a ragged record, a
 * non-numeric cell, a label column that does not exist), TG_ERR_NOMEM.
 */
tg_csv *tg_csv_read(tg_ctx *c, const char *path, const tg_csv_opts *opts);

/* The same from len bytes in memory. */
tg_csv *tg_csv_parse(tg_ctx *c, const void *buf, size_t len, const tg_csv_opts *opts);

/* [rows, cols] of the features (every column but the label), in the
 * table's context. NULL for NULL. */
tg_tensor *tg_csv_features(const tg_csv *t);
/* I64 [rows], or NULL without a label column. */
tg_tensor *tg_csv_labels(const tg_csv *t);
int64_t tg_csv_rows(const tg_csv *t); /* 0 for NULL */
int64_t tg_csv_cols(const tg_csv *t); /* feature columns; 0 for NULL */
/* The header name of feature column i (label column excluded), or NULL
 * without a header or out of range. Owned by the table's context. */
const char *tg_csv_column_name(const tg_csv *t, int64_t i);
/* The label column's header name, or NULL. */
const char *tg_csv_label_column_name(const tg_csv *t);
/* Number of class names: 0 when there is no label column or its cells are
 * integers. */
int64_t tg_csv_class_count(const tg_csv *t);
/* The name of class k (label value k), or NULL out of range. */
const char *tg_csv_class_name(const tg_csv *t, int64_t k);

/* ====================================================================== */
/* Text for character-level models                                        */
/* ====================================================================== */

/* What one token of text is. */
typedef enum {
    TG_TEXT_BYTES, /* one byte, any value: every file reads */
    TG_TEXT_UTF8   /* one Unicode code point: the text must be valid UTF-8
                      (no overlong forms, surrogates or values > U+10FFFF) */
} tg_text_unit;

/* A vocabulary: the sorted distinct units (byte values or code points);
 * unit i has index i. Lives in the context it was made in. */
typedef struct tg_vocab tg_vocab;

/*
 * Reads the file at path as text: *vocab receives the sorted distinct units
 * of the whole text and the result is an I64 [n] tensor of their indices,
 * one per unit, in order. Both live in c. Returns NULL with the error on c:
 * TG_ERR_INVALID (NULLs, unknown unit), TG_ERR_IO, TG_ERR_FORMAT (invalid
 * UTF-8 with TG_TEXT_UTF8: the message gives the byte offset and line),
 * TG_ERR_NOMEM. An empty file gives an empty vocabulary and a [0] tensor.
 */
tg_tensor *tg_text_read(tg_ctx *c, const char *path, tg_text_unit unit, tg_vocab **vocab);

/* The same from len bytes in memory. */
tg_tensor *tg_text_parse(tg_ctx *c, const void *buf, size_t len, tg_text_unit unit,
                         tg_vocab **vocab);

/*
 * A vocabulary of the given units (byte values 0..255 or code points),
 * which need not be sorted nor distinct: the result is their sorted
 * distinct set. For restoring a vocabulary saved with tg_vocab_unit.
 * NULL with TG_ERR_INVALID (NULLs, n < 0, a value that is not a byte or
 * not a Unicode scalar value) or TG_ERR_NOMEM on c.
 */
tg_vocab *tg_vocab_new(tg_ctx *c, tg_text_unit unit, const uint32_t *units, int64_t n);

int64_t tg_vocab_size(const tg_vocab *v);      /* 0 for NULL */
tg_text_unit tg_vocab_kind(const tg_vocab *v); /* TG_TEXT_BYTES for NULL */
/* The unit (byte value or code point) of index i; UINT32_MAX out of range. */
uint32_t tg_vocab_unit(const tg_vocab *v, int64_t i);
/* The index of unit u, or -1 when u is not in the vocabulary. */
int64_t tg_vocab_index(const tg_vocab *v, uint32_t u);

/*
 * Encodes len bytes of text (a prompt) into a new I64 [n] tensor of c.
 * NULL with the error on c: TG_ERR_INVALID (NULLs; a unit not in the
 * vocabulary, named with its offset), TG_ERR_FORMAT (invalid UTF-8 for a
 * code-point vocabulary), TG_ERR_NOMEM.
 */
tg_tensor *tg_vocab_encode(tg_ctx *c, const tg_vocab *v, const char *text, size_t len);

/*
 * Decodes n indices into text like snprintf: writes at most cap - 1 bytes
 * and a NUL into buf (never cutting a UTF-8 sequence; buf may be NULL when
 * cap is 0) and returns the full length of the text in bytes, without the
 * NUL. Returns -1 (and writes an empty string when cap > 0) when v or ids
 * is NULL with n > 0, n < 0, or an index is outside [0, size).
 */
int64_t tg_vocab_decode(const tg_vocab *v, const int64_t *ids, int64_t n, char *buf, size_t cap);

/* ====================================================================== */
/* Mini-batches                                                           */
/* ====================================================================== */

/*
 * A training loop (x [N,28,28] F32 and y [N] I64 from tg_idx_read, all of
 * it in the persistent context p; the step context s is reset each step):
 *
 *     tg_batcher_opts bo = tg_batcher_defaults();
 *     bo.batch_size = 64;
 *     bo.seed = seed;
 *     tg_batcher *b = tg_batcher_new(p, tg_shape(y)[0], &bo);
 *     tg_tensor *bx = tg_tensor_new(p, TG_F32, TG_SHAPE(64, 28, 28));
 *     tg_tensor *by = tg_tensor_new(p, TG_I64, TG_SHAPE(64));
 *     for (int epoch = 0; epoch < epochs; epoch++) {
 *         const int64_t *idx;
 *         int64_t m;
 *         while ((m = tg_batcher_next(b, &idx)) > 0) {
 *             tg_gather_rows(p, bx, x, idx, m);
 *             tg_gather_rows(p, by, y, idx, m);
 *             ... the step on the first m rows (tg_slice(s, bx, 0, 0, m, 1)
 *             when m < 64), then tg_ctx_reset(s) ...
 *         }
 *     }
 *
 * A checkpoint stores tg_batcher_get_state(b) (seven 64-bit words, e.g. as
 * an I64 tensor of 7 elements); --resume passes it to tg_batcher_set_state.
 */

typedef struct {
    int64_t batch_size; /* samples per batch (per rank), >= 1; default 32 */
    bool shuffle;       /* a new permutation every epoch; default true (false:
                           0, 1, ..., n-1 every epoch) */
    bool drop_last;     /* drop the last batch when it is smaller than
                           batch_size (world * batch_size samples when
                           sharded); default false (keep it) */
    uint64_t seed;      /* seed of the batcher's own RNG; default 0 */
    int rank, world;    /* sharding for data-parallel training (dist.h):
                           this process is rank `rank` of `world`, 0 <= rank
                           < world; default 0 of 1 (no sharding); world
                           0 with rank 0 (options zero-initialised, e.g.
                           by a designated initializer) means 1 */
} tg_batcher_opts;

/*
 * Sharding. With world > 1, a batcher draws the same permutation on every
 * rank (give every rank the same seed) and cuts it into global batches of
 * world * batch_size samples; each rank takes its own slice of each global
 * batch: rank r the samples [r * batch_size, (r + 1) * batch_size) of it.
 * The ranks' slices are disjoint and together are exactly the batch one
 * process with batch_size world * batch_size would get. A last partial
 * global batch of M samples is split as evenly as possible, the first
 * M % world ranks taking one more. When M < world, a rank left without a
 * sample is given the batch's first sample again with weight 0 (see
 * tg_batcher_weight), so every rank takes the same number of steps and a
 * training loop needs no special case. The checkpoint state is global
 * (pos counts samples of all ranks): it is the same on every rank and
 * restores into a batcher of any world size.
 */

/* Defaults: batch 32, shuffle, keep the last partial batch, seed 0,
 * rank 0 of world 1. */
tg_batcher_opts tg_batcher_defaults(void);

/*
 * Everything a batcher's future depends on, for checkpoints: restoring it
 * into a batcher over the same n and batch size (and world) continues the
 * exact same sequence of batches. rng is the xoshiro256** state at the start of the
 * current epoch (the epoch's permutation is drawn from it), epoch counts
 * the epochs begun before the current one, pos is the number of samples
 * of the current epoch already handed out, n the sample count (checked on
 * restore).
 */
typedef struct {
    uint64_t rng[4];
    int64_t epoch;
    int64_t pos;
    int64_t n;
} tg_batcher_state;

/* An iterator over shuffled batches of the sample indices 0..n-1. */
typedef struct tg_batcher tg_batcher;

/*
 * A batcher over n samples, allocated in c (use the persistent context:
 * it must outlive the loop; it holds n int64 indices and needs no free).
 * Epoch 0's permutation is drawn at once. opts NULL: tg_batcher_defaults().
 * NULL with TG_ERR_INVALID (NULL c, n < 0, batch_size < 1, world < 1,
 * rank outside [0, world), world * batch_size overflowing) or TG_ERR_NOMEM
 * on c.
 */
tg_batcher *tg_batcher_new(tg_ctx *c, int64_t n, const tg_batcher_opts *opts);

/*
 * The next batch of the current epoch (this rank's slice of it when
 * sharded): *idx points at its sample indices (owned by the batcher, valid
 * until the next call) and the count is returned: batch_size, or fewer for
 * the last batch unless drop_last. Returns 0 (and *idx NULL) at the end of
 * the epoch, on every rank at the same call, and then starts the next one
 * (a new permutation), so
 *     while ((m = tg_batcher_next(b, &idx)) > 0) { ... }
 * runs one epoch. Never allocates. -1 for NULL arguments.
 */
int64_t tg_batcher_next(tg_batcher *b, const int64_t **idx);

/*
 * This rank's share of the global batch tg_batcher_next last handed out:
 * its sample count m over the global batch's M (1.0 without sharding), or
 * 0 for a rank given a sample only to keep step with the others (see
 * Sharding). The weights of all ranks sum to 1, so a loss that is a mean
 * over the rank's m samples, times this weight, summed over ranks, is the
 * mean over the M samples: pass it to tg_dist_allreduce_grads. 0 before
 * the first batch of an epoch and for NULL.
 */
double tg_batcher_weight(const tg_batcher *b);

/* Batches (steps) per epoch: ceil(n / G) or floor with drop_last, where G
 * is batch_size * world, the same on every rank. 0 for NULL. */
int64_t tg_batcher_batches(const tg_batcher *b);
/* The current epoch, from 0. 0 for NULL. */
int64_t tg_batcher_epoch(const tg_batcher *b);

/* The batcher's state (all zeros for NULL). */
tg_batcher_state tg_batcher_get_state(const tg_batcher *b);

/*
 * Restores a state saved by tg_batcher_get_state (redrawing that epoch's
 * permutation); the next batch starts at sample pos of the epoch's
 * permutation whatever world the state was saved with. TG_ERR_INVALID on the batcher's context, and b unchanged,
 * for NULLs, a state of another n, pos outside [0, n], a negative epoch,
 * or an all-zero rng (xoshiro's forbidden state).
 */
tg_status tg_batcher_set_state(tg_batcher *b, const tg_batcher_state *s);

/*
 * dst[i, ...] = src[idx[i], ...] for i in [0, n): copies n rows of src
 * ([N, ...]) into the first n rows of dst ([B, ...] with B >= n, the same
 * trailing dims and dtype). Both must be contiguous (tg_data non-NULL) and
 * not share storage. Allocates nothing; bumps dst's version. Errors,
 * recorded on c and returned: TG_ERR_INVALID (NULLs, n < 0, non-contiguous
 * or shared storage, an index outside [0, N), named), TG_ERR_SHAPE,
 * TG_ERR_DTYPE. For a partial last batch, use a view of dst's first n rows
 * or a second tensor of that size.
 */
tg_status tg_gather_rows(tg_ctx *c, tg_tensor *dst, const tg_tensor *src, const int64_t *idx,
                         int64_t n);

#ifdef __cplusplus
}
#endif

#endif /* TAPEGRAD_DATA_H */
