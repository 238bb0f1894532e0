/*
 * The tuning database through the public API: entries saved and found
 * again, replaced by key, ignored when stale, junk in the file survived,
 * and plans that follow an entry while computing the same function.
 *
 * Every database here is a file in a scratch folder, reached through a
 * second clattn context on the harness's device; the user's is never read.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define FIELDS 12
#define GEMM_FIELDS 7

static char scratch[512];

static const char *path_of(const char *name)
{
    static char path[1024];

    snprintf(path, sizeof path, "%s/%s", scratch, name);
    return path;
}

static int setup(void **state)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(scratch, sizeof scratch, "%s/clattn-tuning-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(scratch) == NULL)
        return -1;
    return harness_setup(state);
}

static int teardown(void **state)
{
    char command[1200];

    snprintf(command, sizeof command, "rm -rf '%s'", scratch);
    if (system(command) != 0)
        return -1;
    return harness_teardown(state);
}

/* A context on the harness's device whose database is file. */
static clattn_context *open_with(const char *file)
{
    clattn_context_options options;
    clattn_context *ctx = NULL;

    clattn_context_options_init(&options);
    options.tuning_file = file;
    options.log = harness_log;
    EXPECT_OK(NULL, clattn_context_wrap(&ctx, clattn_context_cl_context(harness_ctx),
                                        clattn_context_device(harness_ctx),
                                        clattn_context_queue(harness_ctx), &options));
    assert_string_equal(clattn_tuning_file(ctx), file);
    return ctx;
}

static clattn_desc key_desc(clattn_variant variant, clattn_dtype dtype, int head_dim,
                            int v_head_dim)
{
    clattn_desc d;

    clattn_desc_init(&d);
    d.variant = variant;
    d.dtype = dtype;
    d.q_len = 64;
    d.head_dim = head_dim;
    d.v_head_dim = v_head_dim;
    return d;
}

static clattn_tuning tuning(clattn_kernel_shape shape, int block_q, int block_k)
{
    clattn_tuning t = {shape, block_q, block_k};

    return t;
}

static clattn_tuning_origin lookup(clattn_context *ctx, const clattn_desc *d,
                                   clattn_tuning *t)
{
    clattn_tuning_origin origin = CLATTN_TUNING_DEFAULT;

    EXPECT_OK(ctx, clattn_tuning_lookup(ctx, d, t, &origin));
    return origin;
}

static void expect_entry(clattn_context *ctx, const clattn_desc *d,
                         const clattn_tuning *want)
{
    clattn_tuning got;

    assert_int_equal(lookup(ctx, d, &got), CLATTN_TUNING_DATABASE);
    assert_int_equal(got.kernel_shape, want->kernel_shape);
    assert_int_equal(got.block_q, want->block_q);
    assert_int_equal(got.block_k, want->block_k);
}

/* The built-in table starts CPUs, PoCL's devices, at 16 rows by 32 keys, or
 * 24 by 64 where vectors hold 16 floats (AVX-512, 32 vector registers). */
static void expect_builtin(clattn_context *ctx, const clattn_desc *d)
{
    cl_uint width = 0;
    clattn_tuning got;

    assert_int_equal(clGetDeviceInfo(clattn_context_device(ctx),
                                     CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof width,
                                     &width, NULL),
                     CL_SUCCESS);
    assert_int_equal(lookup(ctx, d, &got), CLATTN_TUNING_BUILTIN);
    assert_int_equal(got.kernel_shape, CLATTN_SHAPE_CPU);
    assert_int_equal(got.block_q, width >= 16 ? 24 : 16);
    assert_int_equal(got.block_k, width >= 16 ? 64 : 32);
}

static char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    char *text;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    rewind(f);
    text = malloc((size_t)n + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    text[n] = '\0';
    if (size != NULL)
        *size = (size_t)n;
    return text;
}

static void spit(const char *path, const char *text, size_t size)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

/*
 * Checks that the file reads as the header says: printable lines, each a
 * comment, twelve tab-separated fields or seven for the naive variant's
 * CLBlast parameters. Returns the number of entries.
 */
static int count_entries(const char *path)
{
    char *text = slurp(path, NULL), *save = NULL;
    int entries = 0;

    for (char *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        int tabs = 0;

        for (const char *p = line; *p; p++) {
            tabs += *p == '\t';
            if ((unsigned char)*p < 0x20 && *p != '\t')
                fail_msg("unprintable byte 0x%02x in %s", (unsigned char)*p, path);
        }
        if (line[0] == '#')
            continue;
        if (tabs != FIELDS - 1 && !(tabs == GEMM_FIELDS - 1 && strstr(line, "\tnaive\t")))
            fail_msg("not an entry: '%s'", line);
        entries++;
    }
    free(text);
    return entries;
}

