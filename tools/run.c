#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "npy.h"

/* Axis positions of batch, heads, length and head size in each layout. */
typedef struct axes {
    int batch, heads, len, dim;
} axes;

typedef struct run_args {
    const char *q, *k, *v, *o, *lse;
    const char *variant, *feature_map, *window, *scale, *layout, *device, *shape;
    int causal, help;
} run_args;

typedef struct inputs {
    npy_array q, k, v;
} inputs;

static axes layout_axes(clattn_layout layout)
{
    axes bhsd = {0, 1, 2, 3};
    axes bshd = {0, 2, 1, 3};

    return layout == CLATTN_LAYOUT_BSHD ? bshd : bhsd;
}

static int load(const char *path, clattn_layout layout, npy_array *a)
{
    char err[NPY_ERROR_SIZE];
    const char *order = layout == CLATTN_LAYOUT_BSHD ? "[batch, length, heads, dim]"
                                                     : "[batch, heads, length, dim]";

    if (npy_read(path, a, err, sizeof err) != 0)
        return cli_error("%s: %s", path, err);

    if (a->rank != 4)
        return cli_error("%s: expected 4 dimensions %s, found %d", path, order, a->rank);
    for (int i = 0; i < 4; i++) {
        if (a->shape[i] == 0)
            return cli_error("%s: dimension %d is 0; every size must be at least 1", path,
                             i);
        if (a->shape[i] > INT_MAX)
            return cli_error("%s: dimension %d (%zu) is too large", path, i, a->shape[i]);
    }
    return 0;
}

/* Checks that one size of a matches that of ref, naming both files if not. */
static int same(const char *what, const npy_array *a, const char *path,
                const npy_array *ref, const char *ref_path, int axis)
{
    if (a->shape[axis] == ref->shape[axis])
        return 0;
    return cli_error("%s: %s %zu differs from %s's %zu", path, what, a->shape[axis],
                     ref_path, ref->shape[axis]);
}

/* Checks that the three arrays form one problem and describes it. */
static int describe(const run_args *args, const inputs *in, clattn_layout layout,
                    clattn_desc *desc)
{
    axes ax = layout_axes(layout);
    size_t hq = in->q.shape[ax.heads], hkv = in->k.shape[ax.heads];

    if (in->k.dtype != in->q.dtype || in->v.dtype != in->q.dtype) {
        const char *path = in->k.dtype != in->q.dtype ? args->k : args->v;
        npy_dtype dtype = in->k.dtype != in->q.dtype ? in->k.dtype : in->v.dtype;

        return cli_error("%s: dtype %s differs from %s's %s", path, npy_dtype_name(dtype),
                         args->q, npy_dtype_name(in->q.dtype));
    }

    if (same("batch", &in->k, args->k, &in->q, args->q, ax.batch) ||
        same("batch", &in->v, args->v, &in->q, args->q, ax.batch) ||
        same("head size", &in->k, args->k, &in->q, args->q, ax.dim) ||
        same("length", &in->v, args->v, &in->k, args->k, ax.len) ||
        same("head count", &in->v, args->v, &in->k, args->k, ax.heads))
        return CLI_FAILED;
    if (hq % hkv != 0)
        return cli_error("%s: %zu key/value heads do not divide %s's %zu query heads",
                         args->k, hkv, args->q, hq);

    desc->batch = (int)in->q.shape[ax.batch];
    desc->q_heads = (int)hq;
    desc->kv_heads = (int)hkv;
    desc->q_len = (int)in->q.shape[ax.len];
    desc->kv_len = (int)in->k.shape[ax.len];
    desc->head_dim = (int)in->q.shape[ax.dim];
    desc->v_head_dim = (int)in->v.shape[ax.dim];
    desc->dtype = in->q.dtype == NPY_F16 ? CLATTN_F16 : CLATTN_F32;
    desc->layout = layout;
    return 0;
}

/* Applies the options that do not come from the files. */
static int apply_options(const run_args *args, clattn_desc *desc)
{
    if (args->variant != NULL && cli_variant("run", args->variant, &desc->variant) != 0)
        return CLI_USAGE;
    if (args->feature_map != NULL &&
        cli_feature_map("run", args->feature_map, &desc->feature_map) != 0)
        return CLI_USAGE;
    if (args->shape != NULL &&
        cli_kernel_shape("run", args->shape, &desc->kernel_shape) != 0)
        return CLI_USAGE;
    if (args->window != NULL &&
        cli_window("run", args->window, &desc->window_left, &desc->window_right) != 0)
        return CLI_USAGE;
    if (args->scale != NULL &&
        cli_float("run", "--scale", args->scale, &desc->scale) != 0)
        return CLI_USAGE;

    desc->causal = args->causal;
    desc->want_lse = args->lse != NULL;
    return 0;
}

static int write_array(const char *path, npy_dtype dtype, int rank, const size_t *shape,
                       void *data)
{
    char err[NPY_ERROR_SIZE];
    npy_array a;

    memset(&a, 0, sizeof a);
    a.dtype = dtype;
    a.rank = rank;
    a.count = 1;
    for (int i = 0; i < rank; i++) {
        a.shape[i] = shape[i];
        a.count *= shape[i];
    }
    a.bytes = a.count * npy_dtype_size(dtype);
    a.data = data;

    if (npy_write(path, &a, err, sizeof err) != 0)
        return cli_error("%s: %s", path, err);
    return 0;
}

