/*
 * Running plans: automatic choices, device buffers with wait lists and
 * events, timed runs, and plans that are reused or live side by side.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

static void small_desc(clattn_desc *d, clattn_variant variant)
{
    clattn_desc_init(d);
    d->q_heads = 4;
    d->kv_heads = 2;
    d->q_len = 70;
    d->kv_len = 90;
    d->head_dim = 64;
    d->causal = 1;
    d->want_lse = 1;
    d->variant = variant;
}

static int device_is_cpu(void)
{
    cl_device_type type = 0;

    clGetDeviceInfo(clattn_context_device(harness_ctx), CL_DEVICE_TYPE, sizeof(type),
                    &type, NULL);
    return (type & CL_DEVICE_TYPE_CPU) != 0;
}

static void auto_variant(void **state)
{
    clattn_desc d;

    (void)state;
    small_desc(&d, CLATTN_VARIANT_AUTO);
    harness_check(harness_ctx, &d);
}

/* The header ties the automatic kernel shape to the device type. */
static void auto_shape_follows_device_type(void **state)
{
    clattn_plan *plan = NULL;
    clattn_desc d;

    (void)state;
    small_desc(&d, CLATTN_VARIANT_TILED);
    EXPECT_OK(harness_ctx, clattn_plan_create(&plan, harness_ctx, &d));
    assert_int_equal(clattn_plan_kernel_shape(plan),
                     device_is_cpu() ? CLATTN_SHAPE_CPU : CLATTN_SHAPE_GPU);
    clattn_plan_destroy(plan);
    harness_check(harness_ctx, &d);
}

static void waits_for_user_event(clattn_variant variant, clattn_kernel_shape shape)
{
    cl_context cl_ctx = clattn_context_cl_context(harness_ctx);
    clattn_plan *plan = NULL;
    cl_event gate;
    cl_int err;
    clattn_desc d;
    problem p;

    small_desc(&d, variant);
    d.kernel_shape = shape;
    assert_int_equal(problem_init(&p, &d, harness_seed), 0);
    EXPECT_OK(harness_ctx, clattn_plan_create(&plan, harness_ctx, &d));

    /* A first run builds anything that is built lazily, which would
     * otherwise be hard to tell from waiting. */
    harness_run_buffers(harness_ctx, plan, &p, NULL);
    gate = clCreateUserEvent(cl_ctx, &err);
    assert_int_equal(err, CL_SUCCESS);
    harness_run_buffers(harness_ctx, plan, &p, gate);
    clReleaseEvent(gate);

    clattn_plan_destroy(plan);
    problem_free(&p);
}

static void tiled_cpu_waits_for_user_event(void **state)
{
    (void)state;
    waits_for_user_event(CLATTN_VARIANT_TILED, CLATTN_SHAPE_CPU);
}

static void tiled_gpu_waits_for_user_event(void **state)
{
    (void)state;
    waits_for_user_event(CLATTN_VARIANT_TILED, CLATTN_SHAPE_GPU);
}

static void naive_waits_for_user_event(void **state)
{
    (void)state;
    waits_for_user_event(CLATTN_VARIANT_NAIVE, CLATTN_SHAPE_AUTO);
}

static cl_mem device_copy(const void *data, size_t bytes)
{
    cl_int err;
    cl_mem mem = clCreateBuffer(clattn_context_cl_context(harness_ctx),
                                CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes,
                                (void *)data, &err);

    assert_int_equal(err, CL_SUCCESS);
    return mem;
}