/* The first entry line of a file, without its newline. */
static void first_entry(const char *path, char *line, size_t size)
{
    char *text = slurp(path, NULL), *save = NULL;

    for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] != '#') {
            snprintf(line, size, "%s", l);
            free(text);
            return;
        }
    }
    fail_msg("no entry in %s", path);
}

/* Replaces field index (0-based) of a tab-separated line with value. */
static void set_field(char *line, size_t size, int index, const char *value)
{
    char copy[4096], *fields[FIELDS], *save = NULL;
    int n = 0, used = 0;

    snprintf(copy, sizeof copy, "%s", line);
    for (char *t = strtok_r(copy, "\t", &save); t && n < FIELDS;
         t = strtok_r(NULL, "\t", &save))
        fields[n++] = t;
    assert_int_equal(n, FIELDS);
    fields[index] = (char *)value;
    for (int i = 0; i < FIELDS; i++)
        used += snprintf(line + used, size - (size_t)used, "%s%s", fields[i],
                         i + 1 < FIELDS ? "\t" : "");
}

static void round_trip(void **state)
{
    const char *file = path_of("round-trip.txt");
    clattn_desc d64 = key_desc(CLATTN_VARIANT_TILED, CLATTN_F32, 64, 64);
    clattn_desc d32 = key_desc(CLATTN_VARIANT_TILED, CLATTN_F32, 32, 32);
    clattn_desc window = key_desc(CLATTN_VARIANT_WINDOW, CLATTN_F32, 64, 64);
    clattn_desc half = key_desc(CLATTN_VARIANT_TILED, CLATTN_F16, 64, 64);
    clattn_desc narrow_v = key_desc(CLATTN_VARIANT_TILED, CLATTN_F32, 64, 32);
    clattn_tuning a = tuning(CLATTN_SHAPE_CPU, 8, 16),
                  b = tuning(CLATTN_SHAPE_CPU, 24, 8);
    clattn_tuning c = tuning(CLATTN_SHAPE_GPU, 32, 16);
    clattn_context *ctx = open_with(file), *again;
    char line[4096], *fields[FIELDS], *save = NULL;
    int n = 0;

    (void)state;
    expect_builtin(ctx, &d64);
    EXPECT_OK(ctx, clattn_tuning_save(ctx, &d64, &a, 123.4));
    expect_entry(ctx, &d64, &a);
    assert_int_equal(count_entries(file), 1);

    /* The same key replaces its line; another key adds one. */
    EXPECT_OK(ctx, clattn_tuning_save(ctx, &d64, &b, 150.0));
    expect_entry(ctx, &d64, &b);
    assert_int_equal(count_entries(file), 1);
    EXPECT_OK(ctx, clattn_tuning_save(ctx, &d32, &c, 3.5));
    assert_int_equal(count_entries(file), 2);
    expect_entry(ctx, &d64, &b);
    expect_entry(ctx, &d32, &c);

    /* Window plans share the tiled kernels' entries; dtype and Dv are keys. */
    expect_entry(ctx, &window, &b);
    expect_builtin(ctx, &half);
    expect_builtin(ctx, &narrow_v);

    /* Another context reads what this one wrote. */
    again = open_with(file);
    expect_entry(again, &d64, &b);
    clattn_context_destroy(again);

    first_entry(file, line, sizeof line);
    for (char *t = strtok_r(line, "\t", &save); t && n < FIELDS;
         t = strtok_r(NULL, "\t", &save))
        fields[n++] = t;
    assert_int_equal(n, FIELDS);
    assert_string_equal(fields[4], "tiled");
    assert_string_equal(fields[5], "f32");
    assert_string_equal(fields[6], "64");
    assert_string_equal(fields[8], "cpu");
    assert_string_equal(fields[9], "24");
    assert_string_equal(fields[10], "8");
    clattn_context_destroy(ctx);
}

/* An entry measured with another kernel source or driver is not trusted. */
static void stale_entries(void **state)
{
    const char *file = path_of("stale.txt");
    const int fields[2] = {3, 2};
    const char *values[2] = {"0123456789abcdef", "another driver"};
    clattn_desc d = key_desc(CLATTN_VARIANT_TILED, CLATTN_F32, 64, 64);
    clattn_tuning t = tuning(CLATTN_SHAPE_CPU, 8, 16);
    clattn_context *ctx = open_with(file);

    (void)state;
    for (int i = 0; i < 2; i++) {
        char line[4096];

        EXPECT_OK(ctx, clattn_tuning_save(ctx, &d, &t, 100.0));
        expect_entry(ctx, &d, &t);
        first_entry(file, line, sizeof line);
        set_field(line, sizeof line, fields[i], values[i]);
        strcat(line, "\n");
        spit(file, line, strlen(line));

        expect_builtin(ctx, &d);
        assert_int_equal(count_entries(file), 1);
    }

    /* Saving again replaces the stale line instead of adding to it. */
    EXPECT_OK(ctx, clattn_tuning_save(ctx, &d, &t, 100.0));
    expect_entry(ctx, &d, &t);
    clattn_context_destroy(ctx);
}

