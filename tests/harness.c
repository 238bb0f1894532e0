#include "harness.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

clattn_context *harness_ctx;
uint64_t harness_seed;

void harness_log(void *cookie, clattn_log_level level, const char *message)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};

    (void)cookie;
    fprintf(stderr, "clattn %s: %s\n", names[level & 3], message);
}

int harness_setup(void **state)
{
    clattn_context_options options;
    clattn_status status;
    char name[256] = "";

    (void)state;
    harness_seed = problem_seed_from_env();
    printf("seed %" PRIu64 " (replay with CLATTN_TEST_SEED=%" PRIu64 ")\n", harness_seed,
           harness_seed);

    clattn_context_options_init(&options);
    options.log = harness_log;
    status = clattn_context_create(&harness_ctx, &options);
    if (status != CLATTN_OK) {
        fprintf(stderr, "clattn_context_create: %s: %s\n", clattn_status_name(status),
                clattn_context_message(NULL));
        return -1;
    }

    clGetDeviceInfo(clattn_context_device(harness_ctx), CL_DEVICE_NAME, sizeof(name) - 1,
                    name, NULL);
    printf("device %s\n", name);
    return 0;
}

int harness_teardown(void **state)
{
    (void)state;
    clattn_context_destroy(harness_ctx);
    harness_ctx = NULL;
    return 0;
}

static const char *shape_name(clattn_kernel_shape s)
{
    return s == CLATTN_SHAPE_CPU ? "cpu" : s == CLATTN_SHAPE_GPU ? "gpu" : "auto";
}

static const char *feature_name(const clattn_desc *d)
{
    if (d->variant != CLATTN_VARIANT_LINEAR)
        return "";
    return d->feature_map == CLATTN_FEATURE_RELU ? " phi=relu" : " phi=elu1";
}

void harness_describe(const clattn_desc *d, char *buf, size_t size)
{
    snprintf(buf, size,
             "%s/%s %s %s batch=%d heads=%d/%d len=%d/%d dim=%d/%d scale=%g causal=%d "
             "window=%d/%d lse=%d block=%d/%d%s",
             clattn_variant_name(d->variant), shape_name(d->kernel_shape),
             d->dtype == CLATTN_F16 ? "f16" : "f32",
             d->layout == CLATTN_LAYOUT_BSHD ? "bshd" : "bhsd", d->batch, d->q_heads,
             d->kv_heads, d->q_len, d->kv_len, d->head_dim, d->v_head_dim,
             (double)d->scale, d->causal, d->window_left, d->window_right, d->want_lse,
             d->block_q, d->block_k, feature_name(d));
}

void harness_expect(clattn_context *ctx, clattn_status status, clattn_status want,
                    const char *call, const char *file, int line)
{
    if (status == want)
        return;
    print_error("%s:%d: %s returned %s, expected %s: %s\n", file, line, call,
                clattn_status_name(status), clattn_status_name(want),
                clattn_context_message(ctx));
    _fail(file, line);
}

static int is_zero(const problem *p, const void *o, size_t i)
{
    if (p->desc.dtype == CLATTN_F16)
        return (((const uint16_t *)o)[i] & 0x7fff) == 0;
    return ((const float *)o)[i] == 0.0f;
}

/* Rows that see no key must be exactly zero; the norm would hide a small
 * leftover. Returns how many such rows there were. */
static size_t check_empty_rows(const problem *p, const void *o)
{
    const clattn_desc *d = &p->desc;
    size_t rows = 0;

    for (size_t r = 0; r < p->lse_count; r++) {
        size_t i = r % (size_t)d->q_len, bh = r / (size_t)d->q_len;
        size_t b = bh / (size_t)d->q_heads, h = bh % (size_t)d->q_heads;
        size_t row =
            d->layout == CLATTN_LAYOUT_BHSD ? r : (b * d->q_len + i) * d->q_heads + h;

        if (!isinf(p->lse_ref[r]))
            continue;
        rows++;
        for (size_t c = 0; c < (size_t)d->v_head_dim; c++) {
            if (!is_zero(p, o, row * d->v_head_dim + c)) {
                print_error("row %zu (batch %zu, head %zu, query %zu) must be zero "
                            "(it sees no key, or no weight) but is not\n",
                            r, b, h, i);
                fail();
            }
        }
    }
    return rows;
}

