/*
 * tapegrad.c - the tapegrad command-line tool: dispatch, usage, `ops` and
 * `version`. The other commands live in their own files.
 *
 *   tapegrad train [options]       train an MLP or a CNN on Fashion-MNIST
 *                                  (train.c): progress per epoch, then test
 *                                  accuracy, a per-class report, the
 *                                  confusion matrix and an SVG of the curves;
 *                                  last line "test_accuracy=0.XXXX"
 *   tapegrad eval --model PATH     the same report for a saved checkpoint
 *                                  (evalcmd.c)
 *   tapegrad inspect PATH          names, dtypes, shapes, sizes, parameter
 *                                  count and metadata of any safetensors file
 *   tapegrad ops                   every registered op, one per line: name,
 *                                  arity, dtypes, gradient order, notes
 *   tapegrad version               the library version and the BLAS it loads
 *
 * Exit status 0 on success, 1 on a runtime failure (missing or corrupt
 * file, a checkpoint that does not fit), 2 on a usage error.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: tapegrad <command> [options]\n"
               "commands:\n"
               "  train     train a network on Fashion-MNIST (tapegrad train --help);\n"
               "            by default an MLP, Adam, cosine schedule, 10 epochs\n"
               "  eval      tapegrad eval --model PATH: accuracy, per-class report and\n"
               "            confusion matrix of a checkpoint written by train --save\n"
               "  inspect   tapegrad inspect PATH: tensors, parameter count and metadata\n"
               "            of any safetensors file\n"
               "  ops       list every registered op, one per line, in five columns:\n"
               "            name, arity (n: any number; <=k: trailing inputs optional),\n"
               "            dtypes (+i64: takes TG_I64 labels or indices), gradient\n"
               "            (2nd-order: first and second derivatives; none), notes\n"
               "  version   print the version and the BLAS library products run on\n"
               "  help      this text\n"
               "exit status: 0 success, 1 runtime failure, 2 usage error\n");
}

/* One line per op: name, arity, dtypes, gradients, and notable flags. */
static int cmd_ops(void)
{
    for (int i = 0; i < tg_op_count(); i++) {
        tg_op op = (tg_op)i;
        unsigned fl = tg_op_flags(op);
        char arity[16];
        if (fl & TG_OPF_VARIADIC) snprintf(arity, sizeof arity, "n");
        else if (fl & TG_OPF_OPTIONAL) snprintf(arity, sizeof arity, "<=%d", tg_op_arity(op));
        else snprintf(arity, sizeof arity, "%d", tg_op_arity(op));
        const char *dtypes = (fl & (TG_OPF_INDEX | TG_OPF_LABELS)) ? "f32,f64+i64" : "f32,f64";
        const char *grad = (fl & TG_OPF_NOGRAD) ? "none" : "2nd-order";
        char notes[128] = "";
        const struct {
            unsigned bit;
            const char *word;
        } tags[] = {{TG_OPF_BROADCAST, "broadcast"}, {TG_OPF_VIEW, "view"},
                    {TG_OPF_LABELS, "labels"},       {TG_OPF_INDEX, "index"},
                    {TG_OPF_OPTIONAL, "optional"},   {TG_OPF_RANDOM, "random"},
                    {TG_OPF_CUSTOM, "user-defined"}};
        for (size_t k = 0; k < sizeof tags / sizeof tags[0]; k++) {
            if (!(fl & tags[k].bit)) continue;
            size_t len = strlen(notes);
            snprintf(notes + len, sizeof notes - len, "%s%s", len ? "," : "", tags[k].word);
        }
        printf("%-24s %-7s %-16s %-12s %s\n", tg_op_name(op), arity, dtypes, grad,
               notes[0] ? notes : "-");
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "inspect") == 0) return cmd_inspect(argc - 1, argv + 1);
    if (strcmp(cmd, "ops") == 0) return cmd_ops();
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("tapegrad %s\n", TG_VERSION_STRING);
        const char *why, *blas = tg_blas_library(&why);
        if (blas) printf("BLAS: %s\n", blas);
        else printf("BLAS: none, products on tapegrad's own loops (%s)\n", why);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "tapegrad: unknown command '%s'\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