/* Lines a damaged or hand-edited file may hold; none of them is an entry. */
static size_t junk(char *buf, size_t size, const char *valid)
{
    char truncated[4096], bad_shape[4096], zero_block[4096], extra[4200];
    size_t n = 0;

    snprintf(truncated, sizeof truncated, "%.*s", (int)(strlen(valid) / 2), valid);
    snprintf(bad_shape, sizeof bad_shape, "%s", valid);
    set_field(bad_shape, sizeof bad_shape, 8, "tpu");
    snprintf(zero_block, sizeof zero_block, "%s", valid);
    set_field(zero_block, sizeof zero_block, 9, "0");
    snprintf(extra, sizeof extra, "%s\tmore", valid);

    n += (size_t)snprintf(buf + n, size - n,
                          "garbage\nnot\ta\tdatabase\n\t\t\t\n%s\n%s\n%s\n%s\n",
                          truncated, bad_shape, zero_block, extra);
    for (int i = 0; i < 3000; i++)
        buf[n++] = (char)((i * 37 + 11) % 256);
    buf[n++] = '\n';
    for (int i = 0; i < 10000; i++)
        buf[n++] = i % 100 == 99 ? '\t' : 'x';
    buf[n++] = '\n';
    return n;
}

static void corrupt_file(void **state)
{
    const char *file = path_of("corrupt.txt");
    clattn_desc d = key_desc(CLATTN_VARIANT_TILED, CLATTN_F32, 64, 64);
    clattn_desc d32 = key_desc(CLATTN_VARIANT_TILED, CLATTN_F32, 32, 32);
    clattn_tuning t = tuning(CLATTN_SHAPE_CPU, 8, 16),
                  u = tuning(CLATTN_SHAPE_CPU, 32, 8);
    clattn_context *ctx = open_with(file);
    static char buf[65536];
    char valid[4096];
    size_t n;

    (void)state;
    EXPECT_OK(ctx, clattn_tuning_save(ctx, &d, &t, 100.0));
    first_entry(file, valid, sizeof valid);

    /* Junk alone: nothing is found, nothing breaks. */
    n = junk(buf, sizeof buf, valid);
    spit(file, buf, n);
    expect_builtin(ctx, &d);

    /* Junk around a valid line does not hide it. */
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\n", valid);
    n += junk(buf + n, sizeof buf - n, valid);
    spit(file, buf, n);
    expect_entry(ctx, &d, &t);

    /* A save keeps the valid entry, drops the junk and leaves a clean file. */
    EXPECT_OK(ctx, clattn_tuning_save(ctx, &d32, &u, 50.0));
    assert_int_equal(count_entries(file), 2);
    expect_entry(ctx, &d, &t);
    expect_entry(ctx, &d32, &u);

    /* A valid entry that is only the tail of an overlong line is no entry:
     * the reader must not take the piece after a cut for a line. */
    memset(buf, 'x', 2047);
    n = 2047 + (size_t)snprintf(buf + 2047, sizeof buf - 2047, "%s\n", valid);
    spit(file, buf, n);
    expect_builtin(ctx, &d);

    /* An empty file is no database at all. */
    spit(file, "", 0);
    expect_builtin(ctx, &d);
    clattn_context_destroy(ctx);
}

static void unwritable_file(void **state)
{
    const char *blocker = path_of("blocker");
    char file[1100], nested[1100];
    clattn_desc d = key_desc(CLATTN_VARIANT_TILED, CLATTN_F32, 64, 64);
    clattn_tuning t = tuning(CLATTN_SHAPE_CPU, 8, 16);
    clattn_context *ctx;

    (void)state;
    spit(blocker, "a file, not a folder\n", 21);
    snprintf(file, sizeof file, "%s/tuning.txt", blocker);
    ctx = open_with(file);
    EXPECT_STATUS(ctx, clattn_tuning_save(ctx, &d, &t, 1.0), CLATTN_IO_ERROR);
    expect_builtin(ctx, &d);
    clattn_context_destroy(ctx);

    /* Missing folders are made. */
    snprintf(nested, sizeof nested, "%s", path_of("a/b/tuning.txt"));
    ctx = open_with(nested);
    EXPECT_OK(ctx, clattn_tuning_save(ctx, &d, &t, 1.0));
    expect_entry(ctx, &d, &t);
    clattn_context_destroy(ctx);
}

