/*
 * fuzz_csv.c - libFuzzer target for the csv reader: any bytes must give a
 * result or an error status with a message, never a crash or a leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tapegrad.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_ctx *c = tg_ctx_new_opts(&(tg_ctx_opts){.n_threads = 1, .seed = 1});
    if (!c) return 0;
    /* the first byte picks the options, so both label modes are explored */
    tg_csv_opts o = tg_csv_defaults();
    if (size > 0) {
        o.header = data[0] & 1;
        o.label_col = (data[0] & 2) ? -1 : 0;
        o.delimiter = (data[0] & 4) ? ';' : ',';
        data++, size--;
    }
    tg_csv *f = tg_csv_parse(c, data, size, &o);
    if (f) {
        tg_tensor *x = tg_csv_features(f);
        if (x && tg_numel(x) > 0) (void)tg_get(x, (int64_t[TG_MAX_DIMS]){0});
        for (int64_t i = 0; i < tg_csv_class_count(f); i++) (void)tg_csv_class_name(f, i);
    } else if (tg_ctx_status(c) == TG_OK || tg_ctx_errmsg(c)[0] == '\0') {
        abort();
    }
    tg_ctx_free(c);
    return 0;
}
