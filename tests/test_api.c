/*
 * The API surface: statuses, defaults, sizes, argument checks and their
 * messages, buffer checks and wrapping an application's OpenCL objects.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static void status_names_and_texts(void **state)
{
#define CHECK_STATUS(name, value, text)                                                  \
    assert_int_equal(CLATTN_##name, value);                                              \
    assert_string_equal(clattn_status_name(CLATTN_##name), #name);                       \
    assert_string_equal(clattn_status_text(CLATTN_##name), text);
    CLATTN_STATUS_LIST(CHECK_STATUS)
#undef CHECK_STATUS

    (void)state;
    assert_non_null(clattn_status_name((clattn_status)42));
    assert_non_null(clattn_status_text((clattn_status)-42));
}

static void variant_names(void **state)
{
    (void)state;
    assert_string_equal(clattn_variant_name(CLATTN_VARIANT_AUTO), "auto");
    assert_string_equal(clattn_variant_name(CLATTN_VARIANT_NAIVE), "naive");
    assert_string_equal(clattn_variant_name(CLATTN_VARIANT_TILED), "tiled");
    assert_string_equal(clattn_variant_name(CLATTN_VARIANT_WINDOW), "window");
    assert_string_equal(clattn_variant_name(CLATTN_VARIANT_LINEAR), "linear");
    assert_string_equal(clattn_variant_name((clattn_variant)99), "unknown");
    assert_string_equal(clattn_variant_name((clattn_variant)-1), "unknown");
}

static void version_matches_header(void **state)
{
    char want[32];

    (void)state;
    snprintf(want, sizeof(want), "%d.%d.%d", CLATTN_VERSION_MAJOR, CLATTN_VERSION_MINOR,
             CLATTN_VERSION_PATCH);
    assert_string_equal(clattn_version(), want);
}

static void defaults(void **state)
{
    clattn_context_options options;
    clattn_desc d;

    (void)state;
    memset(&options, 0x5a, sizeof(options));
    clattn_context_options_init(&options);
    assert_null(options.device);
    assert_null(options.cache_dir);
    assert_int_equal(options.disable_disk_cache, 0);
    assert_null(options.log);
    assert_int_equal(options.log_level, CLATTN_LOG_WARNING);

    memset(&d, 0x5a, sizeof(d));
    clattn_desc_init(&d);
    assert_int_equal(d.batch, 1);
    assert_int_equal(d.q_heads, 1);
    assert_int_equal(d.q_len, 0);
    assert_int_equal(d.head_dim, 0);
    assert_int_equal(d.dtype, CLATTN_F32);
    assert_int_equal(d.layout, CLATTN_LAYOUT_BHSD);
    assert_true(d.scale == 0.0f);
    assert_int_equal(d.causal, 0);
    assert_int_equal(d.window_left, -1);
    assert_int_equal(d.window_right, -1);
    assert_int_equal(d.want_lse, 0);
    assert_int_equal(d.variant, CLATTN_VARIANT_AUTO);
    assert_int_equal(d.kernel_shape, CLATTN_SHAPE_AUTO);
    assert_int_equal(d.feature_map, CLATTN_FEATURE_ELU1);
    assert_int_equal(d.block_q, 0);
    assert_int_equal(d.block_k, 0);

    clattn_desc_init(NULL);
    clattn_context_options_init(NULL);
}

static size_t tensor_bytes(const clattn_desc *d, clattn_tensor t)
{
    size_t bytes = 0;

    EXPECT_OK(NULL, clattn_tensor_bytes(d, t, &bytes));
    return bytes;
}

static void tensor_bytes_follow_defaults(void **state)
{
    clattn_desc d;

    (void)state;
    clattn_desc_init(&d);
    d.q_heads = 4;
    d.q_len = 10;
    d.head_dim = 8;

    /* kv_heads, kv_len and v_head_dim default to their query counterparts. */
    assert_int_equal(tensor_bytes(&d, CLATTN_TENSOR_Q), 4 * 10 * 8 * 4);
    assert_int_equal(tensor_bytes(&d, CLATTN_TENSOR_K), 4 * 10 * 8 * 4);
    assert_int_equal(tensor_bytes(&d, CLATTN_TENSOR_V), 4 * 10 * 8 * 4);
    assert_int_equal(tensor_bytes(&d, CLATTN_TENSOR_O), 4 * 10 * 8 * 4);
    assert_int_equal(tensor_bytes(&d, CLATTN_TENSOR_LSE), 4 * 10 * 4);
}

