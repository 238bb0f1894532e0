/*
 * clattn tune: the command line, the configurations it names and their
 * problems, --export and --dry-run. The search itself is in tune_search.c,
 * and that of the naive variant's CLBlast parameters in tune_naive.c.
 *
 * Two options exist for the tests only and stay out of --help:
 *   --test-candidates LIST  replaces the library's space by LIST, written
 *                           "cpu:16x32,gpu:64x32,...", so that a test can
 *                           offer a candidate the library refuses;
 *   --test-corrupt CAND     spoils that candidate's output before it is
 *                           checked, so that a test sees it discarded.
 */
#include "tune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_CONFIGS (TUNE_MAX_HEAD_DIMS * 2)
#define DEFAULT_BUDGET_S 300.0
#define MAX_BUDGET_S 1e6f

typedef struct tune_args {
    const char *variant, *head_dim, *v_head_dim, *dtype, *budget, *device;
    const char *test_candidates, *test_corrupt;
    int export_rows, dry_run, help;
} tune_args;

void tune_name(const clattn_tuning *t, char *text, size_t size)
{
    snprintf(text, size, "%s:%dx%d", cli_kernel_shape_name(t->kernel_shape), t->block_q,
             t->block_k);
}

const char *tune_origin_name(clattn_tuning_origin origin)
{
    return origin == CLATTN_TUNING_DATABASE  ? "database"
           : origin == CLATTN_TUNING_BUILTIN ? "built-in"
                                             : "default";
}

void tune_label(const clattn_desc *key, char *text, size_t size)
{
    snprintf(text, size, "%s %s D=%d Dv=%d", clattn_variant_name(key->variant),
             key->dtype == CLATTN_F16 ? "f16" : "f32", key->head_dim, key->v_head_dim);
}

static int parse_args(int argc, char **argv, tune_args *a)
{
    const cli_option options[] = {
        {"--variant", NULL, &a->variant, NULL},
        {"--head-dim", NULL, &a->head_dim, NULL},
        {"--v-head-dim", NULL, &a->v_head_dim, NULL},
        {"--dtype", NULL, &a->dtype, NULL},
        {"--budget", NULL, &a->budget, NULL},
        {"--device", NULL, &a->device, NULL},
        {"--export", NULL, NULL, &a->export_rows},
        {"--dry-run", NULL, NULL, &a->dry_run},
        {"--test-candidates", NULL, &a->test_candidates, NULL},
        {"--test-corrupt", NULL, &a->test_corrupt, NULL},
        {"--help", "-h", NULL, &a->help},
    };

    memset(a, 0, sizeof *a);
    return cli_parse("tune", argc, argv, options, sizeof options / sizeof options[0]);
}

/* Splits text at commas and calls take on each item; an empty or overlong
 * item is a usage error. Returns 0, or what take returned first. */
static int each_item(const char *name, const char *text,
                     int (*take)(const char *, void *), void *out)
{
    char item[64];

    for (const char *p = text;; p++) {
        size_t n = strcspn(p, ",");
        int rc;

        if (n == 0 || n >= sizeof item)
            return cli_usage_error("tune", "%s: bad list '%s'", name, text);
        memcpy(item, p, n);
        item[n] = '\0';
        if ((rc = take(item, out)) != 0)
            return rc;
        p += n;
        if (*p == '\0')
            return 0;
    }
}

static int take_head_dim(const char *item, void *out)
{
    tune_options *o = out;

    if (o->n_head_dims == TUNE_MAX_HEAD_DIMS)
        return cli_usage_error("tune", "--head-dim: at most %d values",
                               TUNE_MAX_HEAD_DIMS);
    return cli_int("tune", "--head-dim", item, 1, 256, &o->head_dims[o->n_head_dims++]);
}

static int take_dtype(const char *item, void *out)
{
    tune_options *o = out;

    if (strcmp(item, "f32") != 0 && strcmp(item, "f16") != 0)
        return cli_usage_error("tune", "--dtype: expected f32 or f16, got '%s'", item);
    if (o->n_dtypes == 2)
        return cli_usage_error("tune", "--dtype: at most two values");
    o->dtypes[o->n_dtypes++] = strcmp(item, "f16") == 0 ? CLATTN_F16 : CLATTN_F32;
    return 0;
}

