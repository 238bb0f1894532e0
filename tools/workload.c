#include "workload.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The key chunk of the linear variant's causal algorithm, for its FLOP count. */
#define LINEAR_CHUNK 64

double workload_pairs(const clattn_desc *d)
{
    long long shift = (long long)d->kv_len - d->q_len;
    long long total = 0;

    for (long long i = 0; i < d->q_len; i++) {
        long long row = i + shift, lo = 0, hi = d->kv_len - 1;

        if (d->causal && row < hi)
            hi = row;
        if (d->window_left >= 0 && row - d->window_left > lo)
            lo = row - d->window_left;
        if (d->window_right >= 0 && row + d->window_right < hi)
            hi = row + d->window_right;
        if (hi >= lo)
            total += hi - lo + 1;
    }
    return (double)total;
}

double workload_kv_bytes(const clattn_desc *d)
{
    long long shift = (long long)d->kv_len - d->q_len;
    long long lo = 0, hi = d->kv_len - 1;
    double elem = d->dtype == CLATTN_F16 ? 2.0 : 4.0;

    /* Every row's band is contiguous and moves forward with the row, so the
     * union of the bands runs from the first row's start to the last row's
     * end. */
    if (d->variant != CLATTN_VARIANT_LINEAR) {
        if (d->causal && d->q_len - 1 + shift < hi)
            hi = d->q_len - 1 + shift;
        if (d->window_left >= 0 && shift - d->window_left > lo)
            lo = shift - d->window_left;
        if (d->window_right >= 0 && d->q_len - 1 + shift + d->window_right < hi)
            hi = d->q_len - 1 + shift + d->window_right;
    }
    if (hi < lo)
        return 0.0;
    return (double)d->batch * d->kv_heads * (double)(hi - lo + 1) *
           (d->head_dim + d->v_head_dim) * elem;
}

/* Causal (query, key) pairs of one head that fall in the query's own chunk. */
static double chunk_pairs(const clattn_desc *d)
{
    long long shift = (long long)d->kv_len - d->q_len;
    double total = 0.0;

    for (long long i = 0; i < d->q_len; i++) {
        if (i + shift >= 0)
            total += (double)((i + shift) % LINEAR_CHUNK + 1);
    }
    return total;
}

/*
 * The useful work of the linear variant's chunked algorithm: building the
 * states from the keys, applying them to the queries and, when causal, the
 * masked products inside each chunk.
 */
static double linear_flops(const clattn_desc *d)
{
    double state = (double)d->head_dim * d->v_head_dim;
    double flops = 2.0 * d->batch * d->kv_heads * (double)d->kv_len * state +
                   2.0 * d->batch * d->q_heads * (double)d->q_len * state;

    if (d->causal)
        flops += 2.0 * d->batch * d->q_heads * (double)(d->head_dim + d->v_head_dim) *
                 chunk_pairs(d);
    return flops;
}

double workload_flops(const clattn_desc *d)
{
    if (d->variant == CLATTN_VARIANT_LINEAR)
        return linear_flops(d);
    return 2.0 * d->batch * d->q_heads * (double)(d->head_dim + d->v_head_dim) *
           workload_pairs(d);
}

static uint64_t next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

/* Inputs for problems too large for the reference: any values in [-1, 1). */
static void *random_storage(size_t bytes, clattn_dtype dtype, uint64_t *state)
{
    size_t count = bytes / (dtype == CLATTN_F16 ? 2 : 4);
    void *data = malloc(bytes > 0 ? bytes : 1);

    for (size_t i = 0; data != NULL && i < count; i++) {
        float x = (float)(next_random(state) >> 40) / (float)(1 << 23) - 1.0f;

        if (dtype == CLATTN_F16)
            ((uint16_t *)data)[i] = problem_float_to_half(x);
        else
            ((float *)data)[i] = x;
    }
    return data;
}

static cl_mem upload(clattn_context *ctx, const void *host, size_t bytes, cl_int *err)
{
    return clCreateBuffer(clattn_context_cl_context(ctx),
                          CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, (void *)host,
                          err);
}

int workload_upload(clattn_context *ctx, const char *command, const clattn_desc *d,
                    const void *const host[3], const size_t bytes[3], workload *w)
{
    cl_int err = CL_SUCCESS;

    memset(w, 0, sizeof *w);
    if (clattn_tensor_bytes(d, CLATTN_TENSOR_O, &w->o_bytes) != CLATTN_OK)
        return cli_error("%s: the problem is too large", command);

    w->q = upload(ctx, host[0], bytes[0], &err);
    if (err == CL_SUCCESS)
        w->k = upload(ctx, host[1], bytes[1], &err);
    if (err == CL_SUCCESS)
        w->v = upload(ctx, host[2], bytes[2], &err);
    if (err == CL_SUCCESS)
        w->o = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE,
                              w->o_bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        workload_release(w);
        return cli_error("%s: could not allocate device buffers (OpenCL error %d)",
                         command, (int)err);
    }
    return 0;
}

int workload_problem(clattn_context *ctx, const char *command, const problem *p,
                     workload *w)
{
    const void *host[3] = {p->q, p->k, p->v};
    const size_t bytes[3] = {p->q_count * p->elem_size, p->k_count * p->elem_size,
                             p->v_count * p->elem_size};

    return workload_upload(ctx, command, &p->desc, host, bytes, w);
}

int workload_random(clattn_context *ctx, const char *command, const clattn_desc *d,
                    uint64_t seed, workload *w)
{
    const clattn_tensor tensors[3] = {CLATTN_TENSOR_Q, CLATTN_TENSOR_K, CLATTN_TENSOR_V};
    size_t bytes[3];
    void *host[3] = {NULL, NULL, NULL};
    uint64_t state = seed | 1;
    int rc = 0;

    memset(w, 0, sizeof *w);
    for (int i = 0; i < 3 && rc == 0; i++) {
        if (clattn_tensor_bytes(d, tensors[i], &bytes[i]) != CLATTN_OK)
            rc = cli_error("%s: the problem is too large", command);
        else if ((host[i] = random_storage(bytes[i], d->dtype, &state)) == NULL)
            rc = cli_error("%s: out of host memory", command);
    }
    if (rc == 0)
        rc = workload_upload(ctx, command, d, (const void *const *)host, bytes, w);

    for (int i = 0; i < 3; i++)
        free(host[i]);
    return rc;
}

cl_int workload_poison(clattn_context *ctx, const clattn_desc *d, const workload *w)
{
    const cl_uint nan32 = 0x7fc00000u;
    const cl_ushort nan16 = 0x7e00u;
    int half = d->dtype == CLATTN_F16;

    return clEnqueueFillBuffer(clattn_context_queue(ctx), w->o,
                               half ? (const void *)&nan16 : (const void *)&nan32,
                               half ? sizeof nan16 : sizeof nan32, 0, w->o_bytes, 0, NULL,
                               NULL);
}

void workload_release(workload *w)
{
    cl_mem mem[4] = {w->q, w->k, w->v, w->o};

    for (int i = 0; i < 4; i++) {
        if (mem[i] != NULL)
            clReleaseMemObject(mem[i]);
    }
    memset(w, 0, sizeof *w);
}
