/*
 * The linear variant: kernel attention with a feature map, in chunks of keys
 * (cl/linear.cl). The GPU shape takes three launches: chunk states, a scan
 * over chunks, and the output rows. The CPU shape takes one, which walks the
 * chunks of each head in order and needs no workspace.
 */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

typedef struct linear {
    cl_kernel state, scan, output; /* GPU shape */
    cl_kernel cpu;                 /* CPU shape */
    cl_mem phik, states;           /* GPU shape */
    int rows;                      /* CPU shape: query rows per register block */
    int chunk;                     /* keys per chunk */
    size_t state_global[2], scan_global[2], out_global[2], cpu_global[2];
} linear;

static void destroy(clattn_plan *plan)
{
    linear *l = plan->impl;

    if (!l)
        return;
    if (l->state)
        clReleaseKernel(l->state);
    if (l->scan)
        clReleaseKernel(l->scan);
    if (l->output)
        clReleaseKernel(l->output);
    if (l->cpu)
        clReleaseKernel(l->cpu);
    if (l->phik)
        clReleaseMemObject(l->phik);
    if (l->states)
        clReleaseMemObject(l->states);
    free(l);
    plan->impl = NULL;
}

static clattn_status check(clattn_plan *plan)
{
    const clattn_desc *d = &plan->desc;

    if (d->want_lse)
        return clattn__fail(plan->ctx, CLATTN_UNSUPPORTED,
                            "desc.want_lse: linear attention has no log-sum-exp");
    if (d->window_left != -1 || d->window_right != -1)
        return clattn__fail(plan->ctx, CLATTN_UNSUPPORTED,
                            "desc.window_left/window_right: linear attention takes no "
                            "window (only causal)");
    return CLATTN_OK;
}

/* The GPU shape's phi(K) and chunk states. */
static clattn_status workspace(clattn_plan *plan, linear *l, int chunks)
{
    const clattn_desc *d = &plan->desc;
    const double heads = (double)d->batch * d->kv_heads;
    const double phik = heads * d->kv_len * d->head_dim * sizeof(float);
    const double states =
        heads * (chunks + 1.0) * d->head_dim * (d->v_head_dim + 1.0) * sizeof(float);
    const double limit = (double)plan->ctx->info.max_alloc;
    cl_int err;

    if (phik > limit || states > limit)
        return clattn__fail(
            plan->ctx, CLATTN_DEVICE_MEMORY,
            "the linear variant's workspace (%.0f and %.0f bytes) exceeds "
            "the device's largest allocation (%.0f bytes)",
            phik, states, limit);
    l->phik =
        clCreateBuffer(plan->ctx->cl_ctx, CL_MEM_READ_WRITE, (size_t)phik, NULL, &err);
    clattn__fault_mem(plan->ctx, &l->phik, &err);
    if (err == CL_SUCCESS)
        l->states = clCreateBuffer(plan->ctx->cl_ctx, CL_MEM_READ_WRITE, (size_t)states,
                                   NULL, &err);
    clattn__fault_mem(plan->ctx, &l->states, &err);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "clCreateBuffer (linear workspace)");
    plan->workspace_bytes = (size_t)phik + (size_t)states;
    return CLATTN_OK;
}

static clattn_status kernels(clattn_plan *plan, linear *l)
{
    char options[512];
    cl_program program;
    clattn_status status;
    cl_int err;
    int n;

    n = clattn__common_options(plan, options, sizeof(options));
    n += snprintf(options + n, sizeof(options) - n, " -D FEATURE=%d -D LC=%d",
                  (int)plan->desc.feature_map, l->chunk);
    if (plan->shape == CLATTN_SHAPE_CPU)
        snprintf(options + n, sizeof(options) - n, " -D RV=%d", l->rows / 8);
    status = clattn__program_get(plan->ctx, "linear", options, &program);
    if (status)
        return status;
    if (plan->shape == CLATTN_SHAPE_CPU) {
        l->cpu = clCreateKernel(program, "linear_cpu", &err);
    } else {
        l->state = clCreateKernel(program, "linear_chunk_state", &err);
        if (err == CL_SUCCESS)
            l->scan = clCreateKernel(program, "linear_scan", &err);
        if (err == CL_SUCCESS)
            l->output = clCreateKernel(program, "linear_output", &err);
    }
    clReleaseProgram(program);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "clCreateKernel");
    return CLATTN_OK;
}

