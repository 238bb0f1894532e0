/*
 * Descriptors, validation, plans and the dispatch of runs to variants.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_HEADS 65536
#define MAX_BLOCK 4096

void clattn_desc_init(clattn_desc *desc)
{
    if (!desc)
        return;
    memset(desc, 0, sizeof(*desc));
    desc->batch = 1;
    desc->q_heads = 1;
    desc->window_left = -1;
    desc->window_right = -1;
}

const char *clattn_variant_name(clattn_variant variant)
{
    static const char *const names[] = {"auto", "naive", "tiled", "window", "linear"};

    if ((unsigned)variant >= sizeof(names) / sizeof(names[0]))
        return "unknown";
    return names[variant];
}

static int mul_ok(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

/* The product of four factors, or 0 when it overflows size_t. */
static size_t product(size_t a, size_t b, size_t c, size_t d)
{
    size_t ab, abc, abcd;

    if (!mul_ok(a, b, &ab) || !mul_ok(ab, c, &abc) || !mul_ok(abc, d, &abcd))
        return 0;
    return abcd;
}

static int check_range(clattn_context *ctx, clattn_status *status, const char *name,
                       long value, long lo, long hi)
{
    if (value >= lo && value <= hi)
        return 1;
    *status =
        clattn__fail(ctx, CLATTN_INVALID_ARGUMENT,
                     "desc.%s is %ld; it must be in [%ld, %ld]", name, value, lo, hi);
    return 0;
}

/* Copies desc with every default resolved, or explains what is wrong. */
static clattn_status resolve(clattn_context *ctx, const clattn_desc *in, clattn_desc *d)
{
    clattn_status st = CLATTN_OK;

    *d = *in;
    if (!check_range(ctx, &st, "batch", d->batch, 1, MAX_HEADS) ||
        !check_range(ctx, &st, "q_heads", d->q_heads, 1, MAX_HEADS) ||
        !check_range(ctx, &st, "kv_heads", d->kv_heads, 0, MAX_HEADS) ||
        !check_range(ctx, &st, "q_len", d->q_len, 1, CLATTN_MAX_LENGTH) ||
        !check_range(ctx, &st, "kv_len", d->kv_len, 0, CLATTN_MAX_LENGTH) ||
        !check_range(ctx, &st, "head_dim", d->head_dim, 1, CLATTN_MAX_HEAD_DIM) ||
        !check_range(ctx, &st, "v_head_dim", d->v_head_dim, 0, CLATTN_MAX_HEAD_DIM) ||
        !check_range(ctx, &st, "dtype", d->dtype, CLATTN_F32, CLATTN_F16) ||
        !check_range(ctx, &st, "layout", d->layout, CLATTN_LAYOUT_BHSD,
                     CLATTN_LAYOUT_BSHD) ||
        !check_range(ctx, &st, "variant", d->variant, CLATTN_VARIANT_AUTO,
                     CLATTN_VARIANT_LINEAR) ||
        !check_range(ctx, &st, "kernel_shape", d->kernel_shape, CLATTN_SHAPE_AUTO,
                     CLATTN_SHAPE_CPU) ||
        !check_range(ctx, &st, "window_left", d->window_left, -1,
                     CLATTN_MAX_LENGTH * 2L) ||
        !check_range(ctx, &st, "window_right", d->window_right, -1,
                     CLATTN_MAX_LENGTH * 2L) ||
        !check_range(ctx, &st, "feature_map", d->feature_map, CLATTN_FEATURE_ELU1,
                     CLATTN_FEATURE_RELU) ||
        !check_range(ctx, &st, "block_q", d->block_q, 0, MAX_BLOCK) ||
        !check_range(ctx, &st, "block_k", d->block_k, 0, MAX_BLOCK))
        return st;
    if (!(d->scale >= 0.0f) || isinf(d->scale))
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT,
                            "desc.scale is %g; it must be finite and positive, or 0 for "
                            "1/sqrt(head_dim)",
                            (double)d->scale);

    if (d->kv_heads == 0)
        d->kv_heads = d->q_heads;
    if (d->kv_len == 0)
        d->kv_len = d->q_len;
    if (d->v_head_dim == 0)
        d->v_head_dim = d->head_dim;
    if (d->scale == 0.0f)
        d->scale = 1.0f / sqrtf((float)d->head_dim);
    if (d->q_heads % d->kv_heads)
        return clattn__fail(ctx, CLATTN_INVALID_SHAPE,
                            "desc.q_heads (%d) is not a multiple of desc.kv_heads (%d)",
                            d->q_heads, d->kv_heads);
    /* Kernels number rows and work-groups with 32-bit integers. */
    if ((long long)(d->q_heads / d->kv_heads) * d->q_len > CLATTN_MAX_LENGTH ||
        (long long)d->batch * d->q_heads > INT32_MAX / 2)
        return clattn__fail(ctx, CLATTN_INVALID_SHAPE,
                            "desc.q_len * (q_heads / kv_heads) or desc.batch * q_heads "
                            "exceeds the kernels' 32-bit row numbering");
    d->causal = d->causal != 0;
    d->want_lse = d->want_lse != 0;
    return CLATTN_OK;
}

