/*
 * `clattn tune`: bad candidates discarded and reported, a tiny budget that
 * still ends with a result, --export, --dry-run and bad command lines. Each
 * test points CLATTN_TUNING_FILE at a scratch file of its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "clattn.h"
#include "cli_util.h"

/* Points the database of the commands the test runs at a fresh scratch file. */
static const char *use_database(const char *name)
{
    const char *path = cli_path(name);

    remove(path);
    assert_int_equal(setenv("CLATTN_TUNING_FILE", path, 1), 0);
    return path;
}

static void expect_text(const char *text, const char *want)
{
    if (strstr(text, want) == NULL)
        fail_msg("expected '%s' in:\n%s", want, text);
}

static char *read_text(const char *path)
{
    static char text[8192];
    FILE *f = fopen(path, "r");
    size_t n;

    assert_non_null(f);
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return text;
}

static double seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/*
 * A candidate the library refuses (block_q not a multiple of 8, or far over
 * the work-group limit) and one whose output is spoiled are each reported
 * on stderr and never chosen.
 */
static void test_bad_candidates(void **state)
{
    const char *file = use_database("bad.txt");
    const char *args[] = {"tune",
                          "--head-dim",
                          "64",
                          "--budget",
                          "120",
                          "--test-candidates",
                          "cpu:16x32,cpu:12x32,gpu:100000x16,cpu:8x32",
                          "--test-corrupt",
                          "cpu:8x32",
                          NULL};
    cli_result r = cli_run(args);

    (void)state;
    if (r.status != 0)
        fail_msg("status %d, stderr:\n%s", r.status, r.err);
    expect_text(r.err, "discarded cpu:12x32: plan creation failed: INVALID_ARGUMENT");
    expect_text(r.err, "discarded gpu:100000x16: plan creation failed");
    expect_text(r.err, "discarded cpu:8x32: wrong results");
    expect_text(r.err, "4/4: ");
    expect_text(r.out, "tiled f32 D=64 Dv=64: cpu:16x32, exhaustive search");
    expect_text(r.out, "1 of 4 candidates measured, 3 discarded");
    expect_text(read_text(file), "\ttiled\tf32\t64\t64\tcpu\t16\t32\t");
    cli_result_free(&r);
}

/* When every candidate fails, nothing is saved and the command fails. */
static void test_nothing_passes(void **state)
{
    const char *file = use_database("none.txt");
    const char *args[] = {"tune",     "--head-dim",     "64",       "--test-candidates",
                          "cpu:8x32", "--test-corrupt", "cpu:8x32", NULL};
    cli_result r = cli_run(args);

    (void)state;
    assert_int_equal(r.status, 1);
    expect_text(r.err, "discarded cpu:8x32: wrong results");
    expect_text(r.err, "no candidate passed the checks; nothing saved");
    assert_int_equal(access(file, F_OK), -1);
    cli_result_free(&r);
}

/* A one-second budget stops the search after its first candidate. */
static void test_tiny_budget(void **state)
{
    const char *file = use_database("budget.txt");
    const char *args[] = {"tune", "--head-dim", "64", "--budget", "1", NULL};
    double start = seconds();
    cli_result r = cli_run(args);
    double took = seconds() - start;

    (void)state;
    if (r.status != 0)
        fail_msg("status %d, stderr:\n%s", r.status, r.err);
    if (took > 30.0)
        fail_msg("a 1 s budget took %.1f s", took);
    expect_text(r.out, "guided search");
    expect_text(r.out, "the others not tried");
    expect_text(r.out, "saved to ");
    expect_text(read_text(file), "\ttiled\tf32\t64\t64\t");
    cli_result_free(&r);
}

static void save_entry(const char *file, int head_dim, const clattn_tuning *t)
{
    clattn_context_options options;
    clattn_context *ctx = NULL;
    clattn_desc d;

    clattn_context_options_init(&options);
    options.tuning_file = file;
    assert_int_equal(clattn_context_create(&ctx, &options), CLATTN_OK);
    clattn_desc_init(&d);
    d.variant = CLATTN_VARIANT_TILED;
    d.q_len = 1;
    d.head_dim = head_dim;
    assert_int_equal(clattn_tuning_save(ctx, &d, t, 100.0), CLATTN_OK);
    clattn_context_destroy(ctx);
}