static void tensor_bytes_of_every_tensor(void **state)
{
    clattn_desc d;

    (void)state;
    clattn_desc_init(&d);
    d.batch = 3;
    d.q_heads = 8;
    d.kv_heads = 2;
    d.q_len = 5;
    d.kv_len = 7;
    d.head_dim = 16;
    d.v_head_dim = 24;
    d.dtype = CLATTN_F16;
    d.layout = CLATTN_LAYOUT_BSHD;

    assert_int_equal(tensor_bytes(&d, CLATTN_TENSOR_Q), 3 * 8 * 5 * 16 * 2);
    assert_int_equal(tensor_bytes(&d, CLATTN_TENSOR_K), 3 * 2 * 7 * 16 * 2);
    assert_int_equal(tensor_bytes(&d, CLATTN_TENSOR_V), 3 * 2 * 7 * 24 * 2);
    assert_int_equal(tensor_bytes(&d, CLATTN_TENSOR_O), 3 * 8 * 5 * 24 * 2);
    assert_int_equal(tensor_bytes(&d, CLATTN_TENSOR_LSE), 3 * 8 * 5 * 4);
}

/* Each factor is a plausible size on its own; their product is 2^72 bytes. */
static void overflowing_desc(clattn_desc *d)
{
    clattn_desc_init(d);
    d->batch = 1 << 12;
    d->q_heads = 1 << 12;
    d->q_len = 1 << 30;
    d->head_dim = 256;
}

