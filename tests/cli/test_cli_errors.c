/*
 * `clattn run` on bad files and bad command lines: each must fail with the
 * right exit status and one line on stderr that names the culprit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli_util.h"

#define F32_DICT(shape) "{'descr': '<f4', 'fortran_order': False, 'shape': " shape ", }"

/* A valid problem: Q [1,2,8,4], K and V [1,1,8,4], all float32 zeros. */
static char q_path[CLI_PATH_MAX], k_path[CLI_PATH_MAX];
static char v_path[CLI_PATH_MAX], o_path[CLI_PATH_MAX];
static unsigned char zeros[4096];

/* Runs clattn run with one input replaced by path; slot is 'q', 'k' or 'v'. */
static void expect_file_error(char slot, const char *path)
{
    const char *q = slot == 'q' ? path : q_path;
    const char *k = slot == 'k' ? path : k_path;
    const char *v = slot == 'v' ? path : v_path;
    const char *args[] = {"run", "-q", q, "-k", k, "-v", v, "-o", o_path, NULL};
    char what[CLI_PATH_MAX + 4];
    cli_result r = cli_run(args);

    snprintf(what, sizeof what, "%s: ", path);
    cli_assert_error(&r, 1, what);
    cli_result_free(&r);
}

static void expect_usage_error(const char *const *args, const char *command)
{
    char what[64];
    cli_result r = cli_run(args);

    snprintf(what, sizeof what, "%s", command);
    cli_assert_error(&r, 2, what);
    cli_result_free(&r);
}

/* A copy of the valid K file with its last cut bytes removed or extra appended. */
static const char *edited_k(const char *name, size_t cut, const char *extra)
{
    FILE *f = fopen(k_path, "rb");
    unsigned char bytes[1024];
    size_t len;

    assert_non_null(f);
    len = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    assert_true(len > cut && len + strlen(extra) <= sizeof bytes);
    len -= cut;
    memcpy(bytes + len, extra, strlen(extra));
    return cli_write_raw(name, bytes, len + strlen(extra));
}

static void test_missing_file(void **state)
{
    (void)state;
    expect_file_error('q', cli_path("does-not-exist.npy"));
}

static void test_empty_and_truncated(void **state)
{
    (void)state;
    expect_file_error('k', cli_write_raw("empty.npy", "", 0));
    expect_file_error('k', cli_write_raw("preamble.npy", "\x93NUMPY\x01", 7));
    expect_file_error('k', edited_k("short-header.npy", 128 + 30, ""));
    expect_file_error('k', edited_k("short-data.npy", 5, ""));
}

static void test_bad_magic_and_version(void **state)
{
    char bytes[128];

    (void)state;
    memset(bytes, ' ', sizeof bytes);
    memcpy(bytes, "\x89PNG\r\n\x1a\n", 8);
    expect_file_error('v', cli_write_raw("png.npy", bytes, sizeof bytes));
    memcpy(bytes, "\x93NUMPY\x07\x00", 8);
    expect_file_error('v', cli_write_raw("version.npy", bytes, sizeof bytes));
}

static void test_wrong_dtypes(void **state)
{
    const char *dicts[] = {
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 8, 4), }",
        "{'descr': '|f2', 'fortran_order': False, 'shape': (1, 1, 8, 4), }",
        "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 1, 8, 4), }",
        "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 8, 4), }",
        "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1, 1, 8, 4), }",
    };
    const size_t sizes[] = {256, 64, 128, 128, 128};

    (void)state;
    for (size_t i = 0; i < sizeof dicts / sizeof dicts[0]; i++) {
        char name[32];

        snprintf(name, sizeof name, "dtype%zu.npy", i);
        expect_file_error('k', cli_write_npy_text(name, dicts[i], zeros, sizes[i]));
    }
}

/* Q and K of different dtypes: the message names the odd one out. */
static void test_mixed_dtypes(void **state)
{
    (void)state;
    expect_file_error('k', cli_write_zeros("k16.npy", NPY_F16, 1, 1, 8, 4));
    expect_file_error('v', cli_write_zeros("v16.npy", NPY_F16, 1, 1, 8, 4));
}

static void test_fortran_order(void **state)
{
    const char *dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 1, 8, 4), }";

    (void)state;
    expect_file_error('k', cli_write_npy_text("fortran.npy", dict, zeros, 128));
}

static void test_wrong_rank(void **state)
{
    (void)state;
    expect_file_error('q',
                      cli_write_npy_text("rank3.npy", F32_DICT("(2, 8, 4)"), zeros, 256));
    expect_file_error(
        'q', cli_write_npy_text("rank5.npy", F32_DICT("(1, 1, 2, 8, 4)"), zeros, 256));
    expect_file_error('q', cli_write_npy_text("rank0.npy", F32_DICT("()"), zeros, 4));
}

static void test_zero_dimension(void **state)
{
    (void)state;
    expect_file_error('q',
                      cli_write_npy_text("zero.npy", F32_DICT("(1, 2, 0, 4)"), zeros, 0));
}

