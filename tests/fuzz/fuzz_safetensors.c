/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors parser: any
 * bytes must give a parsed file or an error status with a message, never
 * a crash, a leak or undefined behaviour (built with ASan and UBSan).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tapegrad.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_ctx *c = tg_ctx_new_opts(&(tg_ctx_opts){.n_threads = 1, .seed = 1});
    if (!c) return 0;
    tg_safetensors *f = tg_safetensors_parse(c, data, size);
    if (f) {
        /* touch everything the parser handed back */
        for (int i = 0; i < tg_safetensors_count(f); i++) {
            tg_tensor *t = tg_safetensors_tensor(f, i);
            if (!t || !tg_safetensors_name(f, i)) abort();
            if (tg_numel(t) > 0) (void)tg_get(t, (int64_t[TG_MAX_DIMS]){0});
        }
        for (int i = 0; i < tg_safetensors_meta_count(f); i++)
            (void)strlen(tg_safetensors_meta(f, tg_safetensors_meta_key(f, i)));
    } else if (tg_ctx_status(c) == TG_OK || tg_ctx_errmsg(c)[0] == '\0') {
        abort(); /* a failure must carry a status and a message */
    }
    tg_ctx_free(c);
    return 0;
}