static void strides(const clattn_desc *d, int heads, int len, int dim, clattn_strides *s)
{
    if (d->layout == CLATTN_LAYOUT_BHSD) {
        s->seq = (cl_ulong)dim;
        s->head = (cl_ulong)len * dim;
    } else {
        s->head = (cl_ulong)dim;
        s->seq = (cl_ulong)heads * dim;
    }
    s->batch = (cl_ulong)heads * len * dim;
}

static clattn_status sizes(clattn_context *ctx, const clattn_desc *d, size_t bytes[5])
{
    size_t elem = d->dtype == CLATTN_F16 ? 2 : 4;

    bytes[CLATTN_TENSOR_Q] = product(d->batch, d->q_heads, d->q_len, d->head_dim);
    bytes[CLATTN_TENSOR_K] = product(d->batch, d->kv_heads, d->kv_len, d->head_dim);
    bytes[CLATTN_TENSOR_V] = product(d->batch, d->kv_heads, d->kv_len, d->v_head_dim);
    bytes[CLATTN_TENSOR_O] = product(d->batch, d->q_heads, d->q_len, d->v_head_dim);
    bytes[CLATTN_TENSOR_LSE] = product(d->batch, d->q_heads, d->q_len, 4);
    for (int t = 0; t < 5; t++) {
        size_t e = t == CLATTN_TENSOR_LSE ? 1 : elem;

        if (bytes[t] == 0 || !mul_ok(bytes[t], e, &bytes[t]))
            return clattn__fail(ctx, CLATTN_INVALID_SHAPE,
                                "the problem is too large: a tensor's size overflows "
                                "size_t");
    }
    return CLATTN_OK;
}

clattn_status clattn_tensor_bytes(const clattn_desc *desc, clattn_tensor tensor,
                                  size_t *bytes)
{
    clattn_desc d;
    size_t all[5];
    clattn_status status;

    if (!desc || !bytes || (unsigned)tensor > CLATTN_TENSOR_LSE)
        return CLATTN_INVALID_ARGUMENT;
    status = resolve(NULL, desc, &d);
    if (!status)
        status = sizes(NULL, &d, all);
    if (!status)
        *bytes = all[tensor];
    return status;
}

/* Window bounds as kernel arguments: causal folded in, "unbounded" made a
 * finite value wide enough for every row. */
static void window_args(clattn_plan *plan)
{
    const clattn_desc *d = &plan->desc;
    int wide = d->q_len + d->kv_len;
    long left = d->window_left, right = d->window_right;

    if (d->causal)
        right = 0;
    plan->masked = d->causal || left >= 0 || right >= 0;
    plan->left = left < 0 || left > wide ? wide : (int)left;
    plan->right = right < 0 || right > wide ? wide : (int)right;
}

static clattn_variant choose_variant(const clattn_plan *plan)
{
    const clattn_desc *d = &plan->desc;

    if (d->variant != CLATTN_VARIANT_AUTO)
        return d->variant;
    if (d->window_left != -1 || d->window_right != -1)
        return CLATTN_VARIANT_WINDOW;
    return CLATTN_VARIANT_TILED;
}

static clattn_kernel_shape choose_shape(const clattn_plan *plan)
{
    if (plan->desc.kernel_shape != CLATTN_SHAPE_AUTO)
        return plan->desc.kernel_shape;
    return plan->tuning.kernel_shape;
}