void harness_check_output(const problem *p, const void *o, const float *lse)
{
    double tolerance = problem_tolerance(p);
    double error = problem_output_error(p, o);
    double lse_error = lse ? problem_lse_error(p, lse) : 0.0;
    size_t empty;

    if (!(error <= tolerance))
        print_error("output error %g exceeds %g\n", error, tolerance);
    assert_true(error <= tolerance);
    empty = check_empty_rows(p, o);

    if (!(lse_error <= tolerance))
        print_error("log-sum-exp error %g exceeds %g\n", lse_error, tolerance);
    assert_true(lse_error <= tolerance);
    printf("  error %.2e, log-sum-exp %.2e, rows without keys %zu\n", error, lse_error,
           empty);
}

static cl_mem upload(cl_command_queue queue, cl_context cl_ctx, const void *data,
                     size_t bytes, cl_event *done)
{
    cl_int err;
    cl_mem mem = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);

    assert_int_equal(err, CL_SUCCESS);
    err = clEnqueueWriteBuffer(queue, mem, CL_FALSE, 0, bytes, data, 0, NULL, done);
    assert_int_equal(err, CL_SUCCESS);
    return mem;
}

static void download(cl_command_queue queue, cl_mem mem, void *data, size_t bytes)
{
    assert_int_equal(
        clEnqueueReadBuffer(queue, mem, CL_TRUE, 0, bytes, data, 0, NULL, NULL),
        CL_SUCCESS);
}

static size_t bytes_of(const problem *p, clattn_tensor t)
{
    size_t bytes = 0;

    EXPECT_OK(NULL, clattn_tensor_bytes(&p->desc, t, &bytes));
    return bytes;
}

/*
 * A user event in a run's wait list, opened by a thread: soon when asked, or
 * after three seconds, so that a run that blocks the caller until its wait
 * list completes fails the test instead of hanging it.
 */
typedef struct gate {
    cl_event event;
    atomic_int open_now, opened;
    pthread_t thread;
} gate;

static void *keep_gate(void *arg)
{
    struct timespec tick = {0, 10 * 1000 * 1000};
    gate *g = arg;

    for (int i = 0; i < 300 && !atomic_load(&g->open_now); i++)
        nanosleep(&tick, NULL);
    atomic_store(&g->opened, 1);
    clSetUserEventStatus(g->event, CL_COMPLETE);
    return NULL;
}

static void gate_start(gate *g, cl_event event)
{
    g->event = event;
    atomic_init(&g->open_now, 0);
    atomic_init(&g->opened, 0);
    assert_int_equal(pthread_create(&g->thread, NULL, keep_gate, g), 0);
}

/*
 * Called once the run was enqueued (done is NULL when that failed); fails if
 * the run did not wait for the gate.
 */
static void gate_check_and_open(gate *g, cl_command_queue queue, cl_event done)
{
    struct timespec pause = {0, 50 * 1000 * 1000};
    int blocked = done && atomic_load(&g->opened), early = 0;
    cl_int state = CL_COMPLETE;

    if (done && !blocked) {
        clFlush(queue);
        nanosleep(&pause, NULL);
        clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof(state), &state,
                       NULL);
        early = state == CL_COMPLETE && !atomic_load(&g->opened);
    }
    atomic_store(&g->open_now, 1);
    pthread_join(g->thread, NULL);

    if (blocked)
        print_error("clattn_plan_run blocked until its wait list completed\n");
    if (early)
        print_error("the run finished before an event in its wait list\n");
    assert_false(blocked || early);
}