/* Everything but the tensors, which change per run: the CPU kernel. */
static cl_int cpu_args(clattn_plan *plan, linear *l, int chunks)
{
    const clattn_desc *d = &plan->desc;
    const int q_ss = (int)plan->q_str.seq, k_ss = (int)plan->k_str.seq;
    const int v_ss = (int)plan->v_str.seq, o_ss = (int)plan->o_str.seq;

    return clattn__set_args(
        l->cpu, 4, 17, sizeof(int), &d->q_len, sizeof(int), &d->kv_len, sizeof(int),
        &d->kv_heads, sizeof(int), &plan->group, sizeof(int), &chunks, sizeof(cl_ulong),
        &plan->q_str.batch, sizeof(cl_ulong), &plan->q_str.head, sizeof(int), &q_ss,
        sizeof(cl_ulong), &plan->k_str.batch, sizeof(cl_ulong), &plan->k_str.head,
        sizeof(int), &k_ss, sizeof(cl_ulong), &plan->v_str.batch, sizeof(cl_ulong),
        &plan->v_str.head, sizeof(int), &v_ss, sizeof(cl_ulong), &plan->o_str.batch,
        sizeof(cl_ulong), &plan->o_str.head, sizeof(int), &o_ss);
}

/* Everything but the tensors: the GPU kernels. */
static cl_int gpu_args(clattn_plan *plan, linear *l, int chunks)
{
    const clattn_desc *d = &plan->desc;
    const int k_ss = (int)plan->k_str.seq, v_ss = (int)plan->v_str.seq;
    const int q_ss = (int)plan->q_str.seq, o_ss = (int)plan->o_str.seq;
    cl_int err;

    err = clattn__set_args(l->state, 2, 11, sizeof(cl_mem), &l->phik, sizeof(cl_mem),
                           &l->states, sizeof(int), &d->kv_len, sizeof(int), &d->kv_heads,
                           sizeof(int), &chunks, sizeof(cl_ulong), &plan->k_str.batch,
                           sizeof(cl_ulong), &plan->k_str.head, sizeof(int), &k_ss,
                           sizeof(cl_ulong), &plan->v_str.batch, sizeof(cl_ulong),
                           &plan->v_str.head, sizeof(int), &v_ss);
    if (err == CL_SUCCESS)
        err = clattn__set_args(l->scan, 0, 2, sizeof(cl_mem), &l->states, sizeof(int),
                               &chunks);
    if (err == CL_SUCCESS)
        err = clattn__set_args(l->output, 2, 2, sizeof(cl_mem), &l->phik, sizeof(cl_mem),
                               &l->states);
    if (err == CL_SUCCESS)
        err = clattn__set_args(l->output, 5, 5, sizeof(int), &d->q_len, sizeof(int),
                               &d->kv_len, sizeof(int), &d->kv_heads, sizeof(int),
                               &plan->group, sizeof(int), &chunks);
    if (err == CL_SUCCESS)
        err = clattn__set_args(
            l->output, 10, 9, sizeof(cl_ulong), &plan->q_str.batch, sizeof(cl_ulong),
            &plan->q_str.head, sizeof(int), &q_ss, sizeof(cl_ulong), &plan->v_str.batch,
            sizeof(cl_ulong), &plan->v_str.head, sizeof(int), &v_ss, sizeof(cl_ulong),
            &plan->o_str.batch, sizeof(cl_ulong), &plan->o_str.head, sizeof(int), &o_ss);
    return err;
}

/*
 * Rows per CPU register block and keys per chunk: the descriptor's, else the
 * tuning sources', else 16 and 64. The CPU kernel holds phi of a chunk's keys
 * in private memory, at most 32768 floats.
 */
static clattn_status tiles(clattn_plan *plan, linear *l)
{
    const clattn_desc *d = &plan->desc;
    const int tuned = plan->tuning.kernel_shape == plan->shape;
    const int cpu = plan->shape == CLATTN_SHAPE_CPU;

    l->rows = d->block_q ? d->block_q : tuned ? plan->tuning.block_q : 16;
    l->chunk = d->block_k ? d->block_k : tuned ? plan->tuning.block_k : 64;
    if (cpu && (l->rows % 8 || l->rows > 32))
        return clattn__fail(
            plan->ctx, CLATTN_INVALID_ARGUMENT,
            "desc.block_q is %d; linear's CPU shape needs a multiple of 8 "
            "up to 32",
            l->rows);
    if (l->chunk % 8 || l->chunk > 512)
        return clattn__fail(plan->ctx, CLATTN_INVALID_ARGUMENT,
                            "desc.block_k is %d; linear's chunks need a multiple of 8 up "
                            "to 512",
                            l->chunk);
    if (cpu && l->chunk * ((d->head_dim + 7) / 8 * 8) > 32768)
        return clattn__fail(plan->ctx, CLATTN_INVALID_ARGUMENT,
                            "desc.block_k is %d; linear's CPU shape takes chunks of at "
                            "most 32768 / head_dim keys (%d)",
                            l->chunk, 32768 / ((d->head_dim + 7) / 8 * 8));
    return CLATTN_OK;
}