clattn_status clattn_plan_create(clattn_plan **out, clattn_context *ctx,
                                 const clattn_desc *desc)
{
    clattn_plan *plan;
    clattn_status status;
    cl_int err;

    if (!ctx)
        return clattn__fail(NULL, CLATTN_INVALID_ARGUMENT, "ctx is NULL");
    clattn__clear_message(ctx);
    if (!out)
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (!desc)
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT, "desc is NULL");
    plan = calloc(1, sizeof(*plan));
    if (!plan)
        return clattn__fail(ctx, CLATTN_HOST_MEMORY, "out of host memory for the plan");
    plan->ctx = ctx;
    status = resolve(ctx, desc, &plan->desc);
    if (!status)
        status = sizes(ctx, &plan->desc, plan->bytes);
    if (status) {
        free(plan);
        return status;
    }

    strides(&plan->desc, plan->desc.q_heads, plan->desc.q_len, plan->desc.head_dim,
            &plan->q_str);
    strides(&plan->desc, plan->desc.kv_heads, plan->desc.kv_len, plan->desc.head_dim,
            &plan->k_str);
    strides(&plan->desc, plan->desc.kv_heads, plan->desc.kv_len, plan->desc.v_head_dim,
            &plan->v_str);
    strides(&plan->desc, plan->desc.q_heads, plan->desc.q_len, plan->desc.v_head_dim,
            &plan->o_str);
    plan->group = plan->desc.q_heads / plan->desc.kv_heads;
    window_args(plan);
    plan->variant = choose_variant(plan);
    plan->tuning.kernel_shape =
        ctx->info.type & CL_DEVICE_TYPE_CPU ? CLATTN_SHAPE_CPU : CLATTN_SHAPE_GPU;
    if (plan->variant != CLATTN_VARIANT_NAIVE) {
        clattn_desc key = plan->desc;

        key.variant = plan->variant;
        clattn_tuning_lookup(ctx, &key, &plan->tuning, NULL);
    }
    plan->shape = choose_shape(plan);
    plan->ops = plan->variant == CLATTN_VARIANT_NAIVE    ? &clattn__naive_ops
                : plan->variant == CLATTN_VARIANT_WINDOW ? &clattn__window_ops
                : plan->variant == CLATTN_VARIANT_LINEAR ? &clattn__linear_ops
                                                         : &clattn__tiled_ops;

    plan->dummy = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, 64, NULL, &err);
    clattn__fault_mem(ctx, &plan->dummy, &err);
    if (err != CL_SUCCESS) {
        free(plan);
        return clattn__cl_fail(ctx, err, "clCreateBuffer");
    }
    status = plan->ops->setup(plan);
    if (status) {
        clattn_plan_destroy(plan);
        return status;
    }
    *out = plan;
    return CLATTN_OK;
}

void clattn_plan_destroy(clattn_plan *plan)
{
    if (!plan)
        return;
    if (plan->ops)
        plan->ops->destroy(plan);
    if (plan->dummy)
        clReleaseMemObject(plan->dummy);
    free(plan);
}

clattn_variant clattn_plan_variant(const clattn_plan *plan)
{
    return plan ? plan->variant : CLATTN_VARIANT_AUTO;
}

clattn_kernel_shape clattn_plan_kernel_shape(const clattn_plan *plan)
{
    return plan ? plan->shape : CLATTN_SHAPE_AUTO;
}

size_t clattn_plan_workspace_bytes(const clattn_plan *plan)
{
    return plan ? plan->workspace_bytes : 0;
}

cl_int clattn__set_args(cl_kernel kernel, cl_uint first, int count, ...)
{
    cl_int err = CL_SUCCESS;
    va_list ap;

    va_start(ap, count);
    for (int i = 0; i < count && err == CL_SUCCESS; i++) {
        size_t size = va_arg(ap, size_t);
        const void *value = va_arg(ap, const void *);

        err = clSetKernelArg(kernel, first + (cl_uint)i, size, value);
    }
    va_end(ap);
    return err;
}

int clattn__common_options(const clattn_plan *plan, char *buf, size_t size)
{
    const clattn_desc *d = &plan->desc;

    return snprintf(buf, size,
                    "-cl-std=CL1.2 -D D=%d -D DV=%d -D DTYPE_F16=%d -D MASKED=%d "
                    "-D WANT_LSE=%d",
                    d->head_dim, d->v_head_dim, d->dtype == CLATTN_F16, plan->masked,
                    d->want_lse);
}

/*
 * A run's span needs its first command's start and its last one's end (the
 * queue is in order): once the list is full, each new event takes the last
 * slot, so that runs of many commands (the naive variant's GEMMs go by head
 * and block) are timed to their end.
 */
void clattn__run_track(clattn_run_args *args, cl_event event)
{
    clattn_event_list *list = args->events;
    const int size = (int)(sizeof(list->events) / sizeof(cl_event));

    if (list) {
        clRetainEvent(event);
        if (list->count == size)
            clReleaseEvent(list->events[--list->count]);
        list->events[list->count++] = event;
    }
    if (args->last)
        clReleaseEvent(args->last);
    args->last = event;
}