void harness_run_buffers(clattn_context *ctx, clattn_plan *plan, const problem *p,
                         cl_event user_event)
{
    cl_command_queue queue = clattn_context_queue(ctx);
    cl_context cl_ctx = clattn_context_cl_context(ctx);
    size_t o_bytes = bytes_of(p, CLATTN_TENSOR_O),
           lse_bytes = bytes_of(p, CLATTN_TENSOR_LSE);
    void *o = malloc(o_bytes);
    float *lse = malloc(lse_bytes);
    cl_event writes[6], done = NULL;
    cl_mem mem[5];
    cl_int state = -1;
    clattn_status status;
    gate g;

    assert_non_null(o);
    assert_non_null(lse);
    problem_poison(o, p->o_count, p->desc.dtype);
    problem_poison(lse, p->lse_count, CLATTN_F32);

    mem[0] = upload(queue, cl_ctx, p->q, bytes_of(p, CLATTN_TENSOR_Q), &writes[0]);
    mem[1] = upload(queue, cl_ctx, p->k, bytes_of(p, CLATTN_TENSOR_K), &writes[1]);
    mem[2] = upload(queue, cl_ctx, p->v, bytes_of(p, CLATTN_TENSOR_V), &writes[2]);
    mem[3] = upload(queue, cl_ctx, o, o_bytes, &writes[3]);
    mem[4] = upload(queue, cl_ctx, lse, lse_bytes, &writes[4]);

    writes[5] = user_event;
    if (user_event)
        gate_start(&g, user_event);
    status = clattn_plan_run(plan, mem[0], mem[1], mem[2], mem[3],
                             p->desc.want_lse ? mem[4] : NULL, user_event ? 6 : 5, writes,
                             &done);
    if (user_event)
        gate_check_and_open(&g, queue, status == CLATTN_OK ? done : NULL);
    EXPECT_OK(ctx, status);
    assert_non_null(done);
    assert_int_equal(clWaitForEvents(1, &done), CL_SUCCESS);
    clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof(state), &state, NULL);
    assert_int_equal(state, CL_COMPLETE);

    download(queue, mem[3], o, o_bytes);
    download(queue, mem[4], lse, lse_bytes);
    harness_check_output(p, o, p->desc.want_lse ? lse : NULL);

    clReleaseEvent(done);
    for (int i = 0; i < 5; i++) {
        clReleaseEvent(writes[i]);
        clReleaseMemObject(mem[i]);
    }
    free(o);
    free(lse);
}

static int all_nan(const float *data, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isnan(data[i]))
            return 0;
    return 1;
}

void harness_run_host(clattn_context *ctx, clattn_plan *plan, const problem *p)
{
    void *o = malloc(p->o_count * p->elem_size);
    float *lse = malloc(p->lse_count * sizeof(float));

    assert_non_null(o);
    assert_non_null(lse);
    problem_poison(o, p->o_count, p->desc.dtype);
    problem_poison(lse, p->lse_count, CLATTN_F32);

    EXPECT_OK(ctx, clattn_plan_run_host(plan, p->q, p->k, p->v, o, lse));
    harness_check_output(p, o, p->desc.want_lse ? lse : NULL);
    if (!p->desc.want_lse && !all_nan(lse, p->lse_count)) {
        print_error("the log-sum-exp was written although want_lse is 0\n");
        fail();
    }

    free(o);
    free(lse);
}

static void check_choice(const clattn_plan *plan, const clattn_desc *desc)
{
    clattn_variant variant = clattn_plan_variant(plan);
    clattn_kernel_shape shape = clattn_plan_kernel_shape(plan);

    assert_int_not_equal(variant, CLATTN_VARIANT_AUTO);
    assert_int_not_equal(shape, CLATTN_SHAPE_AUTO);
    if (desc->variant != CLATTN_VARIANT_AUTO)
        assert_int_equal(variant, desc->variant);
    /* The linear variant may run the same kernels for both shapes. */
    if ((variant == CLATTN_VARIANT_TILED || variant == CLATTN_VARIANT_WINDOW) &&
        desc->kernel_shape != CLATTN_SHAPE_AUTO)
        assert_int_equal(shape, desc->kernel_shape);

    /* Auto takes the window variant exactly when a window bound is set. */
    if (desc->variant == CLATTN_VARIANT_AUTO)
        assert_int_equal(variant, desc->window_left != -1 || desc->window_right != -1
                                      ? CLATTN_VARIANT_WINDOW
                                      : CLATTN_VARIANT_TILED);

    /* The naive variant materializes the scores, so it must hold workspace. */
    if (variant == CLATTN_VARIANT_NAIVE)
        assert_true(clattn_plan_workspace_bytes(plan) > 0);
}

void harness_check(clattn_context *ctx, const clattn_desc *desc)
{
    clattn_plan *plan = NULL;
    problem p;
    char text[256];

    assert_int_equal(problem_init(&p, desc, harness_seed), 0);
    harness_describe(&p.desc, text, sizeof(text));
    printf("problem %s seed %" PRIu64 "\n", text, harness_seed);

    EXPECT_OK(ctx, clattn_plan_create(&plan, ctx, desc));
    assert_non_null(plan);
    check_choice(plan, desc);

    harness_run_buffers(ctx, plan, &p, NULL);
    harness_run_host(ctx, plan, &p);

    clattn_plan_destroy(plan);
    problem_free(&p);
}
