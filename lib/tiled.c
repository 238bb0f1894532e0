/*
 * The tiled (flash) variant: one kernel launch, O(N) memory, in a CPU shape
 * (tiled_cpu.cl) or a GPU shape (tiled_gpu.cl).
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

typedef struct tiled {
    cl_kernel kernel;
    int per_head; /* blocks per query head, or 0 when blocks pack heads */
    int splits;   /* work-items sharing a block's band of keys */
    size_t global[2];
    size_t local[2];
    cl_kernel combine; /* merges the shares when splits > 1 */
    cl_mem part;
    size_t combine_global[2];
} tiled;

/*
 * Decode and other small problems leave most of a device idle: with fewer
 * than four blocks of rows per compute unit, each block's band of keys is
 * shared among several work-items, each share at least four tiles long.
 */
static int choose_splits(const clattn_plan *plan, size_t blocks, int keys)
{
    const size_t target = 4 * (size_t)plan->ctx->info.compute_units;
    long band = (long)plan->left + plan->right + 1;
    size_t want, most;

    if (band > plan->desc.kv_len)
        band = plan->desc.kv_len;
    if (blocks >= target)
        return 1;
    want = (target + blocks - 1) / blocks;
    most = (size_t)band / (4 * (size_t)keys);
    if (want > most)
        want = most;
    return want > 64 ? 64 : want < 1 ? 1 : (int)want;
}

/* Tiles for the CPU shape: the desc's, else the tuned ones, else the
 * built-in table's for the device, else 16 rows (two float8) by 32 keys,
 * the measured sweet spot on PoCL with AVX2; see bench/NOTES.md. */
static clattn_status cpu_tiles(clattn_plan *plan, int *rows, int *keys)
{
    const clattn_desc *d = &plan->desc;
    clattn_tuning t = {CLATTN_SHAPE_CPU, 16, 32};

    if (plan->tuning.kernel_shape == CLATTN_SHAPE_CPU)
        t = plan->tuning;
    else
        clattn__tuning_builtin(&plan->ctx->info, CLATTN_SHAPE_CPU, &t);
    *rows = d->block_q ? d->block_q : t.block_q;
    *keys = d->block_k ? d->block_k : t.block_k;
    if (*rows % 8 || *rows > 64)
        return clattn__fail(plan->ctx, CLATTN_INVALID_ARGUMENT,
                            "desc.block_q is %d; the CPU shape needs a multiple of 8 "
                            "up to 64",
                            *rows);
    if (*keys % 4 || *keys > 256)
        return clattn__fail(plan->ctx, CLATTN_INVALID_ARGUMENT,
                            "desc.block_k is %d; the CPU shape needs a multiple of 4 "
                            "up to 256",
                            *keys);
    return CLATTN_OK;
}

/* Tiles for the GPU shape: the K and V tiles must fit in local memory. */
static clattn_status gpu_tiles(clattn_plan *plan, int *rows, int *keys)
{
    const clattn_desc *d = &plan->desc;
    const clattn_device_info *info = &plan->ctx->info;
    size_t per_key = (size_t)(d->head_dim + d->v_head_dim) * sizeof(float);

    const int tuned = plan->tuning.kernel_shape == CLATTN_SHAPE_GPU;

    *rows = d->block_q ? d->block_q : tuned ? plan->tuning.block_q : 64;
    if (!d->block_q && (size_t)*rows > info->max_work_group)
        *rows = (int)info->max_work_group;
    if ((size_t)*rows > info->max_work_group)
        return clattn__fail(plan->ctx, CLATTN_INVALID_ARGUMENT,
                            "desc.block_q is %d; the device's work-groups hold at most "
                            "%zu work-items",
                            *rows, info->max_work_group);
    *keys = d->block_k ? d->block_k : tuned ? plan->tuning.block_k : 32;
    if (!d->block_k)
        while (*keys > 1 && *keys * per_key > info->local_mem / 2)
            *keys /= 2;
    if (*keys > 256 || *keys * per_key > info->local_mem)
        return clattn__fail(plan->ctx, CLATTN_UNSUPPORTED,
                            "K/V tiles of %d keys need %zu bytes of local memory; the "
                            "device has %llu",
                            *keys, *keys * per_key, (unsigned long long)info->local_mem);
    return CLATTN_OK;
}

