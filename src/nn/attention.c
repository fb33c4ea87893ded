/*
 * attention.c - multi-head attention: q/k/v/out projections (four Linear
 * sub-layers) around tg_sdpa, heads split and merged with views.
 */
#include "nn_impl.h"

tg_module *tg_nn_mha_new(tg_model *m, const char *name, int64_t embed_dim, int64_t num_heads,
                         bool bias, bool causal)
{
    const char *fn = "tg_nn_mha_new";
    if (!m || !tg__ok(m->ctx)) return NULL;
    const char *nm = name ? name : "";
    if (embed_dim < 1 || num_heads < 1 || embed_dim % num_heads != 0) {
        tg__fail(m->ctx, TG_ERR_INVALID,
                 "%s: '%s': embed_dim %lld must be a positive multiple of num_heads %lld", fn, nm,
                 (long long)embed_dim, (long long)num_heads);
        return NULL;
    }
    tg_module *mod = tg__nn_module(m, TG__NN_MHA, fn, name);
    if (!mod) return NULL;
    mod->in = embed_dim;
    mod->heads = num_heads;
    mod->causal = causal;
    static const char *const proj[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int i = 0; i < 4; i++) {
        const char *pn = tg__nn_join(m->ctx, nm, proj[i]);
        tg_module *lin = pn ? tg_nn_linear_new(m, pn, embed_dim, embed_dim, bias) : NULL;
        if (!lin || !tg__nn_vec_push(m->ctx, &mod->children, lin)) return NULL;
    }
    return mod;
}

/* [B, L, E] -> [B, heads, L, E/heads] (a view of a contiguous projection) */
static tg_tensor *split_heads(tg_ctx *c, tg_tensor *x, int64_t heads)
{
    if (!x) return NULL;
    int64_t B = x->shape[0], L = x->shape[1], E = x->shape[2];
    tg_tensor *r = tg_reshape(c, x, TG_SHAPE(B, L, heads, E / heads));
    return tg_permute(c, r, (const int[]){0, 2, 1, 3});
}

static tg_tensor *mha(tg_ctx *c, const char *fn, tg_module *mod, tg_tensor *q, tg_tensor *k,
                      tg_tensor *v, tg_tensor *mask)
{
    int64_t E = mod->in;
    tg_tensor *const in[3] = {q, k, v};
    static const char *const nm[3] = {"query", "key", "value"};
    char b[96];
    for (int i = 0; i < 3; i++) {
        if (in[i]->ndim != 3 || in[i]->shape[2] != E) {
            tg__nn_fail(c, TG_ERR_SHAPE, fn, mod, "%s %s: expected [B,L,%lld]", nm[i],
                        tg_shape_str(in[i], b, sizeof b), (long long)E);
            return NULL;
        }
    }
    if (k->shape[0] != q->shape[0] || v->shape[0] != q->shape[0] || k->shape[1] != v->shape[1]) {
        char b2[96], b3[96];
        tg__nn_fail(c, TG_ERR_SHAPE, fn, mod,
                    "query %s, key %s, value %s: batch sizes or key/value lengths differ",
                    tg_shape_str(q, b, sizeof b), tg_shape_str(k, b2, sizeof b2),
                    tg_shape_str(v, b3, sizeof b3));
        return NULL;
    }
    tg_module **p = (tg_module **)mod->children.v;
    int64_t B = q->shape[0], Lq = q->shape[1];
    tg_tensor *qh = split_heads(c, tg_linear(c, q, p[0]->weight, p[0]->bias), mod->heads);
    tg_tensor *kh = split_heads(c, tg_linear(c, k, p[1]->weight, p[1]->bias), mod->heads);
    tg_tensor *vh = split_heads(c, tg_linear(c, v, p[2]->weight, p[2]->bias), mod->heads);
    /* y is [B, h, Lq, d] laid out as [B, Lq, h, d], like qh (tg_sdpa keeps
     * q's order of dims, and its gradients keep q's, k's and v's), so the
     * heads merge back as views and split again in the backward as views */
    tg_tensor *y = tg_sdpa(c, qh, kh, vh, mask, mod->causal, 0.0);
    y = tg_permute(c, y, (const int[]){0, 2, 1, 3}); /* [B, Lq, h, d], contiguous */
    y = tg_reshape(c, y, TG_SHAPE(B, Lq, E));
    return tg_linear(c, y, p[3]->weight, p[3]->bias);
}

tg_tensor *tg_nn_mha_forward(tg_ctx *c, tg_module *m, tg_tensor *q, tg_tensor *k, tg_tensor *v,
                             tg_tensor *mask)
{
    const char *fn = "tg_nn_mha_forward";
    if (!tg__nn_begin(c, fn, m, q) || !tg__nn_begin(c, fn, m, k) || !tg__nn_begin(c, fn, m, v))
        return NULL;
    if (m->kind != TG__NN_MHA) {
        tg__nn_fail(c, TG_ERR_INVALID, fn, m, "not a multi-head attention layer");
        return NULL;
    }
    bool was_ok = tg__ok(c);
    return tg__nn_blame(c, was_ok, fn, m, mha(c, fn, m, q, k, v, mask));
}

tg_tensor *tg__nn_mha_self_forward(tg_ctx *c, tg_module *mod, tg_tensor *x)
{
    const char *fn = "tg_module_forward";
    bool was_ok = tg__ok(c);
    return tg__nn_blame(c, was_ok, fn, mod, mha(c, fn, mod, x, x, x, NULL));
}
