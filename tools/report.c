/*
 * report.c - what train and eval print at the end: scikit-learn's
 * classification report layout, the confusion matrix, the final
 * machine-readable line, and the SVG picture of the training curves.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* Classification report                                                  */
/* ---------------------------------------------------------------------- */

#define DIGITS 4

/* precision, recall, f1 of class k; 0 where a denominator is 0
 * (scikit-learn's zero_division default, without its warning). */
static void class_scores(const eval_result *r, int k, double *prec, double *rec, double *f1,
                         int64_t *support)
{
    int64_t tp = r->cm[k][k], pred = 0, sup = 0;
    for (int j = 0; j < FMNIST_CLASSES; j++) {
        pred += r->cm[j][k];
        sup += r->cm[k][j];
    }
    *prec = pred > 0 ? (double)tp / (double)pred : 0.0;
    *rec = sup > 0 ? (double)tp / (double)sup : 0.0;
    *f1 = *prec + *rec > 0.0 ? 2.0 * *prec * *rec / (*prec + *rec) : 0.0;
    *support = sup;
}

/* scikit-learn: width = max(longest name, len("weighted avg"), digits);
 * header "{:>width} " + " {:>9}" * 4; rows "{:>width} " + " {:>9.4f}" * 3
 * + " {:>9}"; the accuracy row leaves precision and recall blank. */
void report_classification(FILE *f, const eval_result *r)
{
    int width = (int)strlen("weighted avg");
    for (int k = 0; k < FMNIST_CLASSES; k++) {
        int len = (int)strlen(fmnist_class_names[k]);
        if (len > width) width = len;
    }
    fprintf(f, "%*s  %9s %9s %9s %9s\n\n", width, "", "precision", "recall", "f1-score",
            "support");
    double macro[3] = {0, 0, 0}, weighted[3] = {0, 0, 0};
    int64_t total = 0;
    for (int k = 0; k < FMNIST_CLASSES; k++) {
        double p, rc, f1;
        int64_t sup;
        class_scores(r, k, &p, &rc, &f1, &sup);
        fprintf(f, "%*s  %9.*f %9.*f %9.*f %9lld\n", width, fmnist_class_names[k], DIGITS, p,
                DIGITS, rc, DIGITS, f1, (long long)sup);
        macro[0] += p / FMNIST_CLASSES;
        macro[1] += rc / FMNIST_CLASSES;
        macro[2] += f1 / FMNIST_CLASSES;
        weighted[0] += p * (double)sup;
        weighted[1] += rc * (double)sup;
        weighted[2] += f1 * (double)sup;
        total += sup;
    }
    for (int i = 0; i < 3; i++) weighted[i] = total > 0 ? weighted[i] / (double)total : 0.0;
    double acc = r->n > 0 ? (double)r->correct / (double)r->n : 0.0;
    fprintf(f, "\n%*s  %9s %9s %9.*f %9lld\n", width, "accuracy", "", "", DIGITS, acc,
            (long long)total);
    fprintf(f, "%*s  %9.*f %9.*f %9.*f %9lld\n", width, "macro avg", DIGITS, macro[0], DIGITS,
            macro[1], DIGITS, macro[2], (long long)total);
    fprintf(f, "%*s  %9.*f %9.*f %9.*f %9lld\n", width, "weighted avg", DIGITS, weighted[0],
            DIGITS, weighted[1], DIGITS, weighted[2], (long long)total);
}

void report_confusion(FILE *f, const eval_result *r)
{
    fprintf(f, "confusion matrix (rows: true class, columns: predicted class):\n");
    fprintf(f, "%15s", "");
    for (int j = 0; j < FMNIST_CLASSES; j++) fprintf(f, " %5d", j);
    fputc('\n', f);
    for (int k = 0; k < FMNIST_CLASSES; k++) {
        fprintf(f, "%2d %-12s", k, fmnist_class_names[k]);
        for (int j = 0; j < FMNIST_CLASSES; j++) fprintf(f, " %5lld", (long long)r->cm[k][j]);
        fputc('\n', f);
    }
}

static double accuracy(const eval_result *r)
{
    return r->n > 0 ? (double)r->correct / (double)r->n : 0.0;
}

void report_all(FILE *f, const eval_result *r)
{
    fprintf(f, "\ntest accuracy: %.4f (%lld of %lld), test loss: %.4f\n\n", accuracy(r),
            (long long)r->correct, (long long)r->n, r->loss);
    report_classification(f, r);
    fputc('\n', f);
    report_confusion(f, r);
}

void report_final_line(FILE *f, const eval_result *r)
{
    fprintf(f, "test_accuracy=%.4f\n", accuracy(r));
}

/* ---------------------------------------------------------------------- */
/* SVG curves                                                             */
/* ---------------------------------------------------------------------- */

/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about n
 * ticks over span. */
static double nice_step(double span, int n)
{
    double raw = span / n;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * mag;
}

typedef struct {
    double x0, y0, w, h;        /* the plot area in pixels */
    double xmin, xmax, ymin, ymax;
} panel;

static double px(const panel *p, double x)
{
    return p->x0 + (x - p->xmin) / (p->xmax - p->xmin) * p->w;
}

static double py(const panel *p, double y)
{
    return p->y0 + p->h - (y - p->ymin) / (p->ymax - p->ymin) * p->h;
}

/* The series i of the history: 0 train loss, 1 test loss, 2 train acc,
 * 3 test acc. */