static int write_outputs(const run_args *args, const clattn_desc *d, void *o, float *lse)
{
    size_t o_shape[4] = {(size_t)d->batch, (size_t)d->q_heads, (size_t)d->q_len,
                         (size_t)d->v_head_dim};
    size_t lse_shape[3] = {(size_t)d->batch, (size_t)d->q_heads, (size_t)d->q_len};
    npy_dtype dtype = d->dtype == CLATTN_F16 ? NPY_F16 : NPY_F32;

    if (d->layout == CLATTN_LAYOUT_BSHD) {
        o_shape[1] = (size_t)d->q_len;
        o_shape[2] = (size_t)d->q_heads;
    }

    if (write_array(args->o, dtype, 4, o_shape, o) != 0)
        return CLI_FAILED;
    if (lse != NULL && write_array(args->lse, NPY_F32, 3, lse_shape, lse) != 0)
        return CLI_FAILED;
    return 0;
}

/* Plans and runs the problem on the device, then writes the results. */
static int compute(const run_args *args, const inputs *in, const clattn_desc *desc)
{
    clattn_context *ctx = NULL;
    clattn_plan *plan = NULL;
    size_t o_bytes = 0, lse_bytes = 0;
    void *o = NULL;
    float *lse = NULL;
    clattn_status status;
    int rc;

    if (cli_open_context(args->device, &ctx) != 0)
        return CLI_FAILED;

    status = clattn_plan_create(&plan, ctx, desc);
    if (status == CLATTN_OK)
        status = clattn_tensor_bytes(desc, CLATTN_TENSOR_O, &o_bytes);
    if (status == CLATTN_OK && desc->want_lse)
        status = clattn_tensor_bytes(desc, CLATTN_TENSOR_LSE, &lse_bytes);
    if (status == CLATTN_OK) {
        o = malloc(o_bytes);
        lse = desc->want_lse ? malloc(lse_bytes) : NULL;
        if (o == NULL || (desc->want_lse && lse == NULL))
            status = CLATTN_HOST_MEMORY;
    }
    if (status == CLATTN_OK)
        status = clattn_plan_run_host(plan, in->q.data, in->k.data, in->v.data, o, lse);

    rc = status == CLATTN_OK ? write_outputs(args, desc, o, lse)
                             : cli_library_error(status, ctx);
    free(o);
    free(lse);
    clattn_plan_destroy(plan);
    clattn_context_destroy(ctx);
    return rc;
}

static int parse_args(int argc, char **argv, run_args *args)
{
    const cli_option options[] = {
        {"-q", NULL, &args->q, NULL},
        {"-k", NULL, &args->k, NULL},
        {"-v", NULL, &args->v, NULL},
        {"-o", NULL, &args->o, NULL},
        {"--lse", NULL, &args->lse, NULL},
        {"--variant", NULL, &args->variant, NULL},
        {"--feature-map", NULL, &args->feature_map, NULL},
        {"--causal", NULL, NULL, &args->causal},
        {"--window", NULL, &args->window, NULL},
        {"--scale", NULL, &args->scale, NULL},
        {"--layout", NULL, &args->layout, NULL},
        {"--device", NULL, &args->device, NULL},
        {"--shape", NULL, &args->shape, NULL},
        {"--help", "-h", NULL, &args->help},
    };
    const char *missing;

    memset(args, 0, sizeof *args);
    if (cli_parse("run", argc, argv, options, sizeof options / sizeof options[0]) != 0)
        return CLI_USAGE;
    if (args->help)
        return 0;

    missing = args->q == NULL   ? "-q Q.npy"
              : args->k == NULL ? "-k K.npy"
              : args->v == NULL ? "-v V.npy"
              : args->o == NULL ? "-o O.npy"
                                : NULL;
    if (missing != NULL)
        return cli_usage_error("run", "missing %s", missing);
    return 0;
}

int cli_run(int argc, char **argv)
{
    run_args args;
    inputs in;
    clattn_desc desc;
    clattn_layout layout = CLATTN_LAYOUT_BHSD;
    int rc = parse_args(argc, argv, &args);

    if (rc != 0 || args.help) {
        if (args.help)
            cli_print_usage();
        return rc;
    }

    clattn_desc_init(&desc);
    if (args.layout != NULL && cli_layout("run", args.layout, &layout) != 0)
        return CLI_USAGE;
    rc = apply_options(&args, &desc);
    if (rc != 0)
        return rc;

    memset(&in, 0, sizeof in);
    rc = load(args.q, layout, &in.q);
    if (rc == 0)
        rc = load(args.k, layout, &in.k);
    if (rc == 0)
        rc = load(args.v, layout, &in.v);
    if (rc == 0)
        rc = describe(&args, &in, layout, &desc);
    if (rc == 0)
        rc = compute(&args, &in, &desc);

    npy_free(&in.q);
    npy_free(&in.k);
    npy_free(&in.v);
    return rc;
}
