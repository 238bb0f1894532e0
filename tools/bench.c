#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "peak.h"
#include "problem.h"
#include "workload.h"

#define MAX_PROBLEMS 3
#define MAX_REPEAT 1000
#define MAX_VARIANTS 3

/* Problems small enough for the float64 reference to take seconds at most. */
#define VERIFY_LIMIT 2147483648.0

typedef struct bench_args {
    const char *variant, *batch, *heads, *kv_heads, *q_len, *kv_len;
    const char *head_dim, *v_head_dim, *window, *dtype, *layout, *shape;
    const char *feature_map, *repeat, *device;
    int causal, json, help;
} bench_args;

typedef struct bench_setup {
    /* The variant asked for, if chosen; failing to plan it is then an error. */
    clattn_variant variant;
    int chosen;
    int repeat, json;
    uint64_t seed;
    double gemm_gflops, peak_gflops, read_gbps; /* 0 when not measured */
    char device[256];
} bench_setup;

/* The inputs of one problem on the device, and on the host when verified. */
typedef struct bench_data {
    problem p; /* empty unless verified */
    int verified;
    workload w;
} bench_data;

typedef struct bench_result {
    clattn_variant variant;
    clattn_kernel_shape shape;
    double median_ms, min_ms, error;
} bench_result;

/* The float64 reference's multiply-adds, which bound the time it takes. */
static int verifiable(const clattn_desc *d)
{
    int dim = d->head_dim > d->v_head_dim ? d->head_dim : d->v_head_dim;
    double work = (double)d->batch * d->q_heads * workload_pairs(d) * dim;

    if (d->variant == CLATTN_VARIANT_LINEAR)
        work = (double)d->batch * d->q_heads * ((double)d->q_len + d->kv_len) *
               d->head_dim * d->v_head_dim;
    return work <= VERIFY_LIMIT;
}

static void describe_mask(const clattn_desc *d, char *text, size_t size)
{
    int n = snprintf(text, size, "%s", d->causal ? "causal" : "");

    if (d->window_left >= 0 || d->window_right >= 0)
        snprintf(text + n, size - (size_t)n, "%swindow %d,%d", d->causal ? " " : "",
                 d->window_left, d->window_right);
    else if (!d->causal)
        snprintf(text, size, "no mask");
}

static void describe_problem(const clattn_desc *d, char *text, size_t size)
{
    const int linear = d->variant == CLATTN_VARIANT_LINEAR;
    char mask[64];

    describe_mask(d, mask, sizeof mask);
    snprintf(text, size, "B=%d Hq=%d Hkv=%d Lq=%d Lk=%d D=%d Dv=%d %s %s %s%s%s",
             d->batch, d->q_heads, d->kv_heads, d->q_len, d->kv_len, d->head_dim,
             d->v_head_dim, d->dtype == CLATTN_F16 ? "f16" : "f32",
             d->layout == CLATTN_LAYOUT_BSHD ? "bshd" : "bhsd", mask,
             linear ? ", linear attention with phi " : "",
             linear ? cli_feature_map_name(d->feature_map) : "");
}

/* Notes a slow step on stderr, so that stdout stays clean for results. */
static void progress(const char *format, ...)
{
    va_list args;

    fputs("clattn: ", stderr);
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputs("\n", stderr);
    fflush(stderr);
}

static int prepare(clattn_context *ctx, const clattn_desc *d, const bench_setup *s,
                   bench_data *b)
{
    char text[256];

    if (!b->verified)
        return workload_random(ctx, "bench", d, s->seed, &b->w);

    describe_problem(d, text, sizeof text);
    progress("computing the float64 reference for %s...", text);
    if (problem_init(&b->p, d, s->seed) != 0)
        return cli_error("bench: out of host memory for the reference");
    return workload_problem(ctx, "bench", &b->p, &b->w);
}

static void release(bench_data *b)
{
    workload_release(&b->w);
    problem_free(&b->p);
    memset(b, 0, sizeof *b);
}

