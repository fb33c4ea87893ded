/*
 * args.c - option parsing and small helpers of the tapegrad tool.
 *
 * Options are "--name value" or "--name=value". Numbers are parsed whole
 * (no trailing text, no overflow, within the option's range), so a typo
 * is a usage error naming the option, never a silently different run.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tapegrad %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_args_init(cli_args *a, const char *cmd, int argc, char **argv, int first)
{
    a->argc = argc;
    a->argv = argv;
    a->i = first;
    a->cmd = cmd;
    a->name = NULL;
    a->inline_value = NULL;
}

const char *cli_args_next(cli_args *a)
{
    static char name[64];
    a->name = NULL;
    a->inline_value = NULL;
    if (a->i >= a->argc) return NULL;
    const char *arg = a->argv[a->i++];
    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') return arg;
    const char *eq = strchr(arg, '=');
    if (eq == NULL) {
        a->name = arg;
        return arg;
    }
    size_t len = (size_t)(eq - arg);
    if (len >= sizeof name) len = sizeof name - 1;
    memcpy(name, arg, len);
    name[len] = '\0';
    a->name = name;
    a->inline_value = eq + 1;
    return name;
}

const char *cli_args_value(cli_args *a)
{
    if (a->inline_value != NULL) return a->inline_value;
    if (a->i >= a->argc) {
        cli_error(a->cmd, "%s needs a value", a->name);
        return NULL;
    }
    return a->argv[a->i++];
}

bool cli_str_int(const char *s, int64_t *out)
{
    if (s == NULL || *s == '\0') return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s) return false;
    *out = (int64_t)v;
    return true;
}

bool cli_str_double(const char *s, double *out)
{
    if (s == NULL || *s == '\0') return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno == ERANGE && fabs(v) > 1.0) return false; /* overflow; underflow is fine */
    if (*end != '\0' || end == s) return false;
    *out = v;
    return true;
}

bool cli_parse_int(const cli_args *a, const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t v;
    if (!cli_str_int(s, &v)) {
        cli_error(a->cmd, "%s: '%s' is not a whole number", a->name, s);
        return false;
    }
    if (v < lo || v > hi) {
        cli_error(a->cmd, "%s: %lld is out of range [%lld, %lld]", a->name, (long long)v,
                  (long long)lo, (long long)hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_double(const cli_args *a, const char *s, double lo, double hi, double *out)
{
    double v;
    if (!cli_str_double(s, &v) || !isfinite(v)) {
        cli_error(a->cmd, "%s: '%s' is not a finite number", a->name, s);
        return false;
    }
    if (v < lo || v > hi) {
        cli_error(a->cmd, "%s: %g is out of range [%g, %g]", a->name, v, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_choice(const cli_args *a, const char *s, const char *const *choices, int *out)
{
    for (int k = 0; choices[k] != NULL; k++) {
        if (strcmp(s, choices[k]) == 0) {
            *out = k;
            return true;
        }
    }
    char list[256] = "";
    for (int k = 0; choices[k] != NULL; k++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s", k ? ", " : "", choices[k]);
    }
    cli_error(a->cmd, "%s: unknown value '%s' (one of: %s)", a->name, s, list);
    return false;
}

void cli_fmt_double(char *buf, size_t n, double v)
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, n, "%.*g", digits, v);
        if (strtod(buf, NULL) == v || digits == 17) return;
    }
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