/* The workspace and kernel that merge the shares of a split run. */
static clattn_status build_combine(clattn_plan *plan, tiled *t)
{
    const clattn_desc *d = &plan->desc;
    const size_t rows = (size_t)plan->group * d->q_len;
    const size_t bytes = t->global[1] * rows * (size_t)t->splits *
                         ((size_t)d->v_head_dim + 2) * sizeof(float);
    const int o_ss = (int)plan->o_str.seq;
    char options[512];
    cl_program program;
    clattn_status status;
    cl_int err;

    t->part = clCreateBuffer(plan->ctx->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    clattn__fault_mem(plan->ctx, &t->part, &err);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "clCreateBuffer (split workspace)");
    plan->workspace_bytes += bytes;

    clattn__common_options(plan, options, sizeof(options));
    status = clattn__program_get(plan->ctx, "combine", options, &program);
    if (status)
        return status;
    t->combine = clCreateKernel(program, "attn_combine", &err);
    clReleaseProgram(program);
    if (err == CL_SUCCESS)
        err = clattn__set_args(t->combine, 0, 1, sizeof(cl_mem), &t->part);
    if (err == CL_SUCCESS)
        err = clattn__set_args(t->combine, 3, 7, sizeof(int), &d->q_len, sizeof(int),
                               &d->kv_heads, sizeof(int), &plan->group, sizeof(int),
                               &t->splits, sizeof(cl_ulong), &plan->o_str.batch,
                               sizeof(cl_ulong), &plan->o_str.head, sizeof(int), &o_ss);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "creating the combine kernel");
    t->combine_global[0] = rows;
    t->combine_global[1] = t->global[1];
    return CLATTN_OK;
}

/*
 * Decode on a CPU: with at most eight rows per key/value head, the flash
 * kernel's lanes along rows would mostly idle, so attn_decode_cpu runs its
 * lanes along the head dimension instead (cl/decode_cpu.cl). Its rows per
 * work-item are the head's rows rounded up to a power of two.
 */
static int decode_rows(const clattn_plan *plan)
{
    const clattn_desc *d = &plan->desc;
    const long rows = (long)plan->group * d->q_len;
    int rb = 1;

    if (plan->shape != CLATTN_SHAPE_CPU || rows > 8 || d->head_dim % 8 ||
        d->v_head_dim % 8)
        return 0;
    while (rb < rows)
        rb *= 2;
    return rb;
}

static clattn_status build_decode(clattn_plan *plan, tiled *t, int rb)
{
    const int keys = 32;
    char options[512];
    clattn_status status;
    cl_program program;
    cl_int err;
    int n;

    t->per_head = 0;
    t->global[1] = (size_t)plan->desc.batch * plan->desc.kv_heads;
    t->splits = choose_splits(plan, t->global[1], keys);
    t->global[0] = (size_t)t->splits;
    t->local[0] = 1;
    t->local[1] = 1;

    n = clattn__common_options(plan, options, sizeof(options));
    snprintf(options + n, sizeof(options) - n, " -D RB=%d -D BK=%d -D SPLIT=%d", rb, keys,
             t->splits > 1);
    status = clattn__program_get(plan->ctx, "decode_cpu", options, &program);
    if (status)
        return status;
    t->kernel = clCreateKernel(program, "attn_decode_cpu", &err);
    clReleaseProgram(program);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "clCreateKernel");
    return t->splits > 1 ? build_combine(plan, t) : CLATTN_OK;
}

static clattn_status build(clattn_plan *plan, tiled *t)
{
    const int cpu = plan->shape == CLATTN_SHAPE_CPU;
    const char *family = cpu ? "tiled_cpu" : "tiled_gpu";
    const int rb = decode_rows(plan);
    char options[512];
    int rows = 0, keys = 0, n;
    clattn_status status;
    cl_program program;
    cl_int err;

    status = cpu ? cpu_tiles(plan, &rows, &keys) : gpu_tiles(plan, &rows, &keys);
    if (status)
        return status;
    if (rb)
        return build_decode(plan, t, rb);

    /* Blocks stay within one query head unless a head has fewer queries
     * than a block, as in decode: then packing the group's heads into one
     * block lets them share every K and V load. */
    const size_t q_len = (size_t)plan->desc.q_len, per_block = (size_t)rows;
    const size_t heads = (size_t)plan->desc.batch * plan->desc.kv_heads;

    t->per_head = q_len >= per_block ? (int)((q_len + per_block - 1) / per_block) : 0;
    t->global[0] = t->per_head ? (size_t)plan->group * t->per_head
                               : (plan->group * q_len + per_block - 1) / per_block;
    t->global[1] = heads;
    t->splits = choose_splits(plan, t->global[0] * heads, keys);
    t->global[0] *= (size_t)t->splits;
    t->local[0] = 1;
    t->local[1] = 1;
    if (!cpu) {
        t->global[0] *= per_block;
        t->local[0] = per_block;
    }

    n = clattn__common_options(plan, options, sizeof(options));
    snprintf(options + n, sizeof(options) - n,
             cpu ? " -D BQV=%d -D BK=%d -D SPLIT=%d" : " -D BQ=%d -D BK=%d -D SPLIT=%d",
             cpu ? rows / 8 : rows, keys, t->splits > 1);
    status = clattn__program_get(plan->ctx, family, options, &program);
    if (status)
        return status;
    t->kernel = clCreateKernel(program, cpu ? "attn_tiled_cpu" : "attn_tiled_gpu", &err);
    clReleaseProgram(program);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "clCreateKernel");

    if (!cpu) {
        size_t limit = 0;

        clGetKernelWorkGroupInfo(t->kernel, plan->ctx->device, CL_KERNEL_WORK_GROUP_SIZE,
                                 sizeof(limit), &limit, NULL);
        if (limit && limit < (size_t)rows)
            return clattn__fail(plan->ctx, CLATTN_UNSUPPORTED,
                                "the device runs this kernel with at most %zu work-items "
                                "per group; set desc.block_q to at most that",
                                limit);
    }

    return t->splits > 1 ? build_combine(plan, t) : CLATTN_OK;
}