/* Checks the warm-up run's output against the reference. */
static int verify(clattn_context *ctx, const bench_setup *s, const bench_data *b,
                  bench_result *r)
{
    void *o = malloc(b->w.o_bytes);
    cl_int err;

    if (o == NULL)
        return cli_error("bench: out of host memory");
    err = clEnqueueReadBuffer(clattn_context_queue(ctx), b->w.o, CL_TRUE, 0, b->w.o_bytes,
                              o, 0, NULL, NULL);
    r->error = err == CL_SUCCESS ? problem_output_error(&b->p, o) : INFINITY;
    free(o);

    if (err != CL_SUCCESS)
        return cli_error("bench: reading the output failed (OpenCL error %d)", (int)err);
    if (!(r->error <= problem_tolerance(&b->p)))
        return cli_error("bench: %s: relative error %.3g exceeds the tolerance %.1g "
                         "(replay with CLATTN_TEST_SEED=%llu)",
                         clattn_variant_name(r->variant), r->error,
                         problem_tolerance(&b->p), (unsigned long long)s->seed);
    return 0;
}

static clattn_status time_runs(clattn_plan *plan, const bench_setup *s,
                               const bench_data *b, bench_result *r)
{
    double *times = malloc((size_t)s->repeat * sizeof *times);
    clattn_status status = CLATTN_OK;

    if (times == NULL)
        return CLATTN_HOST_MEMORY;
    for (int i = 0; i < s->repeat && status == CLATTN_OK; i++)
        status =
            clattn_plan_run_timed(plan, b->w.q, b->w.k, b->w.v, b->w.o, NULL, &times[i]);

    if (status == CLATTN_OK) {
        r->median_ms = cli_median(times, s->repeat);
        r->min_ms = times[0];
    }
    free(times);
    return status;
}

/* Warms up (and verifies) the plan, then times it. */
static int measure(clattn_context *ctx, clattn_plan *plan, const clattn_desc *d,
                   const bench_setup *s, const bench_data *b, bench_result *r)
{
    clattn_status status;
    double ms;

    r->variant = clattn_plan_variant(plan);
    r->shape = clattn_plan_kernel_shape(plan);
    r->error = NAN;

    if (workload_poison(ctx, d, &b->w) != CL_SUCCESS)
        return cli_error("bench: clEnqueueFillBuffer failed");
    status = clattn_plan_run_timed(plan, b->w.q, b->w.k, b->w.v, b->w.o, NULL, &ms);
    if (status != CLATTN_OK)
        return cli_library_error(status, ctx);
    if (b->verified && verify(ctx, s, b, r) != 0)
        return CLI_FAILED;

    status = time_runs(plan, s, b, r);
    if (status != CLATTN_OK)
        return cli_library_error(status, ctx);
    return 0;
}

static void json_string(const char *key, const char *value)
{
    printf("\"%s\": \"", key);
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    printf("\", ");
}

static void json_number(const char *key, double value, const char *after)
{
    if (isfinite(value))
        printf("\"%s\": %.6g%s", key, value, after);
    else
        printf("\"%s\": null%s", key, after);
}

/* Milliseconds per query row of the batch: what one token costs in decode. */
static double ms_per_token(const clattn_desc *d, const bench_result *r)
{
    return r->median_ms / ((double)d->batch * d->q_len);
}

static void print_json(const clattn_desc *d, const bench_setup *s, const bench_data *b,
                       const bench_result *r, double gflops, double kv_gbps)
{
    putchar('{');
    json_string("variant", clattn_variant_name(r->variant));
    json_string("kernel_shape", cli_kernel_shape_name(r->shape));
    printf("\"batch\": %d, \"q_heads\": %d, \"kv_heads\": %d, \"q_len\": %d, "
           "\"kv_len\": %d, \"head_dim\": %d, \"v_head_dim\": %d, ",
           d->batch, d->q_heads, d->kv_heads, d->q_len, d->kv_len, d->head_dim,
           d->v_head_dim);
    json_string("dtype", d->dtype == CLATTN_F16 ? "f16" : "f32");
    json_string("layout", d->layout == CLATTN_LAYOUT_BSHD ? "bshd" : "bhsd");
    if (r->variant == CLATTN_VARIANT_LINEAR)
        json_string("feature_map", cli_feature_map_name(d->feature_map));
    else
        printf("\"feature_map\": null, ");
    printf("\"causal\": %s, \"window_left\": %d, \"window_right\": %d, \"repeat\": %d, ",
           d->causal ? "true" : "false", d->window_left, d->window_right, s->repeat);
    json_number("median_ms", r->median_ms, ", ");
    json_number("min_ms", r->min_ms, ", ");
    json_number("ms_per_token", ms_per_token(d, r), ", ");
    json_number("gflops", gflops, ", ");
    json_number("gemm_gflops", s->gemm_gflops > 0 ? s->gemm_gflops : NAN, ", ");
    json_number("peak_gflops", s->peak_gflops > 0 ? s->peak_gflops : NAN, ", ");
    json_number("gemm_ratio", gflops / s->gemm_gflops, ", ");
    json_number("peak_ratio", gflops / s->peak_gflops, ", ");
    json_number("kv_gbps", kv_gbps, ", ");
    json_number("read_gbps", s->read_gbps > 0 ? s->read_gbps : NAN, ", ");
    json_number("read_ratio", kv_gbps / s->read_gbps, ", ");
    printf("\"verified\": %s, ", b->verified ? "true" : "false");
    json_number("error", r->error, ", ");
    printf("\"seed\": %llu, ", (unsigned long long)s->seed);
    json_string("device", s->device);
    printf("\"version\": \"%s\"}\n", clattn_version());
}