/* "cpu:16x32" or "gpu:64x32". */
static int parse_candidate(const char *name, const char *text, clattn_tuning *t)
{
    char shape[4], tail;
    int q, k;

    if (sscanf(text, "%3[a-z]:%dx%d%c", shape, &q, &k, &tail) != 3 || q < 1 || k < 1 ||
        (strcmp(shape, "cpu") != 0 && strcmp(shape, "gpu") != 0))
        return cli_usage_error("tune", "%s: expected cpu:QxK or gpu:QxK, got '%s'", name,
                               text);
    t->kernel_shape = strcmp(shape, "cpu") == 0 ? CLATTN_SHAPE_CPU : CLATTN_SHAPE_GPU;
    t->block_q = q;
    t->block_k = k;
    return 0;
}

static int take_candidate(const char *item, void *out)
{
    tune_options *o = out;

    if (o->n_test == TUNE_MAX_CANDIDATES)
        return cli_usage_error("tune", "--test-candidates: too many");
    return parse_candidate("--test-candidates", item, &o->test_space[o->n_test++]);
}

static int parse_budget(const char *text, double *out)
{
    float v = (float)DEFAULT_BUDGET_S;

    if (text != NULL && cli_float("tune", "--budget", text, &v) != 0)
        return CLI_USAGE;
    if (!(v > 0.0f && v <= MAX_BUDGET_S))
        return cli_usage_error("tune", "--budget: expected seconds above 0, got '%s'",
                               text != NULL ? text : "");
    *out = v;
    return 0;
}

static int parse_variant(const char *text, clattn_variant *out)
{
    *out = CLATTN_VARIANT_TILED;
    if (text == NULL)
        return 0;
    if (cli_variant("tune", text, out) != 0)
        return CLI_USAGE;
    if (*out == CLATTN_VARIANT_AUTO)
        return cli_usage_error("tune",
                               "--variant: expected tiled, window, linear or naive, "
                               "got '%s'",
                               text);
    return 0;
}

static int parse_lists(const tune_args *a, tune_options *o)
{
    const char *dims = a->head_dim                          ? a->head_dim
                       : o->variant == CLATTN_VARIANT_NAIVE ? "64"
                                                            : "64,128";

    if (each_item("--head-dim", dims, take_head_dim, o) != 0 ||
        each_item("--dtype", a->dtype ? a->dtype : "f32", take_dtype, o) != 0)
        return CLI_USAGE;
    if (a->v_head_dim != NULL &&
        cli_int("tune", "--v-head-dim", a->v_head_dim, 1, 256, &o->v_head_dim) != 0)
        return CLI_USAGE;
    if (a->test_candidates != NULL &&
        each_item("--test-candidates", a->test_candidates, take_candidate, o) != 0)
        return CLI_USAGE;
    if (a->test_corrupt != NULL &&
        parse_candidate("--test-corrupt", a->test_corrupt, &o->corrupt) != 0)
        return CLI_USAGE;
    return 0;
}

static int parse_options(const tune_args *a, tune_options *o)
{
    memset(o, 0, sizeof *o);
    o->device = a->device;
    o->dry_run = a->dry_run;
    o->export_rows = a->export_rows;
    if (parse_variant(a->variant, &o->variant) != 0 ||
        parse_budget(a->budget, &o->budget_s) != 0 || parse_lists(a, o) != 0)
        return CLI_USAGE;
    if (o->variant == CLATTN_VARIANT_NAIVE &&
        (o->export_rows || o->n_test > 0 || o->corrupt.block_q > 0))
        return cli_usage_error("tune",
                               "--variant naive: its CLBlast parameters have no tiles "
                               "for --export or the test candidates");
    return 0;
}

/* One key per dtype and head dim, in the order they were given. */
static int make_keys(const tune_options *o, clattn_desc *keys)
{
    int n = 0;

    for (int i = 0; i < o->n_dtypes; i++) {
        for (int j = 0; j < o->n_head_dims; j++) {
            clattn_desc *d = &keys[n++];

            clattn_desc_init(d);
            d->variant = o->variant;
            d->dtype = o->dtypes[i];
            d->head_dim = o->head_dims[j];
            d->v_head_dim = o->v_head_dim ? o->v_head_dim : d->head_dim;
        }
    }
    return n;
}

/* A problem of the configuration, causal as decode is, so that the four
 * problems share one program per candidate; the window variant also gets a
 * band of left + 1 keys. */
