/*
 * `clattn run` on good inputs: the problem module's inputs go out as .npy
 * files, and what comes back must match its float64 reference.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cli_util.h"
#include "problem.h"

static uint64_t seed;

typedef struct run_case {
    const char *variant; /* NULL: leave the option out */
    const char *shape;   /* NULL: leave the option out */
    int explicit_scale;
    const char *feature_map; /* NULL: leave the option out */
} run_case;

static void shape_of(const clattn_desc *d, int heads, int len, int dim, size_t *shape)
{
    shape[0] = (size_t)d->batch;
    shape[1] = (size_t)(d->layout == CLATTN_LAYOUT_BSHD ? len : heads);
    shape[2] = (size_t)(d->layout == CLATTN_LAYOUT_BSHD ? heads : len);
    shape[3] = (size_t)dim;
}

/* Paths of the scratch files, fixed by the group setup. */
static char q_path[CLI_PATH_MAX], k_path[CLI_PATH_MAX], v_path[CLI_PATH_MAX];
static char o_path[CLI_PATH_MAX], lse_path[CLI_PATH_MAX];

static void save(const char *path, const clattn_desc *d, int heads, int len, int dim,
                 void *data)
{
    npy_array a;
    char err[NPY_ERROR_SIZE];

    memset(&a, 0, sizeof a);
    a.dtype = d->dtype == CLATTN_F16 ? NPY_F16 : NPY_F32;
    a.rank = 4;
    shape_of(d, heads, len, dim, a.shape);
    a.count = a.shape[0] * a.shape[1] * a.shape[2] * a.shape[3];
    a.bytes = a.count * npy_dtype_size(a.dtype);
    a.data = data;
    if (npy_write(path, &a, err, sizeof err) != 0)
        fail_msg("writing %s: %s", path, err);
}

/* Checks O, and the log-sum-exp when lse_path is not NULL. */
static void check_output(const problem *p, const char *o_path, const char *lse_path)
{
    const clattn_desc *d = &p->desc;
    npy_array o, lse;
    size_t shape[4];
    char err[NPY_ERROR_SIZE];
    double error;

    if (npy_read(o_path, &o, err, sizeof err) != 0)
        fail_msg("reading O: %s", err);
    shape_of(d, d->q_heads, d->q_len, d->v_head_dim, shape);
    assert_int_equal(o.rank, 4);
    assert_memory_equal(o.shape, shape, sizeof shape);
    assert_int_equal(o.dtype, d->dtype == CLATTN_F16 ? NPY_F16 : NPY_F32);
    error = problem_output_error(p, o.data);
    npy_free(&o);
    if (!(error <= problem_tolerance(p)))
        fail_msg("output error %g exceeds %g (seed %llu)", error, problem_tolerance(p),
                 (unsigned long long)seed);

    if (lse_path == NULL)
        return;
    if (npy_read(lse_path, &lse, err, sizeof err) != 0)
        fail_msg("reading LSE: %s", err);
    assert_int_equal(lse.rank, 3);
    assert_int_equal(lse.dtype, NPY_F32);
    assert_int_equal(lse.count, p->lse_count);
    error = problem_lse_error(p, lse.data);
    npy_free(&lse);
    if (!(error <= problem_tolerance(p)))
        fail_msg("lse error %g exceeds %g (seed %llu)", error, problem_tolerance(p),
                 (unsigned long long)seed);
}

static void add_args(const char **args, int *n, const char *a, const char *b)
{
    args[(*n)++] = a;
    if (b != NULL)
        args[(*n)++] = b;
}

/* Runs one problem; linear attention has no log-sum-exp to ask for. */
static void run_one(const clattn_desc *desc, const run_case *c)
{
    const int lse = desc->variant != CLATTN_VARIANT_LINEAR;
    const char *args[32] = {"run",
                            "-q",
                            q_path,
                            "-k",
                            k_path,
                            "-v",
                            v_path,
                            "-o",
                            o_path,
                            "--layout",
                            desc->layout == CLATTN_LAYOUT_BSHD ? "bshd" : "bhsd"};
    char window[64], scale[64];
    int n = 11;
    problem p;
    cli_result r;

    memset(&p, 0, sizeof p);
    assert_int_equal(problem_init(&p, desc, seed), 0);
    save(q_path, desc, desc->q_heads, desc->q_len, desc->head_dim, p.q);
    save(k_path, desc, desc->kv_heads, desc->kv_len, desc->head_dim, p.k);
    save(v_path, desc, desc->kv_heads, desc->kv_len, desc->v_head_dim, p.v);

    if (lse)
        add_args(args, &n, "--lse", lse_path);
    if (c->variant != NULL)
        add_args(args, &n, "--variant", c->variant);
    if (c->feature_map != NULL)
        add_args(args, &n, "--feature-map", c->feature_map);
    if (c->shape != NULL)
        add_args(args, &n, "--shape", c->shape);
    if (desc->causal)
        add_args(args, &n, "--causal", NULL);
    if (desc->window_left >= 0 || desc->window_right >= 0) {
        snprintf(window, sizeof window, "%d,%d", desc->window_left, desc->window_right);
        add_args(args, &n, "--window", window);
    }
    if (c->explicit_scale) {
        snprintf(scale, sizeof scale, "%.9g", (double)p.desc.scale);
        add_args(args, &n, "--scale", scale);
    }
    args[n] = NULL;

    r = cli_run(args);
    if (r.status != 0 || r.err[0] != '\0')
        fail_msg("clattn run exited with %d: %s", r.status, r.err);
    cli_result_free(&r);

    check_output(&p, o_path, lse ? lse_path : NULL);
    problem_free(&p);
}