static void tensor_bytes_rejects(void **state)
{
    clattn_desc d;
    size_t bytes = 0;

    (void)state;
    overflowing_desc(&d);
    for (int t = CLATTN_TENSOR_Q; t <= CLATTN_TENSOR_O; t++)
        EXPECT_STATUS(NULL, clattn_tensor_bytes(&d, t, &bytes), CLATTN_INVALID_SHAPE);

    clattn_desc_init(&d);
    d.q_len = 4;
    d.head_dim = 4;
    EXPECT_STATUS(NULL, clattn_tensor_bytes(NULL, CLATTN_TENSOR_Q, &bytes),
                  CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(NULL, clattn_tensor_bytes(&d, CLATTN_TENSOR_Q, NULL),
                  CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(NULL, clattn_tensor_bytes(&d, (clattn_tensor)5, &bytes),
                  CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(NULL, clattn_tensor_bytes(&d, (clattn_tensor)-1, &bytes),
                  CLATTN_INVALID_ARGUMENT);
    d.head_dim = 0;
    EXPECT_STATUS(NULL, clattn_tensor_bytes(&d, CLATTN_TENSOR_Q, &bytes),
                  CLATTN_INVALID_ARGUMENT);
}

/* A small valid problem; every validation case breaks one field of it. */
static void base_desc(clattn_desc *d)
{
    clattn_desc_init(d);
    d->q_heads = 8;
    d->kv_heads = 2;
    d->q_len = 16;
    d->head_dim = 64;
    d->variant = CLATTN_VARIANT_TILED;
    d->kernel_shape = CLATTN_SHAPE_CPU;
}

typedef struct bad_field {
    const char *field;
    size_t offset;
    int value;
} bad_field;

/* clang-format off */
#define BAD(name, v) {#name, offsetof(clattn_desc, name), (v)}

static const bad_field bad_fields[] = {
    BAD(batch, 0), BAD(batch, -1),
    BAD(q_heads, 0), BAD(q_heads, -8),
    BAD(kv_heads, -1),
    BAD(q_len, 0), BAD(q_len, -5),
    BAD(kv_len, -1),
    BAD(head_dim, 0), BAD(head_dim, -64), BAD(head_dim, 257),
    BAD(v_head_dim, -1), BAD(v_head_dim, 257),
    BAD(dtype, 2), BAD(dtype, -1),
    BAD(layout, 2), BAD(layout, -1),
    BAD(variant, 5), BAD(variant, -1),
    BAD(kernel_shape, 3), BAD(kernel_shape, -1),
    BAD(feature_map, 2), BAD(feature_map, -1),
    BAD(window_left, -2), BAD(window_right, -2), BAD(window_right, INT_MIN),
    BAD(block_q, -1), BAD(block_k, -1),
};
/* clang-format on */

/* Fails unless the last failure's message on ctx names the field. */
static void expect_message_names(clattn_context *ctx, const char *field)
{
    const char *message = clattn_context_message(ctx);

    assert_non_null(message);
    if (!strstr(message, field)) {
        print_error("the message \"%s\" does not name %s\n", message, field);
        fail();
    }
}

static void expect_rejected(const clattn_desc *d, const char *field, clattn_status want)
{
    clattn_plan *plan = NULL;

    EXPECT_STATUS(harness_ctx, clattn_plan_create(&plan, harness_ctx, d), want);
    assert_null(plan);
    expect_message_names(harness_ctx, field);
}

static void base_desc_is_accepted(void **state)
{
    clattn_plan *plan = NULL;
    clattn_desc d;

    (void)state;
    base_desc(&d);
    EXPECT_OK(harness_ctx, clattn_plan_create(&plan, harness_ctx, &d));
    assert_non_null(plan);
    clattn_plan_destroy(plan);
}

static void every_field_out_of_range(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_fields) / sizeof(bad_fields[0]); i++) {
        const bad_field *b = &bad_fields[i];
        clattn_desc d;

        base_desc(&d);
        memcpy((char *)&d + b->offset, &b->value, sizeof(int));
        printf("desc.%s = %d\n", b->field, b->value);
        expect_rejected(&d, b->field, CLATTN_INVALID_ARGUMENT);
    }
}

static void bad_scales(void **state)
{
    const float scales[] = {-1.0f, -0.0001f, NAN, INFINITY, -INFINITY};

    (void)state;
    for (size_t i = 0; i < sizeof(scales) / sizeof(scales[0]); i++) {
        clattn_desc d;

        base_desc(&d);
        d.scale = scales[i];
        printf("desc.scale = %g\n", (double)scales[i]);
        expect_rejected(&d, "scale", CLATTN_INVALID_ARGUMENT);
    }
}

/* Linear attention has no log-sum-exp and no mask but the causal one. */
static void linear_refuses_lse_and_windows(void **state)
{
    const int windows[][2] = {{0, -1}, {5, -1}, {-1, 0}, {-1, 7}, {3, 3}};
    clattn_desc d;

    (void)state;
    base_desc(&d);
    d.variant = CLATTN_VARIANT_LINEAR;
    d.want_lse = 1;
    expect_rejected(&d, "want_lse", CLATTN_UNSUPPORTED);

    for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
        base_desc(&d);
        d.variant = CLATTN_VARIANT_LINEAR;
        d.causal = 1;
        d.window_left = windows[i][0];
        d.window_right = windows[i][1];
        printf("linear with window %d,%d\n", d.window_left, d.window_right);
        expect_rejected(&d, "window", CLATTN_UNSUPPORTED);
    }

    base_desc(&d);
    d.variant = CLATTN_VARIANT_LINEAR;
    d.feature_map = (clattn_feature_map)2;
    expect_rejected(&d, "feature_map", CLATTN_INVALID_ARGUMENT);
}