static clattn_desc problem_desc(const clattn_desc *key, int q_heads, int kv_heads,
                                int q_len, int kv_len, int left)
{
    clattn_desc d = *key;

    d.q_heads = q_heads;
    d.kv_heads = kv_heads;
    d.q_len = q_len;
    d.kv_len = kv_len;
    d.causal = 1;
    if (key->variant == CLATTN_VARIANT_WINDOW)
        d.window_left = left;
    return d;
}

static void release_problems(tune_problems *pr)
{
    for (int i = 0; i < TUNE_CHECKS; i++) {
        workload_release(&pr->check_buf[i]);
        problem_free(&pr->check[i]);
    }
    for (int j = 0; j < TUNE_SHAPES; j++)
        workload_release(&pr->timed_buf[j]);
}

/*
 * Checks on odd lengths that no tile divides, including a decode-like row
 * whose query heads share a block; timing on a prefill and a decode that
 * reads a long KV cache through grouped heads.
 */
static int prepare_problems(clattn_context *ctx, const clattn_desc *key, uint64_t seed,
                            tune_problems *pr)
{
    const clattn_desc check[TUNE_CHECKS] = {problem_desc(key, 4, 2, 100, 100, 37),
                                            problem_desc(key, 4, 2, 1, 300, 37)};
    int rc = 0;

    memset(pr, 0, sizeof *pr);
    pr->key = *key;
    pr->timed[0] = problem_desc(key, 8, 8, 2048, 2048, 255);
    pr->timed[1] = problem_desc(key, 32, 8, 1, 4096, 1023);

    for (int i = 0; i < TUNE_CHECKS && rc == 0; i++) {
        if (problem_init(&pr->check[i], &check[i], seed + (uint64_t)i) != 0)
            rc = cli_error("tune: out of host memory for the reference");
        else
            rc = workload_problem(ctx, "tune", &pr->check[i], &pr->check_buf[i]);
    }
    for (int j = 0; j < TUNE_SHAPES && rc == 0; j++)
        rc = workload_random(ctx, "tune", &pr->timed[j], seed + 7 + (uint64_t)j,
                             &pr->timed_buf[j]);
    if (rc != 0)
        release_problems(pr);
    return rc;
}

/* Gives each configuration an equal share of the budget that is left, so
 * that what one leaves unused goes to the next. */
static int tune_all(const tune_options *o, clattn_context *ctx, const clattn_desc *keys,
                    int n)
{
    const double start = tune_now(), end = start + o->budget_s;
    const uint64_t seed = problem_seed_from_env();
    int failed = 0;

    for (int i = 0; i < n; i++) {
        double share = (end - tune_now()) / (n - i);
        tune_problems pr;

        if (prepare_problems(ctx, &keys[i], seed, &pr) != 0)
            return CLI_FAILED;
        if (tune_search(o, ctx, &pr, tune_now() + share) != 0)
            failed = 1;
        release_problems(&pr);
    }
    printf("tuned %d configuration%s in %.0f s\n", n - failed, n - failed == 1 ? "" : "s",
           tune_now() - start);
    return failed ? CLI_FAILED : 0;
}

/* Prints text as the body of a C string literal. */
static void print_c_string(const char *text)
{
    size_t n = strlen(text);

    while (n > 0 && text[n - 1] == ' ')
        n--;
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];

        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else
            putchar(c < 0x20 || c == 0x7f ? '?' : c);
    }
    putchar('"');
}

static const char *device_type_name(cl_device_type type)
{
    if (type & CL_DEVICE_TYPE_GPU)
        return "CL_DEVICE_TYPE_GPU";
    if (type & CL_DEVICE_TYPE_CPU)
        return "CL_DEVICE_TYPE_CPU";
    if (type & CL_DEVICE_TYPE_ACCELERATOR)
        return "CL_DEVICE_TYPE_ACCELERATOR";
    return "CL_DEVICE_TYPE_DEFAULT";
}

/* One row of the built-in table in lib/tuning.c, after a comment that says
 * what it was measured for. */
static void print_row(clattn_context *ctx, const clattn_desc *key, const clattn_tuning *t)
{
    cl_device_id device = clattn_context_device(ctx);
    char vendor[256] = "", name[256] = "", label[96];
    cl_device_type type = 0;

    clGetDeviceInfo(device, CL_DEVICE_VENDOR, sizeof vendor - 1, vendor, NULL);
    clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof name - 1, name, NULL);
    clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    tune_label(key, label, sizeof label);

    printf("/* %s */\n{", label);
    print_c_string(vendor);
    printf(", ");
    print_c_string(name);
    printf(", %s, 0, {CLATTN_SHAPE_%s, %d, %d}},\n", device_type_name(type),
           t->kernel_shape == CLATTN_SHAPE_CPU ? "CPU" : "GPU", t->block_q, t->block_k);
}