static clattn_status check_buffer(clattn_plan *plan, cl_mem buf, clattn_tensor t,
                                  const char *name)
{
    size_t size = 0;
    cl_int err;

    if (!buf)
        return clattn__fail(plan->ctx, CLATTN_INVALID_ARGUMENT, "%s is NULL", name);
    err = clGetMemObjectInfo(buf, CL_MEM_SIZE, sizeof(size), &size, NULL);
    if (err != CL_SUCCESS)
        return clattn__fail(plan->ctx, CLATTN_INVALID_ARGUMENT,
                            "%s is not a valid buffer (%s)", name,
                            clattn__cl_error_name(err));
    if (size < plan->bytes[t])
        return clattn__fail(plan->ctx, CLATTN_BUFFER_TOO_SMALL,
                            "%s holds %zu bytes; the problem needs %zu", name, size,
                            plan->bytes[t]);
    return CLATTN_OK;
}

static clattn_status run(clattn_plan *plan, clattn_run_args *args)
{
    clattn_context *ctx;
    clattn_status status;
    cl_event marker;
    cl_int err;

    if (!plan)
        return CLATTN_INVALID_ARGUMENT;
    ctx = plan->ctx;
    clattn__clear_message(ctx);
    if ((status = check_buffer(plan, args->q, CLATTN_TENSOR_Q, "q")) ||
        (status = check_buffer(plan, args->k, CLATTN_TENSOR_K, "k")) ||
        (status = check_buffer(plan, args->v, CLATTN_TENSOR_V, "v")) ||
        (status = check_buffer(plan, args->o, CLATTN_TENSOR_O, "o")))
        return status;
    if (plan->desc.want_lse &&
        (status = check_buffer(plan, args->lse, CLATTN_TENSOR_LSE, "lse")))
        return status;
    if (args->o == args->q || args->o == args->k || args->o == args->v)
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT, "o aliases an input buffer");
    if (plan->desc.want_lse && (args->lse == args->q || args->lse == args->k ||
                                args->lse == args->v || args->lse == args->o))
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT,
                            "lse aliases another buffer of the run");
    if (!plan->desc.want_lse)
        args->lse = plan->dummy;
    if ((args->num_wait > 0) != (args->wait_list != NULL))
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT,
                            "num_wait and wait_list disagree");

    /* Variants enqueue several commands, some through CLBlast, which takes no
     * wait list; on an in-order queue one marker holds them all back. */
    if (args->num_wait) {
        err = clEnqueueMarkerWithWaitList(ctx->queue, args->num_wait, args->wait_list,
                                          &marker);
        if (err != CL_SUCCESS)
            return clattn__cl_fail(ctx, err, "clEnqueueMarkerWithWaitList");
        clattn__run_track(args, marker);
    }
    return plan->ops->run(plan, args);
}

clattn_status clattn_plan_run(clattn_plan *plan, cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                              cl_mem lse, cl_uint num_wait, const cl_event *wait_list,
                              cl_event *event)
{
    clattn_run_args args = {q, k, v, o, lse, num_wait, wait_list, NULL, NULL};
    clattn_status status = run(plan, &args);

    if (event)
        *event = status == CLATTN_OK ? args.last : NULL;
    if (args.last && (!event || status != CLATTN_OK))
        clReleaseEvent(args.last);
    return status;
}

static clattn_status span_ms(clattn_context *ctx, const clattn_event_list *list,
                             double *ms)
{
    cl_ulong first = (cl_ulong)-1, last = 0;

    for (int i = 0; i < list->count; i++) {
        cl_ulong start, end;
        cl_int err = clGetEventProfilingInfo(list->events[i], CL_PROFILING_COMMAND_START,
                                             sizeof(start), &start, NULL);

        if (err == CL_SUCCESS)
            err = clGetEventProfilingInfo(list->events[i], CL_PROFILING_COMMAND_END,
                                          sizeof(end), &end, NULL);
        if (err != CL_SUCCESS)
            return clattn__cl_fail(ctx, err, "clGetEventProfilingInfo");
        first = start < first ? start : first;
        last = end > last ? end : last;
    }
    *ms = list->count && last > first ? (double)(last - first) * 1e-6 : 0.0;
    return CLATTN_OK;
}

