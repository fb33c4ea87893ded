/*
 * dot.c - the tape as a Graphviz DOT graph (tg_graph_dot).
 *
 * One reverse pass over the tape from the root's node marks what the root
 * depends on (inputs always come earlier on the tape); a forward pass then
 * prints the marked nodes, and each input that is not on the tape once.
 */
#include "../ops/ops_impl.h"

#include <string.h>

static size_t held_bytes(const tg__node *n)
{
    size_t b = (tg_op_flags(n->op) & TG_OPF_VIEW) ? 0 : n->out->st->nbytes;
    for (int i = 0; i < TG__NODE_SAVED; i++)
        if (n->saved[i]) b += n->saved[i]->st->nbytes;
    return b;
}

/* Prints an off-tape tensor (leaf, or from another context) once. */
static void print_leaf(FILE *f, const tg_tensor *t, const tg_tensor **done, int64_t *ndone,
                       int64_t cap)
{
    for (int64_t i = 0; i < *ndone; i++)
        if (done[i] == t) return;
    if (*ndone < cap) done[(*ndone)++] = t;
    char sh[160];
    tg__fmt_shape(sh, sizeof sh, t->ndim, t->shape);
    fprintf(f,
            "  t%p [shape=ellipse, style=filled, fillcolor=\"%s\", "
            "label=\"%s%s%s %s\\n%s%s, %zu B\"];\n",
            (const void *)t, t->requires_grad ? "#ffe9b3" : "#eeeeee",
            t->name ? t->name : "", t->name ? "\\n" : "", tg_dtype_name(t->dtype), sh,
            t->requires_grad ? "requires grad" : "constant", t->node ? " (other tape)" : "",
            t->st->nbytes);
}

tg_status tg_graph_dot(const tg_tensor *root, FILE *f)
{
    if (!root || !f) return TG_ERR_INVALID;
    tg_ctx *c = root->ctx;
    int64_t nt = c->tape.n;
    bool on = tg__on_tape(c, root);
    int64_t top = on ? root->node->seq + 1 : 0;
    int64_t edges = 1;
    for (int64_t i = 0; i < top; i++) edges += c->tape.nodes[i]->n_in;
    size_t mark_bytes = (size_t)(nt ? nt : 1), done_bytes = (size_t)edges * sizeof(void *);
    bool *mark = tg__heap_alloc(c, mark_bytes);
    const tg_tensor **done = tg__heap_alloc(c, done_bytes);
    if (!mark || !done) {
        tg__heap_free(c, mark, mark_bytes);
        tg__heap_free(c, done, done_bytes);
        return TG_ERR_NOMEM;
    }
    memset(mark, 0, mark_bytes);
    if (on) mark[root->node->seq] = true;
    for (int64_t i = top - 1; i >= 0; i--) {
        if (!mark[i]) continue;
        const tg__node *n = c->tape.nodes[i];
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] && tg__on_tape(c, n->in[j])) mark[n->in[j]->node->seq] = true;
    }

    int64_t ndone = 0;
    fprintf(f, "digraph tapegrad {\n  rankdir=BT;\n  node [fontname=\"monospace\", "
               "fontsize=10];\n");
    if (!on) print_leaf(f, root, done, &ndone, edges);
    for (int64_t i = 0; i < top; i++) {
        if (!mark[i]) continue;
        const tg__node *n = c->tape.nodes[i];
        char sh[160];
        tg__fmt_shape(sh, sizeof sh, n->out->ndim, n->out->shape);
        fprintf(f,
                "  t%p [shape=box, style=filled, fillcolor=\"%s\", "
                "label=\"%s%s%s\\n%s %s, %zu B\"];\n",
                (const void *)n->out, n->out == root ? "#b3d9ff" : "#d9ecff",
                n->out->name ? n->out->name : "", n->out->name ? ": " : "", tg__node_name(n),
                tg_dtype_name(n->out->dtype), sh, held_bytes(n));
        for (int j = 0; j < n->n_in; j++) {
            const tg_tensor *x = n->in[j];
            if (!x) continue;
            if (!tg__on_tape(c, x)) print_leaf(f, x, done, &ndone, edges);
            fprintf(f, "  t%p -> t%p [label=\"%d\"];\n", (const void *)x, (const void *)n->out,
                    j);
        }
    }
    fprintf(f, "}\n");
    tg__heap_free(c, mark, mark_bytes);
    tg__heap_free(c, done, done_bytes);
    return ferror(f) ? TG_ERR_IO : TG_OK;
}

tg_status tg_graph_dot_file(const tg_tensor *root, const char *path)
{
    if (!root || !path) return TG_ERR_INVALID;
    FILE *f = fopen(path, "w");
    if (!f) return TG_ERR_IO;
    tg_status st = tg_graph_dot(root, f);
    if (fclose(f) != 0 && st == TG_OK) st = TG_ERR_IO;
    return st;
}
