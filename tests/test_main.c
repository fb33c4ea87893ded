/*
 * test_main.c - the one Check runner: the list of suites and main().
 *
 *   test_main              runs every suite
 *   test_main ops tensor   runs the named suites only (meson registers one
 *                          test per suite this way)
 *   test_main --list       prints the suite names
 *
 * Check's environment variables work as usual: CK_FORK=no runs the tests
 * in-process (for gdb and valgrind), CK_RUN_CASE=<tcase> and
 * CK_RUN_SUITE=<suite> narrow a run further, CK_VERBOSITY=verbose prints
 * every test, CK_DEFAULT_TIMEOUT and CK_TIMEOUT_MULTIPLIER scale timeouts.
 *
 * Adding a suite: write tests/test_<name>.c exporting Suite *<name>_suite(void),
 * add one X(<name>) line below and its name to test_suites in
 * tests/meson.build (libuv's test-list.h does the same).
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_SUITES(X) \
    X(ctx)             \
    X(arena)           \
    X(tensor)          \
    X(ops)             \
    X(autograd)        \
    X(accum)           \
    X(recycle)         \
    X(release)         \
    X(gradcheck)       \
    X(opgrad)          \
    X(errors)          \
    X(alloc)           \
    X(threads)         \
    X(seed)            \
    X(math)            \
    X(reduce)          \
    X(index)           \
    X(conv)            \
    X(nn)              \
    X(loss)            \
    X(custom)          \
    X(graph)           \
    X(golden)          \
    X(optim)           \
    X(io)              \
    X(layers)          \
    X(rnn)             \
    X(data)            \
    X(checkpoint)      \
    X(crashsafe)       \
    X(determinism)     \
    X(hostile)         \
    X(dist)            \
    X(fastpaths)

#define TEST_DECLARE(name) Suite *name##_suite(void);
TEST_SUITES(TEST_DECLARE)
#undef TEST_DECLARE

typedef struct {
    const char *name;
    Suite *(*make)(void);
} test_entry;

#define TEST_ENTRY(name) {#name, name##_suite},
static const test_entry test_list[] = {TEST_SUITES(TEST_ENTRY)};
#undef TEST_ENTRY

#define TEST_COUNT ((int)(sizeof test_list / sizeof test_list[0]))

static const test_entry *find_suite(const char *name)
{
    for (int i = 0; i < TEST_COUNT; i++) {
        if (strcmp(test_list[i].name, name) == 0) return &test_list[i];
    }
    return NULL;
}

static void usage(FILE *f, const char *argv0)
{
    fprintf(f, "usage: %s [--list | SUITE...]\nsuites:", argv0);
    for (int i = 0; i < TEST_COUNT; i++) fprintf(f, " %s", test_list[i].name);
    fputc('\n', f);
}

/* Builds a suite, failing the run (not crashing) if the suite returns NULL. */
static Suite *make_suite(const test_entry *e)
{
    Suite *s = e->make();
    if (s == NULL) fprintf(stderr, "test_main: %s_suite() returned NULL\n", e->name);
    return s;
}

int main(int argc, char **argv)
{
    const char *argv0 = argc > 0 ? argv[0] : "test_main";
    const test_entry *chosen[sizeof test_list / sizeof test_list[0]];
    int n = 0;

    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < TEST_COUNT; i++) printf("%s\n", test_list[i].name);
        return EXIT_SUCCESS;
    }
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout, argv0);
        return EXIT_SUCCESS;
    }
    if (argc <= 1) {
        for (int i = 0; i < TEST_COUNT; i++) chosen[n++] = &test_list[i];
    } else {
        for (int a = 1; a < argc; a++) {
            const test_entry *e = find_suite(argv[a]);
            if (e == NULL) {
                fprintf(stderr, "test_main: unknown suite '%s'\n", argv[a]);
                usage(stderr, argv0);
                return 2;
            }
            bool dup = false;
            for (int i = 0; i < n; i++) dup = dup || chosen[i] == e;
            if (!dup && n < TEST_COUNT) chosen[n++] = e;
        }
    }

    SRunner *sr = NULL;
    for (int i = 0; i < n; i++) {
        Suite *s = make_suite(chosen[i]);
        if (s == NULL) {
            if (sr != NULL) srunner_free(sr);
            return EXIT_FAILURE;
        }
        if (sr == NULL) sr = srunner_create(s);
        else srunner_add_suite(sr, s);
    }

    /* CK_ENV: CK_NORMAL unless CK_VERBOSITY says otherwise. The fork mode
     * is left to Check, which forks unless CK_FORK=no. */
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