clattn_status clattn_plan_run_timed(clattn_plan *plan, cl_mem q, cl_mem k, cl_mem v,
                                    cl_mem o, cl_mem lse, double *milliseconds)
{
    clattn_event_list list = {.count = 0};
    clattn_run_args args = {q, k, v, o, lse, 0, NULL, &list, NULL};
    clattn_status status;
    cl_event end;
    cl_int err;

    if (!plan || !milliseconds)
        return CLATTN_INVALID_ARGUMENT;
    if (!plan->ctx->profiling)
        return clattn__fail(plan->ctx, CLATTN_UNSUPPORTED,
                            "the queue was made without CL_QUEUE_PROFILING_ENABLE");
    status = run(plan, &args);

    /* CLBlast reports one event for several kernels; a closing marker makes
     * sure the span reaches the end of the last one. */
    if (status == CLATTN_OK) {
        err = clEnqueueMarkerWithWaitList(plan->ctx->queue, 0, NULL, &end);
        if (err == CL_SUCCESS)
            clattn__run_track(&args, end);
        else
            status = clattn__cl_fail(plan->ctx, err, "clEnqueueMarkerWithWaitList");
    }
    err = clFinish(plan->ctx->queue);
    if (status == CLATTN_OK && err != CL_SUCCESS)
        status = clattn__cl_fail(plan->ctx, err, "clFinish");
    if (status == CLATTN_OK)
        status = span_ms(plan->ctx, &list, milliseconds);
    for (int i = 0; i < list.count; i++)
        clReleaseEvent(list.events[i]);
    if (args.last)
        clReleaseEvent(args.last);
    return status;
}

static cl_mem host_buffer(clattn_plan *plan, cl_mem_flags flags, size_t size,
                          const void *data, const char *name, clattn_status *status)
{
    cl_int err;
    cl_mem buf;

    if (*status)
        return NULL;
    if (data)
        flags |= CL_MEM_COPY_HOST_PTR;
    buf = clCreateBuffer(plan->ctx->cl_ctx, flags, size, (void *)data, &err);
    clattn__fault_mem(plan->ctx, &buf, &err);
    if (err != CL_SUCCESS) {
        *status = clattn__cl_fail(plan->ctx, err, "clCreateBuffer");
        clattn__fail(plan->ctx, *status, "could not allocate %zu bytes for %s: %s", size,
                     name, clattn__cl_error_name(err));
    }
    return buf;
}

static void release_mem(cl_mem m)
{
    if (m)
        clReleaseMemObject(m);
}

clattn_status clattn_plan_run_host(clattn_plan *plan, const void *q, const void *k,
                                   const void *v, void *o, float *lse)
{
    clattn_status st = CLATTN_OK;
    cl_mem bq, bk, bv, bo, blse = NULL;
    const size_t *b;
    cl_int err;

    if (!plan)
        return CLATTN_INVALID_ARGUMENT;
    if (!q || !k || !v || !o || (plan->desc.want_lse && !lse))
        return clattn__fail(plan->ctx, CLATTN_INVALID_ARGUMENT, "%s is NULL",
                            !q   ? "q"
                            : !k ? "k"
                            : !v ? "v"
                            : !o ? "o"
                                 : "lse");
    b = plan->bytes;
    bq = host_buffer(plan, CL_MEM_READ_ONLY, b[CLATTN_TENSOR_Q], q, "q", &st);
    bk = host_buffer(plan, CL_MEM_READ_ONLY, b[CLATTN_TENSOR_K], k, "k", &st);
    bv = host_buffer(plan, CL_MEM_READ_ONLY, b[CLATTN_TENSOR_V], v, "v", &st);
    bo = host_buffer(plan, CL_MEM_WRITE_ONLY, b[CLATTN_TENSOR_O], NULL, "o", &st);
    if (plan->desc.want_lse)
        blse =
            host_buffer(plan, CL_MEM_WRITE_ONLY, b[CLATTN_TENSOR_LSE], NULL, "lse", &st);

    if (!st)
        st = clattn_plan_run(plan, bq, bk, bv, bo, blse, 0, NULL, NULL);
    if (!st) {
        err = clEnqueueReadBuffer(plan->ctx->queue, bo, CL_TRUE, 0, b[CLATTN_TENSOR_O], o,
                                  0, NULL, NULL);
        if (err == CL_SUCCESS && blse)
            err = clEnqueueReadBuffer(plan->ctx->queue, blse, CL_TRUE, 0,
                                      b[CLATTN_TENSOR_LSE], lse, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            st = clattn__cl_fail(plan->ctx, err, "clEnqueueReadBuffer");
    }
    release_mem(bq);
    release_mem(bk);
    release_mem(bv);
    release_mem(bo);
    release_mem(blse);
    return st;
}
