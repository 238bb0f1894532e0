/*
 * The commands of clattn other than run: devices, help, version and a small
 * bench whose JSON lines are parsed.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clattn.h"
#include "cli_util.h"

static void test_devices(void **state)
{
    const char *args[] = {"devices", NULL};
    cli_result r = cli_run(args);

    (void)state;
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    assert_true(strncmp(r.out, "0: ", 3) == 0);
    assert_non_null(strstr(r.out, "compute units"));
    assert_non_null(strstr(r.out, "fp16 arithmetic"));
    cli_result_free(&r);
}

static void test_help(void **state)
{
    const char *forms[][2] = {{"--help", NULL}, {"help", NULL}, {"-h", NULL}};
    const char *run_help[] = {"run", "--help", NULL};

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        cli_result r = cli_run(forms[i]);

        assert_int_equal(r.status, 0);
        assert_true(strncmp(r.out, "usage: clattn", 13) == 0);
        assert_non_null(strstr(r.out, "--window LEFT,RIGHT"));
        cli_result_free(&r);
    }

    cli_result r = cli_run(run_help);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "usage: clattn", 13) == 0);
    cli_result_free(&r);
}

static void test_version(void **state)
{
    const char *args[] = {"--version", NULL};
    char want[64];
    cli_result r = cli_run(args);

    (void)state;
    snprintf(want, sizeof want, "clattn %s\n", clattn_version());
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, want);
    cli_result_free(&r);
}

/* The number after "key": in one JSON line, or NaN when absent or not a number. */
static double json_number(const char *line, const char *key)
{
    char quoted[64];
    const char *at;
    char *end;
    double value;

    snprintf(quoted, sizeof quoted, "\"%s\": ", key);
    at = strstr(line, quoted);
    if (at == NULL)
        return NAN;
    value = strtod(at + strlen(quoted), &end);
    return end == at + strlen(quoted) ? NAN : value;
}

static void check_json_line(const char *line, int *naive, int *tiled)
{
    assert_true(line[0] == '{' && line[strlen(line) - 1] == '}');
    assert_true(json_number(line, "median_ms") > 0.0);
    assert_true(json_number(line, "gflops") > 0.0);
    assert_true(json_number(line, "gemm_gflops") > 0.0);
    assert_true(json_number(line, "peak_gflops") > 0.0);
    assert_true(json_number(line, "q_len") == 64.0);
    assert_true(json_number(line, "q_heads") == 2.0);
    assert_true(json_number(line, "repeat") == 2.0);
    assert_non_null(strstr(line, "\"verified\": true"));

    if (strstr(line, "\"variant\": \"naive\"") != NULL)
        (*naive)++;
    else if (strstr(line, "\"variant\": \"tiled\"") != NULL)
        (*tiled)++;
    else
        fail_msg("unknown variant in: %s", line);
}

static void test_bench_json(void **state)
{
    const char *args[] = {"bench",    "--q-len", "64",     "--heads", "2",
                          "--repeat", "2",       "--json", NULL};
    cli_result r = cli_run(args);
    int naive = 0, tiled = 0;
    char *save = NULL;

    (void)state;
    if (r.status != 0)
        fail_msg("bench exited with %d: %s", r.status, r.err);

    for (char *line = strtok_r(r.out, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save))
        check_json_line(line, &naive, &tiled);
    assert_int_equal(naive, 1);
    assert_int_equal(tiled, 1);
    cli_result_free(&r);
}

/* A shape beyond the reference's reach is timed but said not to be verified. */
static void test_bench_unverified(void **state)
{
    const char *args[] = {"bench",   "--variant", "tiled",    "--q-len", "8192",
                          "--heads", "1",         "--repeat", "1",       NULL};
    cli_result r = cli_run(args);

    (void)state;
    if (r.status != 0)
        fail_msg("bench exited with %d: %s", r.status, r.err);
    assert_non_null(strstr(r.out, "not verified: too large for the reference"));
    assert_non_null(strstr(r.out, "tiled"));
    cli_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_devices),          cmocka_unit_test(test_help),
        cmocka_unit_test(test_version),          cmocka_unit_test(test_bench_json),
        cmocka_unit_test(test_bench_unverified),
    };

    return cmocka_run_group_tests(tests, cli_setup, cli_teardown);
}