static void bad_arguments(void **state)
{
    clattn_context *ctx = open_with(path_of("never-written.txt"));
    clattn_desc d = key_desc(CLATTN_VARIANT_TILED, CLATTN_F32, 64, 64);
    clattn_desc naive = key_desc(CLATTN_VARIANT_NAIVE, CLATTN_F32, 64, 64);
    clattn_tuning t = tuning(CLATTN_SHAPE_AUTO, 16, 32);
    int count = -1;

    (void)state;
    EXPECT_STATUS(ctx, clattn_tuning_lookup(ctx, NULL, &t, NULL),
                  CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(ctx, clattn_tuning_lookup(ctx, &naive, &t, NULL), CLATTN_UNSUPPORTED);
    EXPECT_STATUS(ctx, clattn_tuning_save(ctx, &d, &t, 1.0), CLATTN_INVALID_ARGUMENT);
    t = tuning(CLATTN_SHAPE_CPU, 0, 32);
    EXPECT_STATUS(ctx, clattn_tuning_save(ctx, &d, &t, 1.0), CLATTN_INVALID_ARGUMENT);
    t = tuning(CLATTN_SHAPE_CPU, 16, 32);
    EXPECT_STATUS(ctx, clattn_tuning_save(ctx, &naive, &t, 1.0), CLATTN_UNSUPPORTED);
    EXPECT_STATUS(ctx, clattn_tuning_space(ctx, &naive, NULL, 0, &count),
                  CLATTN_UNSUPPORTED);
    assert_int_equal(access(path_of("never-written.txt"), F_OK), -1);
    clattn_context_destroy(ctx);
}

/* The space on a CPU device: CPU shapes first, all within the documented
 * limits. */
static void legal_space(void **state)
{
    clattn_desc d = key_desc(CLATTN_VARIANT_TILED, CLATTN_F32, 128, 128);
    clattn_tuning space[512];
    int count = -1, gpu_seen = 0;

    (void)state;
    EXPECT_OK(harness_ctx, clattn_tuning_space(harness_ctx, &d, NULL, 0, &count));
    assert_true(count > 0 && count <= 512);
    EXPECT_OK(harness_ctx, clattn_tuning_space(harness_ctx, &d, space, 512, &count));
    assert_int_equal(space[0].kernel_shape, CLATTN_SHAPE_CPU);
    for (int i = 0; i < count; i++) {
        const clattn_tuning *t = &space[i];

        if (t->kernel_shape == CLATTN_SHAPE_GPU) {
            gpu_seen = 1;
            continue;
        }
        assert_int_equal(t->kernel_shape, CLATTN_SHAPE_CPU);
        assert_false(gpu_seen);
        assert_true(t->block_q % 8 == 0 && t->block_q <= 64);
        assert_true(t->block_k % 4 == 0 && t->block_k <= 256);
    }
}

static double run_plan(clattn_context *ctx, const clattn_desc *d, const problem *p,
                       clattn_kernel_shape shape, void *o)
{
    clattn_plan *plan = NULL;

    EXPECT_OK(ctx, clattn_plan_create(&plan, ctx, d));
    assert_int_equal(clattn_plan_kernel_shape(plan), shape);
    problem_poison(o, p->o_count, d->dtype);
    EXPECT_OK(ctx, clattn_plan_run_host(plan, p->q, p->k, p->v, o, NULL));
    clattn_plan_destroy(plan);
    return problem_output_error(p, o);
}

static uint64_t builds(clattn_context *ctx)
{
    clattn_stats stats;

    EXPECT_OK(ctx, clattn_context_stats(ctx, &stats));
    return stats.programs_compiled + stats.programs_from_disk;
}

/* Relative difference by norm of two fp32 outputs. */
static double difference(const float *a, const float *b, size_t n)
{
    double diff = 0.0, norm = 0.0;

    for (size_t i = 0; i < n; i++) {
        diff += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        norm += (double)b[i] * b[i];
    }
    return sqrt(diff) / fmax(sqrt(norm), 1e-30);
}

/*
 * Plans made before and after an entry is saved compute the same attention;
 * the later ones build the entry's tiles and take its shape, unless the
 * descriptor sets its own.
 */
/* A causal GQA problem of the key's configuration, and room for two outputs
 * to compare plans made before and after a tuning entry. */
static void causal_gqa_problem(clattn_desc *d, int len, problem *p, float **before,
                               float **after)
{
    d->q_heads = 4;
    d->kv_heads = 2;
    d->q_len = d->kv_len = len;
    d->causal = 1;
    assert_int_equal(problem_init(p, d, harness_seed), 0);
    *before = malloc(p->o_count * sizeof(float));
    *after = malloc(p->o_count * sizeof(float));
    assert_non_null(*before);
    assert_non_null(*after);
}

/* Linear's tiles are rows per CPU work-item and keys per chunk; its entries
 * are keyed apart from tiled's, and its plans follow them. */
static void linear_entries(void **state)
{
    clattn_context *ctx = open_with(path_of("linear.txt"));
    clattn_desc d = key_desc(CLATTN_VARIANT_LINEAR, CLATTN_F32, 64, 64);
    clattn_desc tiled = key_desc(CLATTN_VARIANT_TILED, CLATTN_F32, 64, 64);
    clattn_tuning space[64], chunk32 = tuning(CLATTN_SHAPE_CPU, 8, 32), got;
    float *before, *after;
    int count = 0;
    uint64_t built;
    problem p;

    (void)state;
    EXPECT_OK(ctx, clattn_tuning_space(ctx, &d, space, 64, &count));
    assert_true(count > 0 && count <= 64);
    for (int i = 0; i < count; i++) {
        assert_true(space[i].block_k % 8 == 0 && space[i].block_k <= 512);
        if (space[i].kernel_shape == CLATTN_SHAPE_CPU)
            assert_true(space[i].block_q % 8 == 0 && space[i].block_q <= 32);
    }
    assert_int_equal(lookup(ctx, &d, &got), CLATTN_TUNING_DEFAULT);
    assert_int_equal(got.block_k, 64);

    causal_gqa_problem(&d, 150, &p, &before, &after);
    assert_true(run_plan(ctx, &d, &p, CLATTN_SHAPE_CPU, before) <= problem_tolerance(&p));

    EXPECT_OK(ctx, clattn_tuning_save(ctx, &d, &chunk32, 5.0));
    expect_entry(ctx, &d, &chunk32);
    expect_builtin(ctx, &tiled);
    built = builds(ctx);
    assert_true(run_plan(ctx, &d, &p, CLATTN_SHAPE_CPU, after) <= problem_tolerance(&p));
    assert_int_equal(builds(ctx), built + 1);
    assert_true(difference(after, before, p.o_count) <= problem_tolerance(&p));

    free(before);
    free(after);
    problem_free(&p);
    clattn_context_destroy(ctx);
}

static void plans_follow_entries(void **state)
{
    clattn_context *ctx = open_with(path_of("plans.txt"));
    clattn_desc d = key_desc(CLATTN_VARIANT_AUTO, CLATTN_F32, 64, 64);
    clattn_tuning small = tuning(CLATTN_SHAPE_CPU, 8, 8);
    clattn_tuning gpu = tuning(CLATTN_SHAPE_GPU, 32, 16);
    float *before, *after;
    uint64_t built;
    problem p;

    (void)state;
    causal_gqa_problem(&d, 77, &p, &before, &after);
    assert_true(run_plan(ctx, &d, &p, CLATTN_SHAPE_CPU, before) <= problem_tolerance(&p));

    EXPECT_OK(ctx, clattn_tuning_save(ctx, &d, &small, 10.0));
    built = builds(ctx);
    assert_true(run_plan(ctx, &d, &p, CLATTN_SHAPE_CPU, after) <= problem_tolerance(&p));
    assert_int_equal(builds(ctx), built + 1);
    assert_true(difference(after, before, p.o_count) <= problem_tolerance(&p));

    EXPECT_OK(ctx, clattn_tuning_save(ctx, &d, &gpu, 10.0));
    assert_true(run_plan(ctx, &d, &p, CLATTN_SHAPE_GPU, after) <= problem_tolerance(&p));
    assert_true(difference(after, before, p.o_count) <= problem_tolerance(&p));

    d.kernel_shape = CLATTN_SHAPE_CPU;
    built = builds(ctx);
    assert_true(run_plan(ctx, &d, &p, CLATTN_SHAPE_CPU, after) <= problem_tolerance(&p));
    assert_int_equal(builds(ctx), built);

    free(before);
    free(after);
    problem_free(&p);
    clattn_context_destroy(ctx);
}

/*
 * The naive variant's CLBlast parameters. LEGAL is the text form with the
 * kernels' parameters out of CLBlast's order; CANONICAL is how the library
 * writes it back. Its small threshold sends the test problems' GEMMs to the
 * indirect kernel that the Xgemm set tunes.
 */
#define XGEMM_SET                                                                        \
    "Xgemm:VWN=8,VWM=8,MWG=64,NWG=64,KWG=16,MDIMC=8,NDIMC=8,MDIMA=8,NDIMB=8,KWI=2,"      \
    "GEMMK=0,KREG=1,SA=0,SB=0,STRM=0,STRN=0"
#define LEGAL XGEMM_SET ";GemmRoutine:XGEMM_MIN_INDIRECT_SIZE=16"
#define CANONICAL                                                                        \
    "Xgemm:GEMMK=0,KREG=1,KWG=16,KWI=2,MDIMA=8,MDIMC=8,MWG=64,NDIMB=8,NDIMC=8,NWG=64,"   \
    "SA=0,SB=0,STRM=0,STRN=0,VWM=8,VWN=8;GemmRoutine:XGEMM_MIN_INDIRECT_SIZE=16"

/* What the log callback of gemm contexts said last at WARNING or worse, and
 * how many times a plan passed a set to CLBlast. */
static char last_warning[4096];
static int sets_applied;

static void capture_log(void *cookie, clattn_log_level level, const char *message)
{
    (void)cookie;
    if (level <= CLATTN_LOG_WARNING)
        snprintf(last_warning, sizeof last_warning, "%s", message);
    if (strstr(message, "CLBlast GEMM parameters from "))
        sets_applied++;
}

static clattn_context *open_capturing(const char *file)
{
    clattn_context_options options;
    clattn_context *ctx = NULL;

    clattn_context_options_init(&options);
    options.tuning_file = file;
    options.log = capture_log;
    options.log_level = CLATTN_LOG_INFO;
    EXPECT_OK(NULL, clattn_context_wrap(&ctx, clattn_context_cl_context(harness_ctx),
                                        clattn_context_device(harness_ctx),
                                        clattn_context_queue(harness_ctx), &options));
    last_warning[0] = '\0';
    sets_applied = 0;
    return ctx;
}

static clattn_tuning_origin gemm_lookup(clattn_context *ctx, char *params)
{
    clattn_tuning_origin origin = CLATTN_TUNING_BUILTIN;

    EXPECT_OK(ctx,
              clattn_gemm_tuning_lookup(ctx, params, CLATTN_GEMM_TUNING_SIZE, &origin));
    return origin;
}

static void expect_no_gemm(clattn_context *ctx)
{
    char params[CLATTN_GEMM_TUNING_SIZE] = "junk";

    assert_int_equal(gemm_lookup(ctx, params), CLATTN_TUNING_DEFAULT);
    assert_string_equal(params, "");
}

static void expect_gemm(clattn_context *ctx, const char *want)
{
    char params[CLATTN_GEMM_TUNING_SIZE];

    assert_int_equal(gemm_lookup(ctx, params), CLATTN_TUNING_DATABASE);
    assert_string_equal(params, want);
}

/* Sets are saved in canonical form, one per device, next to the tiles. */
static void gemm_round_trip(void **state)
{
    const char *file = path_of("gemm.txt");
    const char *other = "GemmRoutine:XGEMM_MIN_INDIRECT_SIZE=512";
    clattn_desc d = key_desc(CLATTN_VARIANT_TILED, CLATTN_F32, 64, 64);
    clattn_tuning t = tuning(CLATTN_SHAPE_CPU, 8, 16);
    clattn_context *ctx = open_capturing(file), *again;
    char line[4096], *fields[GEMM_FIELDS], *save = NULL;
    char small[16];
    int n = 0;

    (void)state;
    expect_no_gemm(ctx);
    EXPECT_OK(ctx, clattn_tuning_save(ctx, &d, &t, 100.0));
    EXPECT_OK(ctx, clattn_gemm_tuning_save(ctx, LEGAL, 42.5));
    expect_gemm(ctx, CANONICAL);
    expect_entry(ctx, &d, &t);
    assert_int_equal(count_entries(file), 2);

    /* A new set replaces the old; saving tiles keeps it. */
    EXPECT_OK(ctx, clattn_gemm_tuning_save(ctx, other, 50.0));
    expect_gemm(ctx, other);
    assert_int_equal(count_entries(file), 2);
    EXPECT_OK(ctx, clattn_tuning_save(ctx, &d, &t, 110.0));
    expect_gemm(ctx, other);
    assert_int_equal(count_entries(file), 2);

    again = open_capturing(file);
    expect_gemm(again, other);
    clattn_context_destroy(again);

    /* The line: seven fields, keyed by the CLBlast the set was measured with. */
    spit(file, "", 0);
    EXPECT_OK(ctx, clattn_gemm_tuning_save(ctx, LEGAL, 42.5));
    first_entry(file, line, sizeof line);
    for (char *f = strtok_r(line, "\t", &save); f && n < GEMM_FIELDS;
         f = strtok_r(NULL, "\t", &save))
        fields[n++] = f;
    assert_int_equal(n, GEMM_FIELDS);
    assert_string_equal(fields[3], "clblast-1.5.3");
    assert_string_equal(fields[4], "naive");
    assert_string_equal(fields[5], CANONICAL);
    assert_string_equal(fields[6], "42.5");

    EXPECT_STATUS(ctx, clattn_gemm_tuning_lookup(ctx, NULL, 0, NULL),
                  CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(ctx, clattn_gemm_tuning_lookup(ctx, small, sizeof small, NULL),
                  CLATTN_INVALID_ARGUMENT);
    EXPECT_STATUS(ctx, clattn_gemm_tuning_save(ctx, LEGAL, -1.0),
                  CLATTN_INVALID_ARGUMENT);
    assert_string_equal(last_warning, "");
    clattn_context_destroy(ctx);
}

/* A set another CLBlast measured is not applied. */
static void gemm_stale(void **state)
{
    const char *file = path_of("gemm-stale.txt");
    clattn_context *ctx = open_capturing(file);
    char line[4096], *at;

    (void)state;
    EXPECT_OK(ctx, clattn_gemm_tuning_save(ctx, LEGAL, 42.5));
    first_entry(file, line, sizeof line);
    at = strstr(line, "clblast-1.5.3");
    assert_non_null(at);
    memcpy(at, "clblast-9.9.9", 13);
    strcat(line, "\n");
    spit(file, line, strlen(line));
    expect_no_gemm(ctx);
    clattn_context_destroy(ctx);
}

/* Sets that break a rule, each with the words the message must hold. */
static const char *const illegal[][2] = {
    {"", "no CLBlast parameters"},
    {"Xgemm:", "is not NAME=VALUE"},
    {"Xgem:MWG=64", "does not start with Xgemm:"},
    {XGEMM_SET ",FOO=1", "CLBlast has no parameter 'FOO'"},
    {XGEMM_SET ",MWG=64", "MWG is given twice"},
    {"Xgemm:MWG=64", "Xgemm: GEMMK is missing"},
    {XGEMM_SET ";" XGEMM_SET, "Xgemm is given twice"},
    {"GemmRoutine:XGEMM_MIN_INDIRECT_SIZE=-3", "is not an integer"},
    {"GemmRoutine:XGEMM_MIN_INDIRECT_SIZE=99999999", "is not an integer"},
    {"GemmRoutine:XGEMM_MIN_INDIRECT_SIZE=0", "outside [1, 1048576]"},
    {"GemmRoutine:XGEMM_MIN_INDIRECT_SIZE=16;", "does not start with"},
    {"Xgemm:VWN=8,VWM=4,MWG=48,NWG=64,KWG=16,MDIMC=8,NDIMC=8,MDIMA=8,NDIMB=8,KWI=2,"
     "GEMMK=0,KREG=1,SA=0,SB=0,STRM=0,STRN=0",
     "Xgemm: MWG=48 is not a multiple of MDIMC*VWM=32"},
    {"Xgemm:VWN=8,VWM=8,MWG=64,NWG=64,KWG=12,MDIMC=8,NDIMC=8,MDIMA=8,NDIMB=8,KWI=2,"
     "GEMMK=0,KREG=1,SA=0,SB=0,STRM=0,STRN=0",
     "KWG=12 is not a multiple of MDIMC*NDIMC/MDIMA=8"},
    {"Xgemm:VWN=8,VWM=3,MWG=64,NWG=64,KWG=16,MDIMC=8,NDIMC=8,MDIMA=8,NDIMB=8,KWI=2,"
     "GEMMK=0,KREG=1,SA=0,SB=0,STRM=0,STRN=0",
     "VWM=3 is not a vector width"},
    {"XgemmDirect:KWID=2,MDIMAD=8,MDIMCD=8,NDIMBD=8,NDIMCD=8,PADA=1,PADB=2,VWMD=1,"
     "VWND=1,WGD=32",
     "PADB=2 is outside [0, 1]"},
    {"XgemmDirect:KWID=3,MDIMAD=8,MDIMCD=8,NDIMBD=8,NDIMCD=8,PADA=1,PADB=1,VWMD=1,"
     "VWND=1,WGD=32",
     "WGD=32 is not a multiple of KWID=3"},
};

/* Sets the device cannot run: a work-group over its limit, and tiles
 * staged in more local memory than it has. */
static void device_limits(clattn_context *ctx)
{
    const char *too_wide = "XgemmDirect:KWID=2,MDIMAD=128,MDIMCD=128,NDIMBD=128,"
                           "NDIMCD=128,PADA=1,PADB=1,VWMD=1,VWND=1,WGD=128";
    const char *too_deep = "Xgemm:VWN=1,VWM=1,MWG=1024,NWG=1024,KWG=1024,MDIMC=8,"
                           "NDIMC=8,MDIMA=8,NDIMB=8,KWI=2,GEMMK=0,KREG=1,SA=1,SB=1,"
                           "STRM=0,STRN=0";

    EXPECT_STATUS(ctx, clattn_gemm_tuning_apply(ctx, too_wide), CLATTN_INVALID_ARGUMENT);
    assert_non_null(strstr(clattn_context_message(ctx), "work-items is over the device"));
    EXPECT_STATUS(ctx, clattn_gemm_tuning_apply(ctx, too_deep), CLATTN_INVALID_ARGUMENT);
    assert_non_null(strstr(clattn_context_message(ctx), "bytes of local memory"));
}

/* A naive problem with odd lengths, checked on the harness's context. */
static void check_naive(clattn_context *ctx)
{
    clattn_desc d;

    clattn_desc_init(&d);
    d.variant = CLATTN_VARIANT_NAIVE;
    d.q_heads = 4;
    d.kv_heads = 2;
    d.q_len = 77;
    d.kv_len = 150;
    d.head_dim = 64;
    d.causal = 1;
    harness_check(ctx, &d);
}

/*
 * Illegal sets are refused by apply and save with a message naming the
 * rule, and never reach CLBlast; one in the database is skipped with a
 * warning, and naive plans go on computing the right function.
 */
static void gemm_illegal(void **state)
{
    const char *file = path_of("gemm-illegal.txt");
    clattn_context *ctx = open_capturing(file);
    char line[4096], *at;

    (void)state;
    for (size_t i = 0; i < sizeof illegal / sizeof illegal[0]; i++) {
        const char *message;

        EXPECT_STATUS(ctx, clattn_gemm_tuning_apply(ctx, illegal[i][0]),
                      CLATTN_INVALID_ARGUMENT);
        message = clattn_context_message(ctx);
        if (strncmp(message, "params: ", 8) || !strstr(message, illegal[i][1]))
            fail_msg("'%s': expected '%s' in '%s'", illegal[i][0], illegal[i][1],
                     message);
        EXPECT_STATUS(ctx, clattn_gemm_tuning_save(ctx, illegal[i][0], 1.0),
                      CLATTN_INVALID_ARGUMENT);
    }
    assert_int_equal(access(file, F_OK), -1);
    EXPECT_STATUS(ctx, clattn_gemm_tuning_apply(ctx, NULL), CLATTN_INVALID_ARGUMENT);
    device_limits(ctx);

    /* A hand-edited line that breaks a rule: skipped, with a warning. */
    EXPECT_OK(ctx, clattn_gemm_tuning_save(ctx, LEGAL, 1.0));
    first_entry(file, line, sizeof line);
    at = strstr(line, "\tnaive\t");
    assert_non_null(at);
    snprintf(at, sizeof line - (size_t)(at - line), "\tnaive\t%s\t1.0\n", illegal[11][0]);
    spit(file, line, strlen(line));
    expect_no_gemm(ctx);
    if (!strstr(last_warning, "MWG=48 is not a multiple of MDIMC*VWM=32") ||
        !strstr(last_warning, file))
        fail_msg("expected a warning about MWG=48 in %s, got '%s'", file, last_warning);

    /* Plans of a context with that database, and later plans, still work. */
    check_naive(ctx);
    assert_int_equal(sets_applied, 0);
    check_naive(harness_ctx);
    clattn_context_destroy(ctx);
}

/*
 * A naive plan made on a context whose database holds a set passes it to
 * CLBlast, and computes the same function: its GEMMs now run the indirect
 * kernel with the set's tiles, on lengths no tile divides. The override is
 * process-global, so the harness's plans follow it too.
 */
static void gemm_plans_follow(void **state)
{
    const char *file = path_of("gemm-plans.txt");
    clattn_context *ctx = open_capturing(file);

    (void)state;
    EXPECT_OK(ctx, clattn_gemm_tuning_save(ctx, LEGAL, 1.0));
    check_naive(ctx);
    assert_string_equal(last_warning, "");
    assert_true(sets_applied > 0);
    check_naive(harness_ctx);
    clattn_context_destroy(ctx);
}

/* The option names the file; without it, CLATTN_TUNING_FILE does. */
static void file_choice(void **state)
{
    const char *env = getenv("CLATTN_TUNING_FILE");
    clattn_context *ctx = open_with(path_of("chosen.txt"));

    (void)state;
    assert_non_null(env);
    assert_string_equal(clattn_tuning_file(harness_ctx), env);
    assert_string_equal(clattn_tuning_file(ctx), path_of("chosen.txt"));
    clattn_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),           cmocka_unit_test(stale_entries),
        cmocka_unit_test(corrupt_file),         cmocka_unit_test(unwritable_file),
        cmocka_unit_test(bad_arguments),        cmocka_unit_test(legal_space),
        cmocka_unit_test(plans_follow_entries), cmocka_unit_test(linear_entries),
        cmocka_unit_test(file_choice),          cmocka_unit_test(gemm_round_trip),
        cmocka_unit_test(gemm_stale),           cmocka_unit_test(gemm_illegal),
        cmocka_unit_test(gemm_plans_follow),
    };

    return cmocka_run_group_tests_name("tuning", tests, setup, teardown);
}