static void print_ratio(double gflops, double yardstick)
{
    if (yardstick > 0)
        printf(" %8.3f", gflops / yardstick);
    else
        printf(" %8s", "-");
}

static void print_result(const clattn_desc *d, const bench_setup *s, const bench_data *b,
                         const bench_result *r)
{
    double gflops = workload_flops(d) / (r->median_ms * 1e6);
    double kv_gbps = workload_kv_bytes(d) / (r->median_ms * 1e6);

    if (s->json) {
        print_json(d, s, b, r, gflops, kv_gbps);
    } else {
        printf("  %-7s %-5s %10.3f %10.1f", clattn_variant_name(r->variant),
               cli_kernel_shape_name(r->shape), r->median_ms, gflops);
        print_ratio(gflops, s->gemm_gflops);
        print_ratio(gflops, s->peak_gflops);
        printf(" %9.3f %8.1f", 1000.0 * ms_per_token(d, r), kv_gbps);
        print_ratio(kv_gbps, s->read_gbps);
        putchar('\n');
    }
    fflush(stdout);
}

static int bench_variant(clattn_context *ctx, clattn_desc d, clattn_variant variant,
                         const bench_setup *s, const bench_data *b)
{
    clattn_plan *plan = NULL;
    clattn_status status;
    bench_result r;
    int rc;

    d.variant = variant;
    progress("planning %s (compiles kernels unless cached)...",
             clattn_variant_name(variant));
    status = clattn_plan_create(&plan, ctx, &d);
    if (status == CLATTN_UNSUPPORTED && !s->chosen) {
        fprintf(stderr, "clattn: %s does not apply: %s\n", clattn_variant_name(variant),
                clattn_context_message(ctx));
        return 0;
    }
    if (status != CLATTN_OK)
        return cli_library_error(status, ctx);

    memset(&r, 0, sizeof r);
    rc = measure(ctx, plan, &d, s, b, &r);
    if (rc == 0)
        print_result(&d, s, b, &r);
    clattn_plan_destroy(plan);
    return rc;
}

/*
 * The variant asked for, else every softmax variant that applies. Linear
 * attention computes another function, so it runs only when asked for.
 */
static int variants_for(const clattn_desc *d, const bench_setup *s, clattn_variant *list)
{
    int n = 0;

    if (s->chosen) {
        list[n++] = s->variant;
        return n;
    }
    list[n++] = CLATTN_VARIANT_NAIVE;
    list[n++] = CLATTN_VARIANT_TILED;
    if (d->window_left != -1 || d->window_right != -1)
        list[n++] = CLATTN_VARIANT_WINDOW;
    return n;
}

