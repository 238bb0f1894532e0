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
        assert_non_null(strstr(r.out, "--variant auto|naive|tiled|window|linear"));
        assert_non_null(strstr(r.out, "--feature-map elu1|relu"));
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

static const char *const variant_names[] = {"naive", "tiled", "window", "linear"};

/* Checks one result line of a verified bench with --repeat 2, and counts its
 * variant in counts (indexed as variant_names). */
static void check_json_line(const char *line, int q_len, int *counts)
{
    size_t i;

    assert_true(line[0] == '{' && line[strlen(line) - 1] == '}');
    assert_true(json_number(line, "median_ms") > 0.0);
    assert_true(json_number(line, "gflops") > 0.0);
    assert_true(json_number(line, "gemm_gflops") > 0.0);
    assert_true(json_number(line, "peak_gflops") > 0.0);
    assert_true(json_number(line, "q_len") == q_len);
    assert_true(json_number(line, "q_heads") == 2.0);
    assert_true(json_number(line, "repeat") == 2.0);
    assert_non_null(strstr(line, "\"verified\": true"));

    /* One token is one query row of the batch. */
    assert_true(fabs(json_number(line, "ms_per_token") * json_number(line, "batch") *
                         q_len / json_number(line, "median_ms") -
                     1.0) < 1e-4);

    for (i = 0; i < 4; i++) {
        char quoted[64];

        snprintf(quoted, sizeof quoted, "\"variant\": \"%s\"", variant_names[i]);
        if (strstr(line, quoted) != NULL)
            break;
    }
    if (i == 4)
        fail_msg("unknown variant in: %s", line);
    counts[i]++;
}

/* Runs bench with args, checks its lines and counts them by variant. */
static void run_bench_json(const char *const *args, int q_len, int *counts)
{
    cli_result r = cli_run(args);
    char *save = NULL;

    if (r.status != 0)
        fail_msg("bench exited with %d: %s", r.status, r.err);
    for (char *line = strtok_r(r.out, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save))
        check_json_line(line, q_len, counts);
    cli_result_free(&r);
}

static void test_bench_json(void **state)
{
    const char *args[] = {"bench",    "--q-len", "64",     "--heads", "2",
                          "--repeat", "2",       "--json", NULL};
    int counts[4] = {0};

    (void)state;
    run_bench_json(args, 64, counts);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 1);
    assert_int_equal(counts[2], 0);
    assert_int_equal(counts[3], 0);
}

/* A window adds the window variant to those that run by default. */
static void test_bench_window(void **state)
{
    const char *args[] = {"bench", "--q-len",  "64", "--heads", "2", "--window",
                          "8,8",   "--repeat", "2",  "--json",  NULL};
    int counts[4] = {0};

    (void)state;
    run_bench_json(args, 64, counts);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 1);
    assert_int_equal(counts[2], 1);
    assert_int_equal(counts[3], 0);
}

/*
 * The FLOPs of causal linear attention as the README counts them, for
 * B=1, Hq=2, Hkv=1, Lq=100, Lk=150, D=Dv=64: building the states, applying
 * them, and the pairs inside each row's chunk of 64 keys, i' = i + 50.
 */
static double linear_flops(void)
{
    double pairs = 0.0;

    for (int i = 0; i < 100; i++)
        pairs += (i + 50) % 64 + 1;
    return 2.0 * 150 * 64 * 64 + 2.0 * 2 * 100 * 64 * 64 + 2.0 * 2 * 128 * pairs;
}

/* Linear runs only when asked for; it is verified against its own reference. */
static void test_bench_linear(void **state)
{
    const char *args[] = {
        "bench",         "--variant", "linear",   "--q-len",    "100",    "--kv-len",
        "150",           "--heads",   "2",        "--kv-heads", "1",      "--causal",
        "--feature-map", "relu",      "--repeat", "2",          "--json", NULL};
    cli_result r = cli_run(args);
    double flops;
    int counts[4] = {0};

    (void)state;
    if (r.status != 0)
        fail_msg("bench exited with %d: %s", r.status, r.err);
    assert_non_null(strstr(r.out, "\"feature_map\": \"relu\""));
    assert_true(strchr(r.out, '\n') == r.out + strlen(r.out) - 1);
    r.out[strlen(r.out) - 1] = '\0';
    check_json_line(r.out, 100, counts);
    assert_int_equal(counts[3], 1);

    flops = json_number(r.out, "gflops") * json_number(r.out, "median_ms") * 1e6;
    if (!(fabs(flops / linear_flops() - 1.0) < 1e-4))
        fail_msg("%g FLOPs counted, %g expected", flops, linear_flops());
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
        cmocka_unit_test(test_bench_unverified), cmocka_unit_test(test_bench_window),
        cmocka_unit_test(test_bench_linear),
    };

    return cmocka_run_group_tests(tests, cli_setup, cli_teardown);
}
