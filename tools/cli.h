/*
 * cli.h - what the files of the tapegrad command-line tool share: exit
 * codes, option parsing helpers, the Fashion-MNIST models and data, the
 * evaluation pass, and the reports (classification report, confusion
 * matrix, SVG curves).
 *
 * Not a library header: the tool is one program made of several files.
 */
#ifndef TAPEGRAD_TOOLS_CLI_H
#define TAPEGRAD_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tapegrad.h"

/* Exit statuses of every command. */
enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* Prints "tapegrad <cmd>: <message>\n" to stderr. */
void cli_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---------------------------------------------------------------------- */
/* Option parsing                                                         */
/* ---------------------------------------------------------------------- */

/* A walk over argv[first..argc-1] accepting "--name value" and
 * "--name=value". */
typedef struct {
    int argc;
    char **argv;
    int i;              /* the next argument */
    const char *cmd;    /* for messages: "train" */
    const char *name;   /* the option just read ("--epochs"), or NULL */
    const char *inline_value; /* the text after '=', or NULL */
} cli_args;

void cli_args_init(cli_args *a, const char *cmd, int argc, char **argv, int first);

/* Reads the next argument. Returns its option name ("--epochs") with the
 * value pending, or NULL at the end; a positional argument (not starting
 * with "--") is returned as is with a->name NULL. */
const char *cli_args_next(cli_args *a);

/* The value of the option just read (the "=value" part or the next
 * argument). NULL, with a message printed, when there is none. */
const char *cli_args_value(cli_args *a);

/* Parsers of an option's value: true and *out set, or false with a message
 * naming the option and the value. */
bool cli_parse_int(const cli_args *a, const char *s, int64_t lo, int64_t hi, int64_t *out);
bool cli_parse_double(const cli_args *a, const char *s, double lo, double hi, double *out);
/* One of the NULL-terminated choices; *out is its index. */
bool cli_parse_choice(const cli_args *a, const char *s, const char *const *choices, int *out);

/* The same parsers for metadata strings of a checkpoint, without
 * messages. */
bool cli_str_int(const char *s, int64_t *out);
bool cli_str_double(const char *s, double *out);

/* The shortest of v's %.15g, %.16g and %.17g forms that reads back as v
 * (NaN and infinities print as C does), into buf of n bytes (32 is
 * enough). */
void cli_fmt_double(char *buf, size_t n, double v);

/* Seconds on a monotonic clock. */
double cli_now(void);

/* ---------------------------------------------------------------------- */
/* Fashion-MNIST                                                          */
/* ---------------------------------------------------------------------- */

#define FMNIST_CLASSES 10
#define FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

extern const char *const fmnist_class_names[FMNIST_CLASSES];

/* One split: images [n, 28, 28] F32 normalised, labels [n] I64, both in
 * the persistent context they were read into. */
typedef struct {
    tg_tensor *x;
    tg_tensor *y;
    int64_t n;
} fmnist_split;

/* Reads "<dir>/<prefix>-images-idx3-ubyte.gz" and the labels file into c,
 * keeps the first limit samples (limit <= 0: all), checks the shapes and
 * labels, and normalises the pixels to (x/255 - mean) / std with
 * Fashion-MNIST's training-set statistics. prefix is "train" or "t10k".
 * false with a message printed (naming cmd) on failure. */
bool fmnist_load(tg_ctx *c, const char *cmd, const char *dir, const char *prefix, int64_t limit,
                 fmnist_split *out);

/* The architectures train can build. */
typedef enum { ARCH_MLP, ARCH_CNN, ARCH_COUNT } arch_kind;
extern const char *const arch_names[]; /* "mlp", "cnn", NULL */

/* A network and how to feed it. */
typedef struct {
    arch_kind kind;
    tg_model *model;
    tg_module *net;   /* the whole network: [B, ...] -> logits [B, 10] */
    const char *desc; /* "784-256-128-10 ReLU" */
} fmnist_net;

/* Builds the network of kind in the model's persistent context (weights
 * drawn from that context's RNG). false with the context's message
 * printed on failure. */
bool fmnist_net_new(tg_model *m, arch_kind kind, const char *cmd, fmnist_net *out);

/* logits [m, 10] of the network for images x [m, 28, 28] (a tensor or a
 * view of any context), recorded in the step context s. NULL with the
 * error on s. */
tg_tensor *fmnist_forward(tg_ctx *s, const fmnist_net *net, tg_tensor *x);

/* Samples per forward pass of an evaluation (the CNN's im2col workspace
 * for 250 images is about 60 MB). */
#define EVAL_BATCH 250

/* The result of an evaluation pass. */
typedef struct {
    int64_t cm[FMNIST_CLASSES][FMNIST_CLASSES]; /* [true][predicted] */
    int64_t n;
    int64_t correct;
    double loss; /* mean cross-entropy */
} eval_result;

/* Runs the network in evaluation mode (no dropout, no tape) over the split
 * in batches of batch, using (and resetting) the step context s; restores
 * the model's training mode and s's grad mode after. false with the
 * context's message printed on failure. */
bool fmnist_evaluate(tg_ctx *s, const fmnist_net *net, const fmnist_split *d, int64_t batch,
                     const char *cmd, eval_result *r);

/* ---------------------------------------------------------------------- */
/* Reports                                                                */
/* ---------------------------------------------------------------------- */

/* The per-class precision / recall / F1 / support table with accuracy,
 * macro avg and weighted avg rows, laid out like scikit-learn's
 * classification_report with digits = 4. */
void report_classification(FILE *f, const eval_result *r);

/* The confusion matrix: rows true class, columns predicted class. */
void report_confusion(FILE *f, const eval_result *r);

/* Both, preceded by the accuracy line, and followed by the last line
 * "test_accuracy=0.XXXX" (the caller prints anything in between first). */
void report_all(FILE *f, const eval_result *r);
void report_final_line(FILE *f, const eval_result *r);

/* One point of the training curves. */
typedef struct {
    double train_loss, train_acc, test_loss, test_acc;
} epoch_stats;

/* Writes an SVG picture (two panels: loss and accuracy per epoch, train
 * and test, with axes, labels and legends) of n epochs to path; title and
 * a smaller subtitle line are shown at the top. false with errno's message
 * printed on failure. */
bool report_svg(const char *path, const char *cmd, const char *title, const char *subtitle,
                const epoch_stats *h, int n);

/* ---------------------------------------------------------------------- */
/* Checkpoints                                                            */
/* ---------------------------------------------------------------------- */

/* Reads the checkpoint at path into c and checks that `tapegrad train`
 * wrote it: metadata "format" is "tapegrad.checkpoint" and "model" names
 * an architecture, returned in *arch. NULL with a message printed (naming
 * cmd and path) otherwise. */
tg_safetensors *ckpt_open(tg_ctx *c, const char *cmd, const char *path, arch_kind *arch);

/* ---------------------------------------------------------------------- */
/* Commands                                                               */
/* ---------------------------------------------------------------------- */

/* Each returns the exit status. */
int cmd_train(int argc, char **argv);   /* argv[0] is "train" */
void train_usage(FILE *f);              /* the option list of train */
int cmd_eval(int argc, char **argv);    /* argv[0] is "eval" */
int cmd_inspect(int argc, char **argv); /* argv[0] is "inspect" */

#endif /* TAPEGRAD_TOOLS_CLI_H */
