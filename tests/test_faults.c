/*
 * Faults from OpenCL, injected through CLATTN_FAULT (lib/fault.c), and the
 * accounting of what clattn holds. For each kind of call and each problem,
 * the Nth call fails for N = 1, 2, ... until N passes the calls that a plan
 * and a run make: every failure must give the right status and a message,
 * leave the context usable, and release every buffer and every OpenCL object
 * that was made on the way.
 *
 * Buffers are counted by the library (destructor callbacks on every buffer
 * it makes). Programs and kernels have no such callback in OpenCL 1.2, so
 * the tests wrap the harness's cl_context and check its reference count
 * after the wrapping context is gone: PoCL, like most drivers, keeps a
 * reference to the cl_context in every buffer, program and event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

#define MAX_FAULTS 64

static const char *const kinds[] = {"alloc", "build", "enqueue"};

static int injected[3], survived[3];

static cl_uint context_refs(void)
{
    cl_context cl_ctx = clattn_context_cl_context(harness_ctx);
    cl_uint refs = 0;

    clGetContextInfo(cl_ctx, CL_CONTEXT_REFERENCE_COUNT, sizeof(refs), &refs, NULL);
    return refs;
}

/* A context on the harness's OpenCL objects that reads spec at creation. */
static clattn_context *faulty_context(const char *spec, int disk_cache)
{
    clattn_context_options options;
    clattn_context *ctx = NULL;

    clattn_context_options_init(&options);
    options.disable_disk_cache = !disk_cache;
    assert_int_equal(setenv("CLATTN_FAULT", spec, 1), 0);
    EXPECT_OK(NULL, clattn_context_wrap(&ctx, clattn_context_cl_context(harness_ctx),
                                        clattn_context_device(harness_ctx),
                                        clattn_context_queue(harness_ctx), &options));
    unsetenv("CLATTN_FAULT");
    return ctx;
}

static int status_fits(int kind, clattn_status status)
{
    if (kind == CLATTN_FAULT_BUILD)
        return status == CLATTN_BUILD_FAILED;
    if (kind == CLATTN_FAULT_ENQUEUE && status == CLATTN_BLAS_ERROR)
        return 1;
    return status == CLATTN_DEVICE_MEMORY;
}

/* A plan and a run with call n of kind failing; 0 when no call failed. */
static int one_fault(const problem *p, int kind, int n)
{
    const long buffers = clattn__live_buffers();
    const cl_uint refs = context_refs();
    void *o = malloc(p->o_count * p->elem_size);
    float *lse = malloc(p->lse_count * sizeof(float));
    clattn_plan *plan = NULL;
    clattn_context *ctx;
    clattn_status status;
    char spec[32];

    assert_non_null(o);
    assert_non_null(lse);
    snprintf(spec, sizeof(spec), "%s:%d", kinds[kind], n);
    ctx = faulty_context(spec, 0);
    status = clattn_plan_create(&plan, ctx, &p->desc);
    if (status == CLATTN_OK)
        status = clattn_plan_run_host(plan, p->q, p->k, p->v, o, lse);
    clattn_plan_destroy(plan);
    free(o);
    free(lse);

    if (status != CLATTN_OK) {
        if (!status_fits(kind, status) || !*clattn_context_message(ctx))
            print_error("%s: %s: %s\n", spec, clattn_status_name(status),
                        clattn_context_message(ctx));
        assert_true(status_fits(kind, status));
        assert_true(*clattn_context_message(ctx) != '\0');

        /* The fault is spent: the same context must now work. */
        EXPECT_OK(ctx, clattn_plan_create(&plan, ctx, &p->desc));
        harness_run_host(ctx, plan, p);
        clattn_plan_destroy(plan);
        injected[kind]++;
    }
    clattn_context_destroy(ctx);
    assert_int_equal(clFinish(clattn_context_queue(harness_ctx)), CL_SUCCESS);

    if (clattn__live_buffers() != buffers || context_refs() != refs)
        print_error("%s: %ld buffers and %d context references more than before\n", spec,
                    clattn__live_buffers() - buffers, (int)(context_refs() - refs));
    assert_int_equal(clattn__live_buffers(), buffers);
    assert_int_equal(context_refs(), refs);
    if (status != CLATTN_OK)
        survived[kind]++;
    return status != CLATTN_OK;
}