static int export_rows(clattn_context *ctx, const clattn_desc *keys, int n)
{
    int found = 0;

    for (int i = 0; i < n; i++) {
        clattn_tuning_origin origin;
        clattn_tuning t;
        char label[96];
        clattn_status status = clattn_tuning_lookup(ctx, &keys[i], &t, &origin);

        if (status != CLATTN_OK)
            return cli_library_error(status, ctx);
        tune_label(&keys[i], label, sizeof label);
        if (origin == CLATTN_TUNING_DATABASE) {
            print_row(ctx, &keys[i], &t);
            found++;
        } else {
            fprintf(stderr, "clattn: tune: %s: no tuned entry in %s\n", label,
                    clattn_tuning_file(ctx));
        }
    }
    fflush(stdout);
    if (found == 0)
        return cli_error("tune: nothing to export; run 'clattn tune' first");
    return 0;
}

static void print_space(const clattn_tuning *space, int count)
{
    char name[48];
    int column = 2;

    putchar(' ');
    for (int j = 0; j < count; j++) {
        tune_name(&space[j], name, sizeof name);
        if (column + (int)strlen(name) + 1 > 78) {
            printf("\n ");
            column = 2;
        }
        column += printf(" %s", name);
    }
    putchar('\n');
}

/* Where the search of a configuration would start, and its space. */
static int dry_run_one(const tune_options *o, clattn_context *ctx, const clattn_desc *key)
{
    clattn_tuning space[TUNE_MAX_CANDIDATES], t;
    clattn_tuning_origin origin;
    char label[96], name[48];
    int count = o->n_test;
    clattn_status status = clattn_tuning_lookup(ctx, key, &t, &origin);

    if (status == CLATTN_OK && o->n_test == 0)
        status = clattn_tuning_space(ctx, key, space, TUNE_MAX_CANDIDATES, &count);
    if (status != CLATTN_OK)
        return cli_library_error(status, ctx);
    if (o->n_test > 0)
        memcpy(space, o->test_space, sizeof(clattn_tuning) * (size_t)count);
    count = count < TUNE_MAX_CANDIDATES ? count : TUNE_MAX_CANDIDATES;

    tune_label(key, label, sizeof label);
    tune_name(&t, name, sizeof name);
    printf("%s: now %s (%s), %d candidates\n", label, name, tune_origin_name(origin),
           count);
    print_space(space, count);
    return 0;
}

static int dry_run(const tune_options *o, clattn_context *ctx, const clattn_desc *keys,
                   int n)
{
    for (int i = 0; i < n; i++) {
        if (dry_run_one(o, ctx, &keys[i]) != 0)
            return CLI_FAILED;
    }
    printf("budget %.0f s; tuning file %s\n", o->budget_s, clattn_tuning_file(ctx));
    return 0;
}

/* --export alone prints; with --budget it searches first. */
static int run(const tune_options *o, const tune_args *a, clattn_context *ctx)
{
    clattn_desc keys[MAX_CONFIGS];
    int n = make_keys(o, keys), rc = 0;

    if (o->variant == CLATTN_VARIANT_NAIVE)
        return o->dry_run ? tune_naive_dry_run(o, ctx)
                          : tune_naive(o, ctx, tune_now() + o->budget_s);
    if (o->dry_run)
        return dry_run(o, ctx, keys, n);
    if (!o->export_rows || a->budget != NULL)
        rc = tune_all(o, ctx, keys, n);
    if (o->export_rows && rc == 0)
        rc = export_rows(ctx, keys, n);
    return rc;
}

int cli_tune(int argc, char **argv)
{
    tune_args a;
    tune_options o;
    clattn_context *ctx = NULL;
    int rc = parse_args(argc, argv, &a);

    if (rc != 0 || a.help) {
        if (a.help)
            cli_print_usage();
        return rc;
    }
    if (parse_options(&a, &o) != 0)
        return CLI_USAGE;

    if (cli_open_context(o.device, &ctx) != 0)
        return CLI_FAILED;
    rc = run(&o, &a, ctx);
    clattn_context_destroy(ctx);
    return rc;
}