/* Linear takes causal, both feature maps, a scale it ignores and both shapes. */
static void linear_accepts_its_options(void **state)
{
    const clattn_kernel_shape shapes[] = {CLATTN_SHAPE_AUTO, CLATTN_SHAPE_CPU,
                                          CLATTN_SHAPE_GPU};
    clattn_desc d;

    (void)state;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        clattn_plan *plan = NULL;

        base_desc(&d);
        d.variant = CLATTN_VARIANT_LINEAR;
        d.kernel_shape = shapes[i];
        d.causal = (int)(i % 2);
        d.feature_map = i == 1 ? CLATTN_FEATURE_RELU : CLATTN_FEATURE_ELU1;
        d.scale = 0.5f;
        EXPECT_OK(harness_ctx, clattn_plan_create(&plan, harness_ctx, &d));
        assert_int_equal(clattn_plan_variant(plan), CLATTN_VARIANT_LINEAR);
        assert_int_not_equal(clattn_plan_kernel_shape(plan), CLATTN_SHAPE_AUTO);
        clattn_plan_destroy(plan);
    }
}

static clattn_variant auto_choice(int causal, int left, int right)
{
    clattn_plan *plan = NULL;
    clattn_variant variant;
    clattn_desc d;

    base_desc(&d);
    d.variant = CLATTN_VARIANT_AUTO;
    d.causal = causal;
    d.window_left = left;
    d.window_right = right;
    EXPECT_OK(harness_ctx, clattn_plan_create(&plan, harness_ctx, &d));
    variant = clattn_plan_variant(plan);
    clattn_plan_destroy(plan);
    printf("auto, causal %d, window %d,%d: variant %d\n", causal, left, right,
           (int)variant);
    return variant;
}

/* Auto takes the window variant exactly when a window bound is set. */
static void auto_picks_window_for_windows(void **state)
{
    (void)state;
    assert_int_equal(auto_choice(0, -1, -1), CLATTN_VARIANT_TILED);
    assert_int_equal(auto_choice(1, -1, -1), CLATTN_VARIANT_TILED);
    assert_int_equal(auto_choice(0, 8, 8), CLATTN_VARIANT_WINDOW);
    assert_int_equal(auto_choice(1, 31, -1), CLATTN_VARIANT_WINDOW);
    assert_int_equal(auto_choice(0, -1, 0), CLATTN_VARIANT_WINDOW);
    assert_int_equal(auto_choice(0, 100000, 100000), CLATTN_VARIANT_WINDOW);
}

/* The header leaves open which of the two a non-dividing kv_heads is. */
static void kv_heads_must_divide(void **state)
{
    const int counts[] = {3, 5, 16};

    (void)state;
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        clattn_plan *plan = NULL;
        clattn_status status;
        clattn_desc d;

        base_desc(&d);
        d.kv_heads = counts[i];
        status = clattn_plan_create(&plan, harness_ctx, &d);
        printf("kv_heads %d over q_heads 8: %s\n", counts[i], clattn_status_name(status));
        assert_true(status == CLATTN_INVALID_SHAPE || status == CLATTN_INVALID_ARGUMENT);
        assert_null(plan);
        expect_message_names(harness_ctx, "kv_heads");
    }
}

static void overflow_is_invalid_shape(void **state)
{
    clattn_plan *plan = NULL;
    clattn_desc d;

    (void)state;
    overflowing_desc(&d);
    EXPECT_STATUS(harness_ctx, clattn_plan_create(&plan, harness_ctx, &d),
                  CLATTN_INVALID_SHAPE);
    assert_null(plan);
    assert_true(strlen(clattn_context_message(harness_ctx)) > 0);
}

/* A score matrix of 64 x 32768 x 32768 floats (256 GiB) fits no device's
 * single allocation; the plan must say so instead of failing in OpenCL. */