static double series(const epoch_stats *e, int i)
{
    switch (i) {
    case 0: return e->train_loss;
    case 1: return e->test_loss;
    case 2: return e->train_acc;
    default: return e->test_acc;
    }
}

static void draw_panel(FILE *f, panel *p, const char *title, const char *ylabel,
                       const epoch_stats *h, int n, int first_series, bool is_acc)
{
    static const char *const colors[2] = {"#1f77b4", "#d62728"};
    static const char *const names[2] = {"train", "test"};

    /* y range from the data, padded, on nice ticks. */
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        for (int s = 0; s < 2; s++) {
            double v = series(&h[i], first_series + s);
            if (!isfinite(v)) continue;
            lo = fmin(lo, v);
            hi = fmax(hi, v);
        }
    }
    if (!isfinite(lo)) lo = 0.0, hi = 1.0;
    if (hi - lo < 1e-3) lo -= 0.01, hi += 0.01;
    double pad = 0.08 * (hi - lo);
    lo -= pad;
    hi += pad;
    if (is_acc) hi = fmin(hi, 1.0);
    if (!is_acc || lo < 0.0) lo = fmax(lo, 0.0);
    double ystep = nice_step(hi - lo, 5);
    p->ymin = floor(lo / ystep) * ystep;
    p->ymax = ceil(hi / ystep) * ystep;
    if (p->ymax <= p->ymin) p->ymax = p->ymin + ystep;
    p->xmin = n > 1 ? 1.0 : 0.5;
    p->xmax = n > 1 ? (double)n : 1.5;

    fprintf(f, "<g>\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"15\" "
               "font-weight=\"bold\">%s</text>\n",
            p->x0 + p->w / 2, p->y0 - 12, title);
    /* grid and y ticks */
    for (double t = p->ymin; t <= p->ymax + ystep / 2; t += ystep) {
        double y = py(p, t);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n",
                p->x0, y, p->x0 + p->w, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%.*f</text>\n",
                p->x0 - 6, y + 4, ystep < 0.01 ? 3 : ystep < 0.1 ? 2 : 1, t);
    }
    /* x ticks: epochs */
    double xstep = n > 1 ? fmax(1.0, nice_step((double)(n - 1), 8)) : 1.0;
    for (double t = 1.0; t <= (double)n + 1e-9; t += xstep) {
        double x = px(p, t);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\"/>\n", x,
                p->y0 + p->h, x, p->y0 + p->h + 5);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%g</text>\n",
                x, p->y0 + p->h + 18, t);
    }
    /* axes */
    fprintf(f, "<polyline points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f\" fill=\"none\" stroke=\"#000\"/>\n",
            p->x0, p->y0, p->x0, p->y0 + p->h, p->x0 + p->w, p->y0 + p->h);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">epoch</text>\n",
            p->x0 + p->w / 2, p->y0 + p->h + 36);
    fprintf(f, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\" "
               "font-size=\"12\">%s</text>\n",
            p->x0 - 46, p->y0 + p->h / 2, ylabel);
    /* the two series: a line and a dot per epoch */
    for (int s = 0; s < 2; s++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colors[s]);
        for (int i = 0; i < n; i++) {
            double v = series(&h[i], first_series + s);
            if (isfinite(v)) fprintf(f, "%s%.1f,%.1f", i ? " " : "", px(p, i + 1.0), py(p, v));
        }
        fprintf(f, "\"/>\n");
        for (int i = 0; i < n; i++) {
            double v = series(&h[i], first_series + s);
            if (isfinite(v))
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                        px(p, i + 1.0), py(p, v), colors[s]);
        }
    }
    /* legend inside the plot, right, away from the curves: loss falls,
     * accuracy rises */
    double lx = p->x0 + p->w - 110, ly = is_acc ? p->y0 + p->h - 56 : p->y0 + 10;
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"100\" height=\"46\" fill=\"#fff\" "
               "fill-opacity=\"0.85\" stroke=\"#999\"/>\n",
            lx, ly);
    for (int s = 0; s < 2; s++) {
        double yy = ly + 16 + 18 * s;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                   "stroke-width=\"2\"/>\n",
                lx + 8, yy - 4, lx + 32, yy - 4, colors[s]);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n", lx + 38, yy,
                names[s]);
    }
    fprintf(f, "</g>\n");
}

/* Writes s with XML's five special characters escaped. */
static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fputc(*s, f);
        }
    }
}

bool report_svg(const char *path, const char *cmd, const char *title, const char *subtitle,
                const epoch_stats *h, int n)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        cli_error(cmd, "cannot write %s: %s", path, strerror(errno));
        return false;
    }
    const int W = 960, H = 440;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n"
               "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">",
            W, H, W, H, W / 2);
    xml_text(f, title);
    fprintf(f, "</text>\n<text x=\"%d\" y=\"44\" text-anchor=\"middle\" font-size=\"12\" "
               "fill=\"#444\">",
            W / 2);
    xml_text(f, subtitle);
    fprintf(f, "</text>\n");
    panel loss = {.x0 = 80, .y0 = 82, .w = 360, .h = 296};
    panel acc = {.x0 = 80 + 480, .y0 = 82, .w = 360, .h = 296};
    draw_panel(f, &loss, "Loss", "cross-entropy loss", h, n, 0, false);
    draw_panel(f, &acc, "Accuracy", "accuracy", h, n, 2, true);
    fprintf(f, "</svg>\n");
    bool ok = !ferror(f);
    if (fclose(f) != 0) ok = false;
    if (!ok) cli_error(cmd, "cannot write %s: %s", path, strerror(errno));
    return ok;
}