/*
 * Work-items per head for the CPU kernel, each owning a slice of the state's
 * columns (whole blocks of 16 of its row padded to 16s). One per head unless
 * that leaves under four per compute unit, or a slice's state over 16384
 * floats, which linear_cpu's private arrays are sized for. Slices repeat phi
 * and the scores, so they are the exception.
 */
static int cpu_slices(const clattn_plan *plan)
{
    const clattn_desc *d = &plan->desc;
    const int blocks = (d->v_head_dim + 15) / 16;
    const int heads = d->batch * d->kv_heads;
    const int want = 4 * (int)plan->ctx->info.compute_units;
    int s = 1;

    while (s < blocks &&
           (blocks % s || d->head_dim * blocks * 16 / s > 16384 || heads * s < want))
        s++;
    return s;
}

static clattn_status setup(clattn_plan *plan)
{
    const clattn_desc *d = &plan->desc;
    const size_t heads = (size_t)d->batch * d->kv_heads;
    linear *l;
    clattn_status status;
    cl_int err;
    int chunks;

    if ((status = check(plan)))
        return status;
    l = calloc(1, sizeof(*l));
    if (!l)
        return clattn__fail(plan->ctx, CLATTN_HOST_MEMORY, "out of host memory");
    plan->impl = l;
    if ((status = tiles(plan, l)))
        return status;
    chunks = (d->kv_len + l->chunk - 1) / l->chunk;

    if (plan->shape == CLATTN_SHAPE_CPU) {
        if ((status = kernels(plan, l)))
            return status;
        if ((err = cpu_args(plan, l, chunks)) != CL_SUCCESS)
            return clattn__cl_fail(plan->ctx, err, "clSetKernelArg");
        l->cpu_global[0] = (size_t)cpu_slices(plan);
        l->cpu_global[1] = heads;
        return CLATTN_OK;
    }

    if ((status = workspace(plan, l, chunks)) || (status = kernels(plan, l)))
        return status;
    if ((err = gpu_args(plan, l, chunks)) != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "clSetKernelArg");
    l->state_global[0] = (size_t)chunks;
    l->state_global[1] = heads;
    l->scan_global[0] = (size_t)d->head_dim * (d->v_head_dim + 1);
    l->scan_global[1] = heads;
    l->out_global[0] = (size_t)plan->group * d->q_len;
    l->out_global[1] = heads;
    return CLATTN_OK;
}

static clattn_status launch(clattn_plan *plan, clattn_run_args *args, cl_kernel kernel,
                            const size_t *global, const char *name)
{
    static const size_t one[2] = {1, 1};
    const linear *l = plan->impl;
    const int per_item = kernel == l->state || kernel == l->cpu;
    cl_event event;
    cl_int err;

    err = clEnqueueNDRangeKernel(plan->ctx->queue, kernel, 2, NULL, global,
                                 per_item ? one : NULL, 0, NULL, &event);
    err = clattn__fault_call(plan->ctx, CLATTN_FAULT_ENQUEUE, err, &event);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, name);
    clattn__run_track(args, event);
    return CLATTN_OK;
}

static clattn_status run(clattn_plan *plan, clattn_run_args *args)
{
    linear *l = plan->impl;
    clattn_status status;
    cl_int err;

    if (l->cpu) {
        err = clattn__set_args(l->cpu, 0, 4, sizeof(cl_mem), &args->q, sizeof(cl_mem),
                               &args->k, sizeof(cl_mem), &args->v, sizeof(cl_mem),
                               &args->o);
        if (err != CL_SUCCESS)
            return clattn__cl_fail(plan->ctx, err, "clSetKernelArg");
        return launch(plan, args, l->cpu, l->cpu_global, "linear");
    }

    err = clattn__set_args(l->state, 0, 2, sizeof(cl_mem), &args->k, sizeof(cl_mem),
                           &args->v);
    if (err == CL_SUCCESS)
        err = clattn__set_args(l->output, 0, 2, sizeof(cl_mem), &args->q, sizeof(cl_mem),
                               &args->v);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(l->output, 4, sizeof(cl_mem), &args->o);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "clSetKernelArg");

    if ((status = launch(plan, args, l->state, l->state_global, "linear chunk states")) ||
        (status = launch(plan, args, l->scan, l->scan_global, "linear scan")))
        return status;
    return launch(plan, args, l->output, l->out_global, "linear output");
}

const clattn_variant_ops clattn__linear_ops = {setup, run, destroy};