static clattn_desc base_desc(clattn_dtype dtype, clattn_layout layout)
{
    clattn_desc d;

    clattn_desc_init(&d);
    d.batch = 2;
    d.q_heads = 4;
    d.kv_heads = 2;
    d.q_len = 37;
    d.kv_len = 53;
    d.head_dim = 24;
    d.v_head_dim = 40;
    d.dtype = dtype;
    d.layout = layout;
    return d;
}

/* Every variant on both layouts and dtypes, with a causal mask and GQA. */
static void test_variants_layouts_dtypes(void **state)
{
    const char *variants[] = {"naive", "tiled"};
    const run_case plain = {NULL, NULL, 0, NULL};

    (void)state;
    for (int v = 0; v < 2; v++) {
        for (int layout = 0; layout < 2; layout++) {
            for (int dtype = 0; dtype < 2; dtype++) {
                clattn_desc d = base_desc((clattn_dtype)dtype, (clattn_layout)layout);
                run_case c = plain;

                d.causal = 1;
                c.variant = variants[v];
                run_one(&d, &c);
            }
        }
    }
}

/* A sliding window, an explicit scale, and the automatic variant. */
static void test_window_scale_auto(void **state)
{
    clattn_desc d = base_desc(CLATTN_F32, CLATTN_LAYOUT_BSHD);
    run_case c = {"auto", NULL, 1, NULL};

    (void)state;
    d.kv_heads = 1;
    d.window_left = 7;
    d.window_right = 2;
    d.scale = 0.3f;
    run_one(&d, &c);
}

/* More queries than keys: rows that see no key give zeros and -inf. */
static void test_empty_rows(void **state)
{
    const char *variants[] = {"naive", "tiled"};

    (void)state;
    for (int v = 0; v < 2; v++) {
        clattn_desc d = base_desc(CLATTN_F16, CLATTN_LAYOUT_BHSD);
        run_case c = {variants[v], NULL, 0, NULL};

        d.q_len = 30;
        d.kv_len = 11;
        d.causal = 1;
        run_one(&d, &c);
    }
}

/* Both kernel shapes of the tiled variant run on any device. */
static void test_kernel_shapes(void **state)
{
    const char *shapes[] = {"cpu", "gpu"};

    (void)state;
    for (int s = 0; s < 2; s++) {
        clattn_desc d = base_desc(CLATTN_F32, CLATTN_LAYOUT_BHSD);
        run_case c = {"tiled", shapes[s], 0, NULL};

        d.q_len = d.kv_len = 67;
        run_one(&d, &c);
    }
}

/* The window variant on both kernel shapes, dtypes and layouts. */
static void test_window_variant(void **state)
{
    const char *shapes[] = {"cpu", "gpu"};

    (void)state;
    for (int s = 0; s < 2; s++) {
        clattn_desc d = base_desc((clattn_dtype)s, (clattn_layout)s);
        run_case c = {"window", shapes[s], 0, NULL};

        d.causal = s;
        d.window_left = 9;
        d.window_right = s == 0 ? 4 : -1;
        run_one(&d, &c);
    }
}

/*
 * Linear attention with each feature map, the default one left implicit once,
 * against the reference of linear attention (desc.variant selects it).
 */
static void test_linear_variant(void **state)
{
    const char *maps[] = {NULL, "relu", "elu1"};

    (void)state;
    for (int m = 0; m < 3; m++) {
        clattn_desc d = base_desc(m == 1 ? CLATTN_F16 : CLATTN_F32,
                                  m == 2 ? CLATTN_LAYOUT_BSHD : CLATTN_LAYOUT_BHSD);
        run_case c = {"linear", NULL, 0, maps[m]};

        d.variant = CLATTN_VARIANT_LINEAR;
        d.feature_map = m == 1 ? CLATTN_FEATURE_RELU : CLATTN_FEATURE_ELU1;
        d.causal = m != 2;
        run_one(&d, &c);
    }
}

static int setup(void **state)
{
    if (cli_setup(state) != 0)
        return -1;
    snprintf(q_path, sizeof q_path, "%s", cli_path("q.npy"));
    snprintf(k_path, sizeof k_path, "%s", cli_path("k.npy"));
    snprintf(v_path, sizeof v_path, "%s", cli_path("v.npy"));
    snprintf(o_path, sizeof o_path, "%s", cli_path("o.npy"));
    snprintf(lse_path, sizeof lse_path, "%s", cli_path("lse.npy"));

    seed = problem_seed_from_env();
    printf("CLATTN_TEST_SEED=%llu\n", (unsigned long long)seed);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variants_layouts_dtypes),
        cmocka_unit_test(test_window_scale_auto),
        cmocka_unit_test(test_empty_rows),
        cmocka_unit_test(test_kernel_shapes),
        cmocka_unit_test(test_window_variant),
        cmocka_unit_test(test_linear_variant),
    };

    return cmocka_run_group_tests(tests, setup, cli_teardown);
}