static void timed(clattn_variant variant)
{
    cl_command_queue queue = clattn_context_queue(harness_ctx);
    clattn_plan *plan = NULL;
    clattn_desc d;
    double ms = -1.0;
    cl_mem mem[5];
    void *o;
    float *lse;
    problem p;

    small_desc(&d, variant);
    assert_int_equal(problem_init(&p, &d, harness_seed), 0);
    EXPECT_OK(harness_ctx, clattn_plan_create(&plan, harness_ctx, &d));
    o = malloc(p.o_count * p.elem_size);
    lse = malloc(p.lse_count * sizeof(float));
    assert_non_null(o);
    assert_non_null(lse);
    problem_poison(o, p.o_count, d.dtype);
    problem_poison(lse, p.lse_count, CLATTN_F32);

    mem[0] = device_copy(p.q, p.q_count * p.elem_size);
    mem[1] = device_copy(p.k, p.k_count * p.elem_size);
    mem[2] = device_copy(p.v, p.v_count * p.elem_size);
    mem[3] = device_copy(o, p.o_count * p.elem_size);
    mem[4] = device_copy(lse, p.lse_count * sizeof(float));
    EXPECT_OK(harness_ctx,
              clattn_plan_run_timed(plan, mem[0], mem[1], mem[2], mem[3], mem[4], &ms));
    printf("%s run: %.3f ms\n", variant == CLATTN_VARIANT_NAIVE ? "naive" : "tiled", ms);
    assert_true(ms > 0.0 && isfinite(ms));

    clEnqueueReadBuffer(queue, mem[3], CL_TRUE, 0, p.o_count * p.elem_size, o, 0, NULL,
                        NULL);
    clEnqueueReadBuffer(queue, mem[4], CL_TRUE, 0, p.lse_count * sizeof(float), lse, 0,
                        NULL, NULL);
    harness_check_output(&p, o, lse);

    for (int t = 0; t < 5; t++)
        clReleaseMemObject(mem[t]);
    free(o);
    free(lse);
    clattn_plan_destroy(plan);
    problem_free(&p);
}

static void tiled_timed(void **state)
{
    (void)state;
    timed(CLATTN_VARIANT_TILED);
}

static void naive_timed(void **state)
{
    (void)state;
    timed(CLATTN_VARIANT_NAIVE);
}

/* A plan must not keep anything of one run's inputs for the next. */
static void plan_reused_with_new_inputs(void **state)
{
    clattn_plan *plan = NULL;
    clattn_desc d;

    (void)state;
    small_desc(&d, CLATTN_VARIANT_TILED);
    EXPECT_OK(harness_ctx, clattn_plan_create(&plan, harness_ctx, &d));
    for (uint64_t i = 0; i < 3; i++) {
        problem p;

        assert_int_equal(problem_init(&p, &d, harness_seed + i), 0);
        printf("inputs from seed %llu\n", (unsigned long long)(harness_seed + i));
        harness_run_host(harness_ctx, plan, &p);
        problem_free(&p);
    }
    clattn_plan_destroy(plan);
}

/* Plans of different variants and sizes live side by side and interleave. */
static void plans_side_by_side(void **state)
{
    clattn_plan *plans[3] = {NULL, NULL, NULL};
    clattn_desc d[3];
    problem p[3];

    (void)state;
    small_desc(&d[0], CLATTN_VARIANT_TILED);
    small_desc(&d[1], CLATTN_VARIANT_NAIVE);
    small_desc(&d[2], CLATTN_VARIANT_TILED);
    d[2].q_len = 5;
    d[2].kv_len = 300;
    d[2].head_dim = 32;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(problem_init(&p[i], &d[i], harness_seed), 0);
        EXPECT_OK(harness_ctx, clattn_plan_create(&plans[i], harness_ctx, &d[i]));
    }

    for (int round = 0; round < 2; round++)
        for (int i = 2; i >= 0; i--)
            harness_run_host(harness_ctx, plans[i], &p[i]);

    for (int i = 0; i < 3; i++) {
        clattn_plan_destroy(plans[i]);
        problem_free(&p[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(auto_variant),
        cmocka_unit_test(auto_shape_follows_device_type),
        cmocka_unit_test(tiled_cpu_waits_for_user_event),
        cmocka_unit_test(tiled_gpu_waits_for_user_event),
        cmocka_unit_test(naive_waits_for_user_event),
        cmocka_unit_test(tiled_timed),
        cmocka_unit_test(naive_timed),
        cmocka_unit_test(plan_reused_with_new_inputs),
        cmocka_unit_test(plans_side_by_side),
    };

    return cmocka_run_group_tests_name("run", tests, harness_setup, harness_teardown);
}