static void test_shapes_that_do_not_fit(void **state)
{
    (void)state;
    expect_file_error('k', cli_write_zeros("k-batch.npy", NPY_F32, 2, 1, 8, 4));
    expect_file_error('v', cli_write_zeros("v-batch.npy", NPY_F32, 2, 1, 8, 4));
    expect_file_error('v', cli_write_zeros("v-len.npy", NPY_F32, 1, 1, 7, 4));
    expect_file_error('k', cli_write_zeros("k-dim.npy", NPY_F32, 1, 1, 8, 5));
    expect_file_error('v', cli_write_zeros("v-heads.npy", NPY_F32, 1, 2, 8, 4));
}

/* Three key/value heads do not divide two query heads. */
static void test_heads_not_dividing(void **state)
{
    const char *k = cli_write_zeros("k3.npy", NPY_F32, 1, 3, 8, 4);
    const char *v = cli_write_zeros("v3.npy", NPY_F32, 1, 3, 8, 4);
    const char *args[] = {"run", "-q", q_path, "-k", k, "-v", v, "-o", o_path, NULL};
    char what[CLI_PATH_MAX + 4];
    cli_result r = cli_run(args);

    (void)state;
    snprintf(what, sizeof what, "%s: ", k);
    cli_assert_error(&r, 1, what);
    cli_result_free(&r);
}

static void test_absurd_sizes(void **state)
{
    const char *overflow = F32_DICT("(4294967296, 4294967296, 4294967296, 4294967296)");
    const char *too_big = F32_DICT("(1024, 1024, 1024, 1024)");
    const char *too_long = F32_DICT("(1, 1, 99999999999999999999999999, 4)");
    const char *not_int = F32_DICT("(1, 1, 2147483648, 1)");

    (void)state;
    expect_file_error('k', cli_write_npy_text("overflow.npy", overflow, zeros, 128));
    expect_file_error('k', cli_write_npy_text("too-big.npy", too_big, zeros, 128));
    expect_file_error('k', cli_write_npy_text("too-long.npy", too_long, zeros, 128));
    expect_file_error('k', cli_write_npy_text("not-int.npy", not_int, zeros, 128));
}

static void test_huge_header_length(void **state)
{
    unsigned char bytes[64] = "\x93NUMPY\x02\x00\xff\xff\xff\x7f{";

    (void)state;
    expect_file_error('k', cli_write_raw("huge-header.npy", bytes, sizeof bytes));
}

static void test_trailing_garbage(void **state)
{
    (void)state;
    expect_file_error('k', edited_k("trailing.npy", 0, "garbage"));
}

static void test_malformed_headers(void **state)
{
    const char *dicts[] = {
        "",
        "{",
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 8, 4), 'x': 1}",
        "{'descr': '<f4', 'fortran_order': Nope, 'shape': (1, 1, 8, 4), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 8, -4), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [1, 1, 8, 4], }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 8, 4), } junk",
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (32,), }",
        "{'descr: '<f4', 'fortran_order': False, 'shape': (1, 1, 8, 4), }",
        "{'descr': '<f4' 'fortran_order': False, 'shape': (1, 1, 8, 4), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1 1 8 4), }",
        "{'descr': '<\\x66\\x34', 'fortran_order': False, 'shape': (1, 1, 8, 4), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (128), }",
    };

    (void)state;
    for (size_t i = 0; i < sizeof dicts / sizeof dicts[0]; i++) {
        char name[32];

        snprintf(name, sizeof name, "header%zu.npy", i);
        expect_file_error('k', cli_write_npy_text(name, dicts[i], zeros, 128));
    }
}

/* A header full of control bytes still gives one line on stderr. */
static void test_control_bytes(void **state)
{
    const char *dict = "{'descr': '\x01\x1b[2J\x7f\xff', 'fortran_order': False, "
                       "'shape': (1, 1, 8, 4), }";

    (void)state;
    expect_file_error('k', cli_write_npy_text("control.npy", dict, zeros, 128));
}

static void test_unwritable_output(void **state)
{
    const char *o = cli_path("no-such-dir/o.npy");
    const char *args[] = {"run", "-q", q_path, "-k", k_path, "-v", v_path, "-o", o, NULL};
    char what[CLI_PATH_MAX + 4];
    cli_result r = cli_run(args);

    (void)state;
    snprintf(what, sizeof what, "%s: ", o);
    cli_assert_error(&r, 1, what);
    cli_result_free(&r);
}