static int bench_problem(clattn_context *ctx, const clattn_desc *d, int always_verify,
                         const bench_setup *s)
{
    clattn_variant variants[MAX_VARIANTS];
    int count = variants_for(d, s, variants);
    bench_data b;
    char text[256];
    int rc;

    memset(&b, 0, sizeof b);
    b.verified = always_verify || verifiable(d);
    rc = prepare(ctx, d, s, &b);

    if (rc == 0 && !s->json) {
        describe_problem(d, text, sizeof text);
        printf("\n%s (%s)\n", text,
               b.verified ? "verified" : "not verified: too large for the reference");
        printf("  %-7s %-5s %10s %10s %8s %8s %9s %8s %8s\n", "variant", "shape",
               "median ms", "GFLOP/s", "x GEMM", "of peak", "us/token", "K/V GB/s",
               "of read");
    }
    for (int i = 0; rc == 0 && i < count; i++)
        rc = bench_variant(ctx, *d, variants[i], s, &b);

    release(&b);
    return rc;
}

static int parse_args(int argc, char **argv, bench_args *a)
{
    const cli_option options[] = {
        {"--variant", NULL, &a->variant, NULL},
        {"--batch", NULL, &a->batch, NULL},
        {"--heads", NULL, &a->heads, NULL},
        {"--kv-heads", NULL, &a->kv_heads, NULL},
        {"--q-len", NULL, &a->q_len, NULL},
        {"--kv-len", NULL, &a->kv_len, NULL},
        {"--head-dim", NULL, &a->head_dim, NULL},
        {"--v-head-dim", NULL, &a->v_head_dim, NULL},
        {"--causal", NULL, NULL, &a->causal},
        {"--window", NULL, &a->window, NULL},
        {"--dtype", NULL, &a->dtype, NULL},
        {"--layout", NULL, &a->layout, NULL},
        {"--shape", NULL, &a->shape, NULL},
        {"--feature-map", NULL, &a->feature_map, NULL},
        {"--repeat", NULL, &a->repeat, NULL},
        {"--json", NULL, NULL, &a->json},
        {"--device", NULL, &a->device, NULL},
        {"--help", "-h", NULL, &a->help},
    };

    memset(a, 0, sizeof *a);
    return cli_parse("bench", argc, argv, options, sizeof options / sizeof options[0]);
}

static int parse_size(const char *name, const char *text, int fallback, int *out)
{
    if (text == NULL) {
        *out = fallback;
        return 0;
    }
    return cli_int("bench", name, text, 1, INT_MAX, out);
}

/* The problem the options describe; sizes left out take the defaults. */
static int custom_problem(const bench_args *a, clattn_desc *d)
{
    if (parse_size("--batch", a->batch, 1, &d->batch) ||
        parse_size("--heads", a->heads, 8, &d->q_heads) ||
        parse_size("--kv-heads", a->kv_heads, d->q_heads, &d->kv_heads) ||
        parse_size("--q-len", a->q_len, 1024, &d->q_len) ||
        parse_size("--kv-len", a->kv_len, d->q_len, &d->kv_len) ||
        parse_size("--head-dim", a->head_dim, 64, &d->head_dim) ||
        parse_size("--v-head-dim", a->v_head_dim, d->head_dim, &d->v_head_dim))
        return CLI_USAGE;

    d->causal = a->causal;
    if (a->window != NULL &&
        cli_window("bench", a->window, &d->window_left, &d->window_right) != 0)
        return CLI_USAGE;
    return 0;
}

static int has_problem_options(const bench_args *a)
{
    const char *sizes[] = {a->batch,  a->heads,    a->kv_heads,   a->q_len,
                           a->kv_len, a->head_dim, a->v_head_dim, a->window};

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (sizes[i] != NULL)
            return 1;
    }
    return a->causal;
}

/* The default set: a short and a long sequence, with and without causality. */
static int default_problems(const clattn_desc *base, clattn_desc *list)
{
    const int lens[MAX_PROBLEMS] = {1024, 1024, 4096};
    const int causal[MAX_PROBLEMS] = {0, 1, 1};

    for (int i = 0; i < MAX_PROBLEMS; i++) {
        list[i] = *base;
        list[i].batch = 1;
        list[i].q_heads = list[i].kv_heads = 8;
        list[i].q_len = list[i].kv_len = lens[i];
        list[i].head_dim = list[i].v_head_dim = 64;
        list[i].causal = causal[i];
    }
    return MAX_PROBLEMS;
}

