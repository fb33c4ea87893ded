/*
 * fuzz_idx.c - libFuzzer target for the idx reader: any bytes must give a
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
    tg_idx_opts o = tg_idx_defaults();
    o.max_bytes = (uint64_t)64 << 20; /* a fuzzer's memory, not a real limit */
    tg_tensor *t = tg_idx_parse(c, data, size, &o);
    if (t) {
        if (tg_numel(t) > 0) (void)tg_get(t, (int64_t[TG_MAX_DIMS]){0});
    } else if (tg_ctx_status(c) == TG_OK || tg_ctx_errmsg(c)[0] == '\0') {
        abort();
    }
    tg_ctx_free(c);
    return 0;
}