static void test_bad_run_options(void **state)
{
    const char *unknown[] = {"run",  "-q", q_path, "-k",           k_path, "-v",
                             v_path, "-o", o_path, "--frobnicate", NULL};
    const char *no_o[] = {"run", "-q", q_path, "-k", k_path, "-v", v_path, NULL};
    const char *no_q[] = {"run", "-k", k_path, "-v", v_path, "-o", o_path, NULL};
    const char *no_value[] = {"run", "-k",   k_path, "-v", v_path,
                              "-o",  o_path, "-q",   NULL};
    const char *stray[] = {"run",  "-q", q_path, "-k",    k_path, "-v",
                           v_path, "-o", o_path, "extra", NULL};
    const char *values[][2] = {
        {"--window", "abc"},       {"--window", "3"},     {"--window", "1,-2"},
        {"--window", "1,2x"},      {"--variant", "foo"},  {"--layout", "bsdh"},
        {"--scale", "abc"},        {"--scale", "inf"},    {"--shape", "fpga"},
        {"--feature-map", "tanh"}, {"--feature-map", ""}, {"--variant", "Linear"},
    };

    (void)state;
    expect_usage_error(unknown, "run: ");
    expect_usage_error(no_o, "run: ");
    expect_usage_error(no_q, "run: ");
    expect_usage_error(no_value, "run: ");
    expect_usage_error(stray, "run: ");

    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        const char *args[] = {"run",  "-q", q_path, "-k",         k_path,       "-v",
                              v_path, "-o", o_path, values[i][0], values[i][1], NULL};

        expect_usage_error(args, "run: ");
    }
}

static void test_bad_commands(void **state)
{
    const char *none[] = {NULL};
    const char *unknown[] = {"frobnicate", NULL};
    const char *bench[][3] = {
        {"bench", "--dtype", "f64"},       {"bench", "--repeat", "0"},
        {"bench", "--heads", "-1"},        {"bench", "--q-len", "many"},
        {"bench", "--variant", "x"},       {"bench", "--window", ","},
        {"bench", "--feature-map", "elu"},
    };

    (void)state;
    expect_usage_error(none, "");
    expect_usage_error(unknown, "");
    for (size_t i = 0; i < sizeof bench / sizeof bench[0]; i++) {
        const char *args[] = {bench[i][0], bench[i][1], bench[i][2], NULL};

        expect_usage_error(args, "bench: ");
    }
}

/* The library refuses a head size above 256; its status name is printed. */
static void test_library_error(void **state)
{
    const char *q = cli_write_zeros("q-wide.npy", NPY_F32, 1, 1, 2, 300);
    const char *k = cli_write_zeros("k-wide.npy", NPY_F32, 1, 1, 2, 300);
    const char *v = cli_write_zeros("v-wide.npy", NPY_F32, 1, 1, 2, 300);
    const char *args[] = {"run", "-q", q, "-k", k, "-v", v, "-o", o_path, NULL};
    cli_result r = cli_run(args);

    (void)state;
    cli_assert_error(&r, 1, "INVALID_");
    cli_result_free(&r);
}

/* Runs linear attention with one more option, which the library must refuse. */
static void expect_linear_refusal(const char *option, const char *value,
                                  const char *field)
{
    const char *args[] = {"run", "-q",   q_path,      "-k",     k_path, "-v",  v_path,
                          "-o",  o_path, "--variant", "linear", option, value, NULL};
    cli_result r = cli_run(args);

    cli_assert_error(&r, 1, "UNSUPPORTED");
    if (strstr(r.err, field) == NULL)
        fail_msg("the message does not name %s: %s", field, r.err);
    cli_result_free(&r);
}

/* Linear attention has no log-sum-exp and no window. */
static void test_linear_refusals(void **state)
{
    (void)state;
    expect_linear_refusal("--lse", cli_path("lse.npy"), "want_lse");
    expect_linear_refusal("--window", "4,0", "window");
}

static int setup(void **state)
{
    if (cli_setup(state) != 0)
        return -1;
    snprintf(q_path, sizeof q_path, "%s", cli_write_zeros("q.npy", NPY_F32, 1, 2, 8, 4));
    snprintf(k_path, sizeof k_path, "%s", cli_write_zeros("k.npy", NPY_F32, 1, 1, 8, 4));
    snprintf(v_path, sizeof v_path, "%s", cli_write_zeros("v.npy", NPY_F32, 1, 1, 8, 4));
    snprintf(o_path, sizeof o_path, "%s", cli_path("o.npy"));
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_empty_and_truncated),
        cmocka_unit_test(test_bad_magic_and_version),
        cmocka_unit_test(test_wrong_dtypes),
        cmocka_unit_test(test_mixed_dtypes),
        cmocka_unit_test(test_fortran_order),
        cmocka_unit_test(test_wrong_rank),
        cmocka_unit_test(test_zero_dimension),
        cmocka_unit_test(test_shapes_that_do_not_fit),
        cmocka_unit_test(test_heads_not_dividing),
        cmocka_unit_test(test_absurd_sizes),
        cmocka_unit_test(test_huge_header_length),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_control_bytes),
        cmocka_unit_test(test_unwritable_output),
        cmocka_unit_test(test_bad_run_options),
        cmocka_unit_test(test_bad_commands),
        cmocka_unit_test(test_library_error),
        cmocka_unit_test(test_linear_refusals),
    };

    return cmocka_run_group_tests(tests, setup, cli_teardown);
}