static void naive_workspace_too_large(void **state)
{
    clattn_plan *plan = NULL;
    clattn_status status;
    clattn_desc d;
    cl_ulong max_alloc = 0;

    (void)state;
    clGetDeviceInfo(clattn_context_device(harness_ctx), CL_DEVICE_MAX_MEM_ALLOC_SIZE,
                    sizeof(max_alloc), &max_alloc, NULL);
    clattn_desc_init(&d);
    d.q_heads = 64;
    d.q_len = 32768;
    d.head_dim = 8;
    d.variant = CLATTN_VARIANT_NAIVE;
    assert_true((double)64 * 32768 * 32768 * 4 > (double)max_alloc);

    status = clattn_plan_create(&plan, harness_ctx, &d);
    printf("naive plan: %s: %s\n", clattn_status_name(status),
           clattn_context_message(harness_ctx));
    assert_null(plan);
    assert_true(status == CLATTN_DEVICE_MEMORY || status == CLATTN_UNSUPPORTED);
    assert_true(strlen(clattn_context_message(harness_ctx)) > 0);
}

static void null_handles(void **state)
{
    clattn_context *ctx = NULL;
    clattn_plan *plan = NULL;
    clattn_stats stats;
    clattn_desc d;
    double ms;
    float host[4];

    (void)state;
    base_desc(&d);
    EXPECT_STATUS(NULL, clattn_context_create(NULL, NULL), CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(NULL, clattn_context_wrap(NULL, NULL, NULL, NULL, NULL),
                  CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(NULL, clattn_context_wrap(&ctx, NULL, NULL, NULL, NULL),
                  CLATTN_INVALID_ARGUMENT);
    assert_null(ctx);
    assert_true(strlen(clattn_context_message(NULL)) > 0);
    clattn_context_destroy(NULL);

    EXPECT_STATUS(NULL, clattn_context_stats(NULL, &stats), CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(NULL, clattn_context_stats(harness_ctx, NULL), CLATTN_INVALID_ARGUMENT);
    assert_null(clattn_context_cl_context(NULL));
    assert_null(clattn_context_device(NULL));
    assert_null(clattn_context_queue(NULL));

    EXPECT_STATUS(NULL, clattn_plan_create(&plan, NULL, &d), CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(harness_ctx, clattn_plan_create(NULL, harness_ctx, &d),
                  CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(harness_ctx, clattn_plan_create(&plan, harness_ctx, NULL),
                  CLATTN_INVALID_ARGUMENT);
    assert_null(plan);
    clattn_plan_destroy(NULL);

    EXPECT_STATUS(NULL,
                  clattn_plan_run(NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL),
                  CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(NULL, clattn_plan_run_timed(NULL, NULL, NULL, NULL, NULL, NULL, &ms),
                  CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(NULL, clattn_plan_run_host(NULL, host, host, host, host, NULL),
                  CLATTN_INVALID_ARGUMENT);
}

/* A plan with want_lse and its device buffers, sized exactly. */
typedef struct fixture {
    problem p;
    clattn_plan *plan;
    cl_mem mem[5];
    size_t bytes[5];
} fixture;

static void fixture_make(fixture *f, clattn_context *ctx, int want_lse)
{
    cl_context cl_ctx = clattn_context_cl_context(ctx);
    clattn_desc d;
    cl_int err;

    base_desc(&d);
    d.want_lse = want_lse;
    assert_int_equal(problem_init(&f->p, &d, harness_seed), 0);
    EXPECT_OK(ctx, clattn_plan_create(&f->plan, ctx, &d));

    for (int t = 0; t < 5; t++) {
        EXPECT_OK(NULL, clattn_tensor_bytes(&d, (clattn_tensor)t, &f->bytes[t]));
        f->mem[t] = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, f->bytes[t], NULL, &err);
        assert_int_equal(err, CL_SUCCESS);
    }
}

static void fixture_free(fixture *f)
{
    for (int t = 0; t < 5; t++)
        if (f->mem[t])
            clReleaseMemObject(f->mem[t]);
    clattn_plan_destroy(f->plan);
    problem_free(&f->p);
}

static clattn_status run_with(fixture *f, cl_mem *mem)
{
    clattn_status status =
        clattn_plan_run(f->plan, mem[0], mem[1], mem[2], mem[3], mem[4], 0, NULL, NULL);

    clFinish(clattn_context_queue(harness_ctx));
    return status;
}

static void buffers_too_small(void **state)
{
    static const char *const names[5] = {"q", "k", "v", "o", "lse"};
    cl_context cl_ctx = clattn_context_cl_context(harness_ctx);
    fixture f;

    (void)state;
    fixture_make(&f, harness_ctx, 1);
    EXPECT_OK(harness_ctx, run_with(&f, f.mem));

    for (int t = 0; t < 5; t++) {
        cl_mem mem[5];
        cl_int err;

        memcpy(mem, f.mem, sizeof(mem));
        mem[t] = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, f.bytes[t] - 1, NULL, &err);
        assert_int_equal(err, CL_SUCCESS);
        printf("%s one byte short\n", names[t]);
        EXPECT_STATUS(harness_ctx, run_with(&f, mem), CLATTN_BUFFER_TOO_SMALL);
        assert_true(strlen(clattn_context_message(harness_ctx)) > 0);
        clReleaseMemObject(mem[t]);
    }
    fixture_free(&f);
}

/* Outputs that overlap an input, or each other, would be corrupted mid-run. */
static void aliased_outputs(void **state)
{
    cl_context cl_ctx = clattn_context_cl_context(harness_ctx);
    size_t biggest = 0;
    cl_mem big;
    cl_int err;
    fixture f;

    (void)state;
    fixture_make(&f, harness_ctx, 1);
    for (int t = 0; t < 5; t++)
        biggest = f.bytes[t] > biggest ? f.bytes[t] : biggest;
    big = clCreateBuffer(cl_ctx, CL_MEM_READ_WRITE, biggest, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);

    for (int in = 0; in < 3; in++) {
        cl_mem mem[5];

        memcpy(mem, f.mem, sizeof(mem));
        mem[in] = mem[CLATTN_TENSOR_O] = big;
        EXPECT_STATUS(harness_ctx, run_with(&f, mem), CLATTN_INVALID_ARGUMENT);
        expect_message_names(harness_ctx, "o");

        memcpy(mem, f.mem, sizeof(mem));
        mem[in] = mem[CLATTN_TENSOR_LSE] = big;
        EXPECT_STATUS(harness_ctx, run_with(&f, mem), CLATTN_INVALID_ARGUMENT);
        expect_message_names(harness_ctx, "lse");
    }
    clReleaseMemObject(big);
    fixture_free(&f);
}

static void missing_buffers(void **state)
{
    float *o;
    fixture f;

    (void)state;
    fixture_make(&f, harness_ctx, 1);
    for (int t = 0; t < 5; t++) {
        cl_mem mem[5];

        memcpy(mem, f.mem, sizeof(mem));
        mem[t] = NULL;
        EXPECT_STATUS(harness_ctx, run_with(&f, mem), CLATTN_INVALID_ARGUMENT);
    }
    o = malloc(f.bytes[CLATTN_TENSOR_O]);
    assert_non_null(o);
    EXPECT_STATUS(harness_ctx, clattn_plan_run_host(f.plan, f.p.q, f.p.k, f.p.v, o, NULL),
                  CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(harness_ctx, clattn_plan_run_host(f.plan, f.p.q, f.p.k, f.p.v, NULL, o),
                  CLATTN_INVALID_ARGUMENT);
    free(o);
    fixture_free(&f);

    /* Without want_lse the log-sum-exp buffer is not needed. */
    fixture_make(&f, harness_ctx, 0);
    clReleaseMemObject(f.mem[4]);
    f.mem[4] = NULL;
    EXPECT_OK(harness_ctx, run_with(&f, f.mem));
    fixture_free(&f);
}

static void fresh_context_has_no_message(void **state)
{
    clattn_context *ctx = NULL;
    clattn_stats stats;

    (void)state;
    EXPECT_OK(NULL, clattn_context_create(&ctx, NULL));
    assert_string_equal(clattn_context_message(ctx), "");
    EXPECT_OK(ctx, clattn_context_stats(ctx, &stats));
    assert_int_equal(stats.programs_compiled, 0);
    clattn_context_destroy(ctx);
}

static void no_such_device(void **state)
{
    clattn_context_options options;
    clattn_context *ctx = NULL;

    (void)state;
    clattn_context_options_init(&options);
    options.device = "no device is called this";
    EXPECT_STATUS(NULL, clattn_context_create(&ctx, &options), CLATTN_NO_DEVICE);
    assert_null(ctx);
    assert_true(strlen(clattn_context_message(NULL)) > 0);
}

/* Application-owned OpenCL objects on the harness context's device. */
typedef struct app_objects {
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
} app_objects;

static void app_make(app_objects *a, cl_command_queue_properties properties)
{
    cl_int err;

    a->device = clattn_context_device(harness_ctx);
    a->context = clCreateContext(NULL, 1, &a->device, NULL, NULL, &err);
    assert_int_equal(err, CL_SUCCESS);
    a->queue = clCreateCommandQueue(a->context, a->device, properties, &err);
    assert_int_equal(err, CL_SUCCESS);
}

static cl_uint queue_refs(cl_command_queue queue)
{
    cl_uint refs = 0;

    clGetCommandQueueInfo(queue, CL_QUEUE_REFERENCE_COUNT, sizeof(refs), &refs, NULL);
    return refs;
}

static cl_uint context_refs(cl_context context)
{
    cl_uint refs = 0;

    clGetContextInfo(context, CL_CONTEXT_REFERENCE_COUNT, sizeof(refs), &refs, NULL);
    return refs;
}

/*
 * Called after clattn let go: only our own references may be left. Drivers
 * free finished commands, which hold references too, in the background, so
 * the counts get a second to settle.
 */
static void app_release(app_objects *a)
{
    struct timespec tick = {0, 10 * 1000 * 1000};

    for (int i = 0; i < 100 && queue_refs(a->queue) > 1; i++)
        nanosleep(&tick, NULL);
    assert_int_equal(queue_refs(a->queue), 1);
    assert_int_equal(clReleaseCommandQueue(a->queue), CL_SUCCESS);

    for (int i = 0; i < 100 && context_refs(a->context) > 1; i++)
        nanosleep(&tick, NULL);
    assert_int_equal(context_refs(a->context), 1);
    assert_int_equal(clReleaseContext(a->context), CL_SUCCESS);
}

static void wrap_runs_on_application_objects(void **state)
{
    clattn_context *ctx = NULL;
    clattn_desc d;
    app_objects a;

    (void)state;
    app_make(&a, CL_QUEUE_PROFILING_ENABLE);
    EXPECT_OK(NULL, clattn_context_wrap(&ctx, a.context, a.device, a.queue, NULL));
    assert_ptr_equal(clattn_context_cl_context(ctx), a.context);
    assert_ptr_equal(clattn_context_device(ctx), a.device);
    assert_ptr_equal(clattn_context_queue(ctx), a.queue);

    base_desc(&d);
    d.causal = 1;
    d.want_lse = 1;
    harness_check(ctx, &d);
    clattn_context_destroy(ctx);

    /* The objects stay usable after clattn let go of them. */
    cl_int err;
    cl_mem mem = clCreateBuffer(a.context, CL_MEM_READ_WRITE, 64, NULL, &err);

    assert_int_equal(err, CL_SUCCESS);
    clReleaseMemObject(mem);
    assert_int_equal(clFinish(a.queue), CL_SUCCESS);
    app_release(&a);
}

static void wrap_rejects_out_of_order_queue(void **state)
{
    cl_command_queue_properties supported = 0;
    clattn_context *ctx = NULL;
    app_objects a;

    (void)state;
    clGetDeviceInfo(clattn_context_device(harness_ctx), CL_DEVICE_QUEUE_PROPERTIES,
                    sizeof(supported), &supported, NULL);
    if (!(supported & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE))
        skip();

    app_make(&a, CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE);
    EXPECT_STATUS(NULL, clattn_context_wrap(&ctx, a.context, a.device, a.queue, NULL),
                  CLATTN_INVALID_ARGUMENT);
    assert_null(ctx);
    assert_true(strlen(clattn_context_message(NULL)) > 0);
    app_release(&a);
}

static void wrap_rejects_missing_handles(void **state)
{
    clattn_context *ctx = NULL;
    app_objects a;

    (void)state;
    app_make(&a, 0);
    EXPECT_STATUS(NULL, clattn_context_wrap(&ctx, NULL, a.device, a.queue, NULL),
                  CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(NULL, clattn_context_wrap(&ctx, a.context, NULL, a.queue, NULL),
                  CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(NULL, clattn_context_wrap(&ctx, a.context, a.device, NULL, NULL),
                  CLATTN_INVALID_ARGUMENT);
    assert_null(ctx);
    app_release(&a);
}

/* Timing needs a profiling queue; a wrapped queue without it is refused. */
static void timed_run_needs_profiling(void **state)
{
    clattn_context *ctx = NULL;
    app_objects a;
    double ms = -1.0;
    fixture f;

    (void)state;
    app_make(&a, 0);
    EXPECT_OK(NULL, clattn_context_wrap(&ctx, a.context, a.device, a.queue, NULL));
    fixture_make(&f, ctx, 1);
    EXPECT_STATUS(ctx,
                  clattn_plan_run_timed(f.plan, f.mem[0], f.mem[1], f.mem[2], f.mem[3],
                                        f.mem[4], &ms),
                  CLATTN_UNSUPPORTED);
    assert_true(strlen(clattn_context_message(ctx)) > 0);

    fixture_free(&f);
    clattn_context_destroy(ctx);
    app_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(status_names_and_texts),
        cmocka_unit_test(variant_names),
        cmocka_unit_test(version_matches_header),
        cmocka_unit_test(defaults),
        cmocka_unit_test(tensor_bytes_follow_defaults),
        cmocka_unit_test(tensor_bytes_of_every_tensor),
        cmocka_unit_test(tensor_bytes_rejects),
        cmocka_unit_test(base_desc_is_accepted),
        cmocka_unit_test(every_field_out_of_range),
        cmocka_unit_test(bad_scales),
        cmocka_unit_test(linear_refuses_lse_and_windows),
        cmocka_unit_test(linear_accepts_its_options),
        cmocka_unit_test(auto_picks_window_for_windows),
        cmocka_unit_test(kv_heads_must_divide),
        cmocka_unit_test(overflow_is_invalid_shape),
        cmocka_unit_test(naive_workspace_too_large),
        cmocka_unit_test(null_handles),
        cmocka_unit_test(buffers_too_small),
        cmocka_unit_test(aliased_outputs),
        cmocka_unit_test(missing_buffers),
        cmocka_unit_test(fresh_context_has_no_message),
        cmocka_unit_test(no_such_device),
        cmocka_unit_test(wrap_runs_on_application_objects),
        cmocka_unit_test(wrap_rejects_out_of_order_queue),
        cmocka_unit_test(wrap_rejects_missing_handles),
        cmocka_unit_test(timed_run_needs_profiling),
    };

    return cmocka_run_group_tests_name("api", tests, harness_setup, harness_teardown);
}