/* --export prints a row of the built-in table for each tuned entry. */
static void test_export(void **state)
{
    const char *file = use_database("export.txt");
    const clattn_tuning t = {CLATTN_SHAPE_CPU, 24, 8};
    const char *args[] = {"tune", "--export", "--head-dim", "64,32", NULL};
    cli_result r;

    (void)state;
    save_entry(file, 64, &t);
    r = cli_run(args);
    if (r.status != 0)
        fail_msg("status %d, stderr:\n%s", r.status, r.err);
    expect_text(r.out, "/* tiled f32 D=64 Dv=64 */\n{\"");
    expect_text(r.out, "\", CL_DEVICE_TYPE_CPU, 0, {CLATTN_SHAPE_CPU, 24, 8}},\n");
    expect_text(r.err, "tiled f32 D=32 Dv=32: no tuned entry");
    cli_result_free(&r);

    use_database("export-empty.txt");
    r = cli_run(args);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    expect_text(r.err, "nothing to export");
    cli_result_free(&r);
}

/* The starting point --dry-run shows is the library's built-in one. */
static void test_dry_run(void **state)
{
    const char *file = use_database("dry.txt");
    const char *args[] = {"tune",    "--dry-run", "--head-dim", "64",
                          "--dtype", "f32,f16",   NULL};
    clattn_context *ctx = NULL;
    clattn_tuning builtin;
    clattn_desc d;
    char want[96];
    cli_result r = cli_run(args);

    (void)state;
    assert_int_equal(r.status, 0);
    assert_int_equal(clattn_context_create(&ctx, NULL), CLATTN_OK);
    clattn_desc_init(&d);
    d.head_dim = 64;
    assert_int_equal(clattn_tuning_lookup(ctx, &d, &builtin, NULL), CLATTN_OK);
    clattn_context_destroy(ctx);
    snprintf(want, sizeof want, "tiled f32 D=64 Dv=64: now cpu:%dx%d (built-in)",
             builtin.block_q, builtin.block_k);
    expect_text(r.out, want);
    snprintf(want, sizeof want, "tiled f16 D=64 Dv=64: now cpu:%dx%d (built-in)",
             builtin.block_q, builtin.block_k);
    expect_text(r.out, want);
    expect_text(r.out, " cpu:8x8 ");
    expect_text(r.out, "budget 300 s");
    assert_int_equal(access(file, F_OK), -1);
    cli_result_free(&r);
}

/* The naive variant's search starts at CLBlast's own parameters; it has
 * nothing for --export. */
static void test_naive_dry_run(void **state)
{
    const char *file = use_database("naive-dry.txt");
    const char *args[] = {"tune", "--variant", "naive", "--dry-run", NULL};
    const char *export_args[] = {"tune", "--variant", "naive", "--export", NULL};
    cli_result r = cli_run(args);

    (void)state;
    assert_int_equal(r.status, 0);
    expect_text(r.out, "naive GEMMs: now CLBlast's own");
    expect_text(r.out, "  xgemm 64x64x16 8x8 v8x8\n");
    expect_text(r.out, "  direct ");
    assert_int_equal(access(file, F_OK), -1);
    cli_result_free(&r);

    r = cli_run(export_args);
    cli_assert_error(&r, 2, "tune: --variant naive");
    cli_result_free(&r);
}

static void test_usage_errors(void **state)
{
    const char *const lines[][4] = {
        {"--head-dim", "0", NULL},
        {"--head-dim", "64,,128", NULL},
        {"--dtype", "f64", NULL},
        {"--variant", "auto", NULL},
        {"--budget", "0", NULL},
        {"--budget", "soon", NULL},
        {"--test-candidates", "cpu:16", NULL},
        {"--test-corrupt", "tpu:16x32", NULL},
        {"--frobnicate", NULL},
    };

    (void)state;
    use_database("usage.txt");
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        const char *args[6] = {"tune", lines[i][0], lines[i][1], NULL};
        cli_result r = cli_run(args);

        cli_assert_error(&r, 2, "tune: ");
        cli_result_free(&r);
    }
}

/* The test hooks stay out of the help. */
static void test_help(void **state)
{
    const char *args[] = {"tune", "--help", NULL};
    cli_result r = cli_run(args);

    (void)state;
    assert_int_equal(r.status, 0);
    expect_text(r.out, "clattn tune [options]");
    expect_text(r.out, "--budget SECONDS");
    expect_text(r.out, "CLATTN_TUNING_FILE");
    assert_null(strstr(r.out, "--test-"));
    cli_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_candidates), cmocka_unit_test(test_nothing_passes),
        cmocka_unit_test(test_tiny_budget),    cmocka_unit_test(test_export),
        cmocka_unit_test(test_dry_run),        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_help),           cmocka_unit_test(test_naive_dry_run),
    };

    return cmocka_run_group_tests_name("cli-tune", tests, cli_setup, cli_teardown);
}
