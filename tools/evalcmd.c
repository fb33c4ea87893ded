/*
 * evalcmd.c - `tapegrad eval` (a saved model's accuracy, report and
 * confusion matrix on the test set) and `tapegrad inspect` (what any
 * safetensors file holds).
 */
#include "cli.h"

#include <string.h>

tg_safetensors *ckpt_open(tg_ctx *c, const char *cmd, const char *path, arch_kind *arch)
{
    tg_safetensors *f = tg_safetensors_read(c, path);
    if (f == NULL) {
        cli_error(cmd, "cannot read checkpoint %s: %s", path, tg_ctx_errmsg(c));
        tg_ctx_clear_error(c);
        return NULL;
    }
    const char *format = tg_safetensors_meta(f, "format");
    if (format == NULL || strcmp(format, "tapegrad.checkpoint") != 0) {
        cli_error(cmd, "%s is a safetensors file but not a tapegrad checkpoint (metadata "
                       "'format' is %s%s%s); `tapegrad inspect %s` shows what it holds",
                  path, format ? "'" : "missing", format ? format : "", format ? "'" : "",
                  path);
        return NULL;
    }
    const char *model = tg_safetensors_meta(f, "model");
    for (int k = 0; model != NULL && arch_names[k] != NULL; k++) {
        if (strcmp(model, arch_names[k]) == 0) {
            *arch = (arch_kind)k;
            return f;
        }
    }
    cli_error(cmd, "%s: metadata 'model' is %s%s%s, not one of the architectures of tapegrad "
                   "train (mlp, cnn)",
              path, model ? "'" : "missing", model ? model : "", model ? "'" : "");
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* eval                                                                   */
/* ---------------------------------------------------------------------- */

static void eval_usage(FILE *f)
{
    fprintf(f, "usage: tapegrad eval --model PATH [--data DIR] [--batch-size N] "
               "[--test-limit N] [--threads N]\n"
               "  --model PATH      a checkpoint written by tapegrad train --save\n"
               "  --data DIR        the Fashion-MNIST files (default " FMNIST_DEFAULT_DIR ")\n"
               "  --batch-size N    samples per forward pass (default 250)\n"
               "  --test-limit N    evaluate on the first N test samples only (default: all)\n"
               "  --threads N       kernel threads (default 0: automatic)\n");
}

int cmd_eval(int argc, char **argv)
{
    const char *cmd = "eval", *path = NULL, *data = FMNIST_DEFAULT_DIR;
    int64_t batch = EVAL_BATCH, limit = 0, threads = 0;
    cli_args a;
    cli_args_init(&a, cmd, argc, argv, 1);
    const char *arg;
    while ((arg = cli_args_next(&a)) != NULL) {
        const char *v = NULL;
        bool ok = true;
        if (a.name == NULL) {
            cli_error(cmd, "unexpected argument '%s' (the checkpoint is given with --model)",
                      arg);
            return EXIT_USAGE;
        } else if (strcmp(a.name, "--help") == 0) {
            eval_usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a.name, "--model") == 0) {
            ok = (path = cli_args_value(&a)) != NULL;
        } else if (strcmp(a.name, "--data") == 0) {
            ok = (data = cli_args_value(&a)) != NULL;
        } else if (strcmp(a.name, "--batch-size") == 0) {
            ok = (v = cli_args_value(&a)) && cli_parse_int(&a, v, 1, 65536, &batch);
        } else if (strcmp(a.name, "--test-limit") == 0) {
            ok = (v = cli_args_value(&a)) && cli_parse_int(&a, v, 0, 1000000000000, &limit);
        } else if (strcmp(a.name, "--threads") == 0) {
            ok = (v = cli_args_value(&a)) && cli_parse_int(&a, v, 0, 256, &threads);
        } else {
            cli_error(cmd, "unknown option '%s' (see tapegrad eval --help)", a.name);
            return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    if (path == NULL) {
        cli_error(cmd, "--model PATH is required");
        eval_usage(stderr);
        return EXIT_USAGE;
    }

    tg_ctx_opts co = tg_ctx_defaults();
    co.n_threads = (int)threads;
    tg_ctx *p = tg_ctx_new_opts(&co), *s = tg_ctx_new_opts(&co);
    int rc = EXIT_RUNTIME;
    arch_kind arch;
    fmnist_net net;
    fmnist_split test;
    eval_result r;
    if (p == NULL || s == NULL) {
        cli_error(cmd, "out of memory");
        goto done;
    }
    /* The metadata is read in s, which is reset before the evaluation. */
    if (ckpt_open(s, cmd, path, &arch) == NULL) goto done;
    tg_ctx_reset(s);
    tg_model *m = tg_model_new(p);
    if (m == NULL || !fmnist_net_new(m, arch, cmd, &net)) goto done;
    tg_checkpoint ck = {.model = m};
    if (tg_checkpoint_load(p, path, &ck) != TG_OK) {
        cli_error(cmd, "cannot load %s as a %s: %s", path, arch_names[arch], tg_ctx_errmsg(p));
        goto done;
    }
    if (!fmnist_load(p, cmd, data, "t10k", limit, &test)) goto done;
    printf("tapegrad eval: %s, %s %s (%lld parameters), %lld test samples\n", path,
           arch_names[arch], net.desc, (long long)tg_model_numel(m), (long long)test.n);
    if (!fmnist_evaluate(s, &net, &test, batch, cmd, &r)) goto done;
    report_all(stdout, &r);
    report_final_line(stdout, &r);
    rc = EXIT_OK;
done:
    tg_ctx_free(s);
    tg_ctx_free(p);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* inspect                                                                */
/* ---------------------------------------------------------------------- */

static const char *st_dtype(tg_dtype dt)
{
    return dt == TG_F64 ? "F64" : dt == TG_I64 ? "I64" : "F32";
}

/* Tensors of a tapegrad checkpoint that are not the model's. */
static bool is_state(const char *name)
{
    return strncmp(name, "optim.", 6) == 0 || strncmp(name, "batcher.", 8) == 0 ||
           strncmp(name, "rng.", 4) == 0;
}

int cmd_inspect(int argc, char **argv)
{
    const char *cmd = "inspect";
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: tapegrad inspect PATH   (any safetensors file)\n");
        return EXIT_OK;
    }
    if (argc != 2 || argv[1][0] == '\0') {
        cli_error(cmd, "expected one safetensors file: tapegrad inspect PATH");
        return EXIT_USAGE;
    }
    const char *path = argv[1];
    tg_ctx *c = tg_ctx_new();
    if (c == NULL) {
        cli_error(cmd, "out of memory");
        return EXIT_RUNTIME;
    }
    tg_safetensors *f = tg_safetensors_read(c, path);
    if (f == NULL) {
        cli_error(cmd, "%s", tg_ctx_errmsg(c));
        tg_ctx_free(c);
        return EXIT_RUNTIME;
    }
    int n = tg_safetensors_count(f);
    int width = 4;
    for (int i = 0; i < n; i++) {
        int len = (int)strlen(tg_safetensors_name(f, i));
        if (len > width) width = len;
    }
    printf("%s: %d tensors, %d metadata entries\n\n", path, n, tg_safetensors_meta_count(f));
    printf("%-*s  %-5s  %-20s %12s %12s\n", width, "name", "dtype", "shape", "elements", "bytes");
    int64_t elems = 0, bytes = 0, p_elems = 0;
    int p_count = 0;
    for (int i = 0; i < n; i++) {
        tg_tensor *t = tg_safetensors_tensor(f, i);
        const char *name = tg_safetensors_name(f, i);
        char shape[96];
        int64_t ne = tg_numel(t), nb = ne * (int64_t)tg_dtype_size(tg_tensor_dtype(t));
        printf("%-*s  %-5s  %-20s %12lld %12lld\n", width, name, st_dtype(tg_tensor_dtype(t)),
               tg_shape_str(t, shape, sizeof shape), (long long)ne, (long long)nb);
        elems += ne;
        bytes += nb;
        if (!is_state(name)) {
            p_elems += ne;
            p_count++;
        }
    }
    printf("\ntotal: %d tensors, %lld elements, %lld bytes of data\n", n, (long long)elems,
           (long long)bytes);
    printf("parameters: %lld in %d tensors (all but optim.*, batcher.* and rng.* state)\n",
           (long long)p_elems, p_count);
    int nm = tg_safetensors_meta_count(f);
    if (nm > 0) printf("\nmetadata:\n");
    for (int i = 0; i < nm; i++) {
        const char *key = tg_safetensors_meta_key(f, i);
        const char *val = tg_safetensors_meta(f, key);
        size_t len = strlen(val);
        if (len > 100) printf("  %s = %.96s... (%zu characters)\n", key, val, len);
        else printf("  %s = %s\n", key, val);
    }
    tg_ctx_free(c);
    return EXIT_OK;
}