static clattn_status set_fixed_args(clattn_plan *plan, tiled *t)
{
    const clattn_desc *d = &plan->desc;
    const float scale_log2 = d->scale * 1.4426950408889634f;
    const int q_ss = (int)plan->q_str.seq, k_ss = (int)plan->k_str.seq;
    const int v_ss = (int)plan->v_str.seq, o_ss = (int)plan->o_str.seq;
    cl_int err = CL_SUCCESS;
    const struct {
        size_t size;
        const void *value;
    } args[] = {
        {sizeof(int), &d->q_len},
        {sizeof(int), &d->kv_len},
        {sizeof(int), &d->kv_heads},
        {sizeof(int), &plan->group},
        {sizeof(int), &t->per_head},
        {sizeof(int), &plan->left},
        {sizeof(int), &plan->right},
        {sizeof(float), &scale_log2},
        {sizeof(cl_ulong), &plan->q_str.batch},
        {sizeof(cl_ulong), &plan->q_str.head},
        {sizeof(int), &q_ss},
        {sizeof(cl_ulong), &plan->k_str.batch},
        {sizeof(cl_ulong), &plan->k_str.head},
        {sizeof(int), &k_ss},
        {sizeof(cl_ulong), &plan->v_str.batch},
        {sizeof(cl_ulong), &plan->v_str.head},
        {sizeof(int), &v_ss},
        {sizeof(cl_ulong), &plan->o_str.batch},
        {sizeof(cl_ulong), &plan->o_str.head},
        {sizeof(int), &o_ss},
        {sizeof(int), &t->splits},
        {sizeof(cl_mem), t->part ? &t->part : &plan->dummy},
    };

    for (cl_uint i = 0; i < sizeof(args) / sizeof(args[0]) && err == CL_SUCCESS; i++)
        err = clSetKernelArg(t->kernel, 5 + i, args[i].size, args[i].value);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "clSetKernelArg");
    return CLATTN_OK;
}

static void destroy(clattn_plan *plan)
{
    tiled *t = plan->impl;

    if (!t)
        return;
    if (t->kernel)
        clReleaseKernel(t->kernel);
    if (t->combine)
        clReleaseKernel(t->combine);
    if (t->part)
        clReleaseMemObject(t->part);
    free(t);
    plan->impl = NULL;
}

static clattn_status setup(clattn_plan *plan)
{
    tiled *t = calloc(1, sizeof(*t));
    clattn_status status;

    if (!t)
        return clattn__fail(plan->ctx, CLATTN_HOST_MEMORY, "out of host memory");
    plan->impl = t;
    status = build(plan, t);
    if (!status)
        status = set_fixed_args(plan, t);
    return status;
}

static clattn_status run(clattn_plan *plan, clattn_run_args *args)
{
    tiled *t = plan->impl;
    cl_event event;
    cl_int err;

    err = clattn__set_args(t->kernel, 0, 5, sizeof(cl_mem), &args->q, sizeof(cl_mem),
                           &args->k, sizeof(cl_mem), &args->v, sizeof(cl_mem), &args->o,
                           sizeof(cl_mem), &args->lse);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "clSetKernelArg");
    err = clEnqueueNDRangeKernel(plan->ctx->queue, t->kernel, 2, NULL, t->global,
                                 t->local, 0, NULL, &event);
    err = clattn__fault_call(plan->ctx, CLATTN_FAULT_ENQUEUE, err, &event);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "clEnqueueNDRangeKernel");
    clattn__run_track(args, event);
    if (!t->combine)
        return CLATTN_OK;

    err = clattn__set_args(t->combine, 1, 2, sizeof(cl_mem), &args->o, sizeof(cl_mem),
                           &args->lse);
    if (err == CL_SUCCESS)
        err = clEnqueueNDRangeKernel(plan->ctx->queue, t->combine, 2, NULL,
                                     t->combine_global, NULL, 0, NULL, &event);
    err = clattn__fault_call(plan->ctx, CLATTN_FAULT_ENQUEUE, err, &event);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "running the combine kernel");
    clattn__run_track(args, event);
    return CLATTN_OK;
}

const clattn_variant_ops clattn__tiled_ops = {setup, run, destroy};

/*
 * The window variant runs the same kernels: they already walk only the band
 * of keys each block of rows may see (and mask only the tiles on its edges),
 * which is what makes a window's cost grow with N * W rather than N^2. It is
 * a variant of its own so that a window always reaches these kernels, however
 * the tiled variant's kernels evolve for full attention.
 */
const clattn_variant_ops clattn__window_ops = {setup, run, destroy};