static void every_fault(const clattn_desc *desc)
{
    clattn_plan *plan = NULL;
    char text[256];
    problem p;

    harness_describe(desc, text, sizeof(text));
    assert_int_equal(problem_init(&p, desc, harness_seed), 0);

    /* CLBlast keeps the programs it builds for a cl_context until the
     * process ends; a first run lets it make them before anything is
     * counted. */
    EXPECT_OK(harness_ctx, clattn_plan_create(&plan, harness_ctx, desc));
    harness_run_host(harness_ctx, plan, &p);
    clattn_plan_destroy(plan);

    for (int kind = 0; kind < 3; kind++) {
        int n = 1;

        while (n <= MAX_FAULTS && one_fault(&p, kind, n))
            n++;
        assert_true(n > 1 && n <= MAX_FAULTS);
        printf("%s: %d %s faults\n", text, n - 1, kinds[kind]);
    }
    problem_free(&p);
}

static void base_desc(clattn_desc *d, clattn_variant variant)
{
    clattn_desc_init(d);
    d->variant = variant;
    d->q_heads = 2;
    d->q_len = 21;
    d->kv_len = 30;
    d->head_dim = 8;
    d->causal = 1;
}

static void tiled_faults(void **state)
{
    clattn_desc d;

    (void)state;
    base_desc(&d, CLATTN_VARIANT_TILED);
    d.kernel_shape = CLATTN_SHAPE_CPU;
    every_fault(&d);
    d.kernel_shape = CLATTN_SHAPE_GPU;
    d.want_lse = 1;
    every_fault(&d);
}

static void naive_faults(void **state)
{
    clattn_desc d;

    (void)state;
    base_desc(&d, CLATTN_VARIANT_NAIVE);
    d.dtype = CLATTN_F16;
    every_fault(&d);
}

static void linear_faults(void **state)
{
    clattn_desc d;

    (void)state;
    base_desc(&d, CLATTN_VARIANT_LINEAR);
    every_fault(&d);
}

/* A cached binary that fails to build is set aside for a build from source. */
static void binary_build_fault_falls_back(void **state)
{
    clattn_plan *plan = NULL;
    clattn_context *ctx;
    clattn_stats stats;
    clattn_desc d;
    problem p;

    (void)state;
    base_desc(&d, CLATTN_VARIANT_TILED);
    assert_int_equal(problem_init(&p, &d, harness_seed), 0);
    EXPECT_OK(harness_ctx, clattn_plan_create(&plan, harness_ctx, &d));
    clattn_plan_destroy(plan);

    ctx = faulty_context("build:1", 1);
    EXPECT_OK(ctx, clattn_plan_create(&plan, ctx, &d));
    harness_run_host(ctx, plan, &p);
    EXPECT_OK(ctx, clattn_context_stats(ctx, &stats));
    assert_int_equal(stats.disk_entries_rejected, 1);
    assert_int_equal(stats.programs_compiled, 1);
    clattn_plan_destroy(plan);
    clattn_context_destroy(ctx);
    problem_free(&p);
}

static void report(void **state)
{
    (void)state;
    for (int kind = 0; kind < 3; kind++)
        printf("%s faults: %d injected, %d survived\n", kinds[kind], injected[kind],
               survived[kind]);
    assert_int_equal(survived[0] + survived[1] + survived[2],
                     injected[0] + injected[1] + injected[2]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tiled_faults),  cmocka_unit_test(naive_faults),
        cmocka_unit_test(linear_faults), cmocka_unit_test(binary_build_fault_falls_back),
        cmocka_unit_test(report),
    };

    return cmocka_run_group_tests(tests, harness_setup, harness_teardown);
}