static int parse_common(const bench_args *a, clattn_desc *base, bench_setup *s)
{
    clattn_variant variant = CLATTN_VARIANT_AUTO;

    if (a->dtype != NULL && strcmp(a->dtype, "f32") != 0 && strcmp(a->dtype, "f16") != 0)
        return cli_usage_error("bench", "--dtype: expected f32 or f16, got '%s'",
                               a->dtype);
    base->dtype =
        a->dtype != NULL && strcmp(a->dtype, "f16") == 0 ? CLATTN_F16 : CLATTN_F32;
    if ((a->layout != NULL && cli_layout("bench", a->layout, &base->layout) != 0) ||
        (a->shape != NULL && cli_kernel_shape("bench", a->shape, &base->kernel_shape)) ||
        (a->variant != NULL && cli_variant("bench", a->variant, &variant) != 0) ||
        (a->feature_map != NULL &&
         cli_feature_map("bench", a->feature_map, &base->feature_map) != 0))
        return CLI_USAGE;

    s->repeat = 5;
    if (a->repeat != NULL &&
        cli_int("bench", "--repeat", a->repeat, 1, MAX_REPEAT, &s->repeat) != 0)
        return CLI_USAGE;

    /* The problem carries the variant so that a linear one gets the
     * reference of linear attention. */
    s->chosen = a->variant != NULL;
    s->variant = variant;
    base->variant = variant;
    s->json = a->json;
    return 0;
}

static void measure_yardsticks(clattn_context *ctx, bench_setup *s)
{
    cl_device_id device = clattn_context_device(ctx);

    clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof s->device - 1, s->device, NULL);

    progress("timing CLBlast SGEMM %d (its first use compiles its kernels)...",
             GEMM_SIZE);
    if (peak_gemm_gflops(ctx, &s->gemm_gflops) != 0)
        s->gemm_gflops = 0.0;
    progress("timing the FMA peak...");
    if (peak_fma_gflops(ctx, &s->peak_gflops) != 0)
        s->peak_gflops = 0.0;
    progress("timing memory reads...");
    if (peak_read_gbps(ctx, &s->read_gbps) != 0)
        s->read_gbps = 0.0;

    if (!s->json) {
        printf("device: %s\n", s->device);
        printf("CLBlast SGEMM %d: %.1f GFLOP/s, FMA peak: %.1f GFLOP/s, "
               "memory read: %.1f GB/s\n",
               GEMM_SIZE, s->gemm_gflops, s->peak_gflops, s->read_gbps);
    }
}

/* Refuses bad sizes before the slow yardsticks; the plan checks the rest. */
static int check_problems(const clattn_desc *list, int count)
{
    for (int i = 0; i < count; i++) {
        for (int t = CLATTN_TENSOR_Q; t <= CLATTN_TENSOR_O; t++) {
            size_t bytes;
            clattn_status status =
                clattn_tensor_bytes(&list[i], (clattn_tensor)t, &bytes);

            if (status != CLATTN_OK)
                return cli_error("bench: %s: %s", clattn_status_name(status),
                                 clattn_status_text(status));
        }
    }
    return 0;
}

static int run_problems(const char *device, const clattn_desc *list, int count,
                        int always_verify, bench_setup *s)
{
    clattn_context *ctx = NULL;
    int rc;

    if (cli_open_context(device, &ctx) != 0)
        return CLI_FAILED;

    measure_yardsticks(ctx, s);
    rc = 0;
    for (int i = 0; i < count && rc == 0; i++)
        rc = bench_problem(ctx, &list[i], always_verify, s);

    clattn_context_destroy(ctx);
    return rc;
}

int cli_bench(int argc, char **argv)
{
    bench_args a;
    bench_setup s;
    clattn_desc base, list[MAX_PROBLEMS];
    int count = 1;
    int custom;
    int rc = parse_args(argc, argv, &a);

    if (rc != 0 || a.help) {
        if (a.help)
            cli_print_usage();
        return rc;
    }

    memset(&s, 0, sizeof s);
    clattn_desc_init(&base);
    rc = parse_common(&a, &base, &s);
    if (rc != 0)
        return rc;

    custom = has_problem_options(&a);
    list[0] = base;
    if (custom)
        rc = custom_problem(&a, &list[0]);
    else
        count = default_problems(&base, list);
    if (rc != 0)
        return rc;

    if (check_problems(list, count) != 0)
        return CLI_FAILED;
    s.seed = problem_seed_from_env();
    return run_problems(a.device, list, count, !custom, &s);
}
