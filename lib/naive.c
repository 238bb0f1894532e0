/*
 * The naive variant: materialize the scores with CLBlast GEMMs, apply masks
 * and softmax in place, then multiply by V with a second set of GEMMs. Under
 * a causal or window mask the query rows go by blocks, and each block's GEMMs
 * cover only the keys some row of it sees, so that masked scores cost little.
 * fp16 storage is converted to fp32 workspace first: the GEMMs run in fp32.
 * CLBlast parameters that `clattn tune --variant naive` saved for the device
 * are passed to CLBlast when a plan is made.
 */
#include <clblast_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct naive {
    cl_kernel softmax, to_float, to_half;
    size_t sm_global, sm_local;
    cl_mem scores;
    cl_mem qf, kf, vf, of; /* fp32 copies, fp16 storage only */
    cl_mem temp;           /* CLBlast's padded operands, or NULL */
    int first;             /* the first query row of a head that sees a key */
    int block;             /* query rows per block, from first on */
    int blocks;            /* blocks per head; 0 when no row sees a key */
} naive;

static void release_mem(cl_mem *m)
{
    if (*m)
        clReleaseMemObject(*m);
    *m = NULL;
}

static void release_kernel(cl_kernel *k)
{
    if (*k)
        clReleaseKernel(*k);
    *k = NULL;
}

static void destroy(clattn_plan *plan)
{
    naive *n = plan->impl;

    if (!n)
        return;
    release_kernel(&n->softmax);
    release_kernel(&n->to_float);
    release_kernel(&n->to_half);
    release_mem(&n->scores);
    release_mem(&n->qf);
    release_mem(&n->kf);
    release_mem(&n->vf);
    release_mem(&n->of);
    release_mem(&n->temp);
    free(n);
    plan->impl = NULL;
}

static clattn_status alloc(clattn_plan *plan, cl_mem *mem, size_t bytes, const char *what)
{
    cl_int err;

    *mem = clCreateBuffer(plan->ctx->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    clattn__fault_mem(plan->ctx, mem, &err);
    if (err != CL_SUCCESS) {
        clattn__cl_fail(plan->ctx, err, "clCreateBuffer");
        return clattn__fail(plan->ctx, CLATTN_DEVICE_MEMORY,
                            "could not allocate %zu bytes for the naive variant's %s: %s",
                            bytes, what, clattn__cl_error_name(err));
    }
    plan->workspace_bytes += bytes;
    return CLATTN_OK;
}

/* The score matrix is the variant's cost: refuse it up front when the device
 * cannot hold it in one allocation. */
static clattn_status alloc_scores(clattn_plan *plan, naive *n)
{
    const clattn_desc *d = &plan->desc;
    const cl_ulong limit = plan->ctx->info.max_alloc;
    size_t rows = (size_t)d->batch * d->q_heads * d->q_len;
    double bytes = (double)rows * d->kv_len * sizeof(float);

    if (bytes > (double)limit || bytes > (double)SIZE_MAX)
        return clattn__fail(
            plan->ctx, CLATTN_DEVICE_MEMORY,
            "the naive variant needs a score workspace of "
            "batch*q_heads*q_len*kv_len floats (%.0f bytes), more than the "
            "device's largest allocation (%llu bytes); use the tiled "
            "variant",
            bytes, (unsigned long long)limit);
    return alloc(plan, &n->scores, (size_t)bytes, "score workspace");
}

/*
 * A block of query rows (the same in every head) and the key columns its
 * GEMMs cover: the union of its rows' bands, which is the band of its first
 * row's low side and its last row's high side, since both sides rise with the
 * row. cl/softmax.cl finds the same columns for each row.
 */
typedef struct row_block {
    long long row, rows, col, cols;
} row_block;

static long long band_lo(const clattn_plan *plan, long long i)
{
    const long long lo = i + plan->desc.kv_len - plan->desc.q_len - plan->left;

    return lo > 0 ? lo : 0;
}

static long long band_hi(const clattn_plan *plan, long long i)
{
    const long long hi = i + plan->desc.kv_len - plan->desc.q_len + plan->right;

    return hi < plan->desc.kv_len - 1 ? hi : plan->desc.kv_len - 1;
}

/* Block i of blocks of size rows from query row first on. */
static void block_of(const clattn_plan *plan, int first, int size, int i, row_block *blk)
{
    const long long row = first + (long long)i * size;
    const long long end = row + size < plan->desc.q_len ? row + size : plan->desc.q_len;

    blk->row = row;
    blk->rows = end - row;
    blk->col = band_lo(plan, row);
    blk->cols = band_hi(plan, end - 1) - blk->col + 1;
}

/*
 * Block sizes are multiples of BLOCK_STEP rows, which CLBlast's GEMM tiles
 * divide (it pads m up to its tile otherwise). Each block costs its GEMMs'
 * multiply-adds plus, per head, BLOCK_CALL_COST: what a pair of GEMM calls
 * costs beyond their arithmetic (launches, CLBlast's padding copies, tiles
 * too few to fill the device), as multiply-adds. Smaller blocks skip more
 * masked scores but make more calls; the sum finds the balance, which for a
 * causal mask or a window is a block size of a few hundred rows whatever the
 * length, and one block per head when the mask skips little. Sizes past
 * BLOCK_MAX_STEPS steps gain nothing for the masks that matter.
 */
#define BLOCK_STEP 128
#define BLOCK_MAX_STEPS 64
#define BLOCK_MAX_COUNT 256
#define BLOCK_CALL_COST 4e6

static double blocks_cost(const clattn_plan *plan, int first, int size, int count)
{
    const double per_score = plan->desc.head_dim + plan->desc.v_head_dim;
    double cost = 0.0;
    row_block blk;

    for (int i = 0; i < count; i++) {
        block_of(plan, first, size, i, &blk);
        cost += (double)blk.rows * (double)blk.cols * per_score + BLOCK_CALL_COST;
    }
    return cost;
}

/*
 * Rows i with i' = i + kv_len - q_len and i' + right < 0 see no key; they
 * come first in each head, and every later row sees one, since its band's low
 * side, i' - left, never passes the last key (i' < kv_len). The blocks cover
 * the rows from the first one that sees a key.
 */
static void choose_blocks(const clattn_plan *plan, naive *n)
{
    const long long q_len = plan->desc.q_len;
    const long long empty = q_len - plan->desc.kv_len - plan->right;
    const int span = (int)(empty <= 0 ? q_len : empty < q_len ? q_len - empty : 0);
    double best;

    n->first = plan->desc.q_len - span;
    n->block = span > 0 ? span : 1;
    n->blocks = span > 0;
    if (!plan->masked || span <= BLOCK_STEP)
        return;

    best = blocks_cost(plan, n->first, n->block, n->blocks);
    for (int step = 1; step <= BLOCK_MAX_STEPS && step * BLOCK_STEP < span; step++) {
        const int size = step * BLOCK_STEP, count = (span + size - 1) / size;
        double cost;

        if (count > BLOCK_MAX_COUNT)
            continue;
        cost = blocks_cost(plan, n->first, size, count);
        if (cost < best) {
            best = cost;
            n->block = size;
            n->blocks = count;
        }
    }
    clattn__log(plan->ctx, CLATTN_LOG_DEBUG,
                "naive variant: %d blocks of %d query rows per head, from row %d",
                n->blocks, n->block, n->first);
}

static clattn_status kernels(clattn_plan *plan, naive *n)
{
    const int cpu = plan->shape == CLATTN_SHAPE_CPU;
    const int wg = plan->ctx->info.max_work_group >= 128 ? 128 : 1;
    size_t rows = (size_t)plan->desc.batch * plan->desc.q_heads * plan->desc.q_len;
    char options[512];
    cl_program program;
    clattn_status status;
    cl_int err;
    int len;

    len = clattn__common_options(plan, options, sizeof(options));
    snprintf(options + len, sizeof(options) - len, " -D SM_WG=%d", cpu ? 1 : wg);
    status = clattn__program_get(plan->ctx, "softmax", options, &program);
    if (status)
        return status;
    n->softmax = clCreateKernel(program, cpu ? "softmax_rows" : "softmax_rows_wg", &err);
    clReleaseProgram(program);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "clCreateKernel");
    n->sm_local = cpu ? 64 : (size_t)wg;
    n->sm_global = cpu ? (rows + 63) / 64 * 64 : rows * wg;
    if (cpu && plan->ctx->info.max_work_group < 64)
        n->sm_local = 1;

    if (plan->desc.dtype != CLATTN_F16)
        return CLATTN_OK;
    status = clattn__program_get(plan->ctx, "convert", "-cl-std=CL1.2", &program);
    if (status)
        return status;
    n->to_float = clCreateKernel(program, "half_to_float", &err);
    if (err == CL_SUCCESS)
        n->to_half = clCreateKernel(program, "float_to_half", &err);
    clReleaseProgram(program);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "clCreateKernel");
    return CLATTN_OK;
}

clattn_status clattn_gemm_tuning_apply(clattn_context *ctx, const char *params)
{
    clattn_gemm_params p;
    char why[512];

    if (!ctx)
        return CLATTN_INVALID_ARGUMENT;
    clattn__clear_message(ctx);
    if (!clattn__gemm_parse(params, &ctx->info, &p, why, sizeof(why)))
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT, "params: %s", why);
    for (int i = 0; i < p.count; i++) {
        const clattn_gemm_kernel *k = &p.kernels[i];
        /* CLBlast reads the names without changing them; its C API lacks the
         * const. */
        CLBlastStatusCode code = CLBlastOverrideParameters(
            ctx->device, k->name, CLBlastPrecisionSingle, (size_t)k->count,
            (const char **)k->names, k->values);

        if (code != CLBlastSuccess)
            return clattn__fail(ctx, CLATTN_BLAS_ERROR,
                                "CLBlast refused the parameters of its %s kernel: "
                                "CLBlastOverrideParameters returned %d",
                                k->name, (int)code);
    }
    return CLATTN_OK;
}

/*
 * Passes the tuning database's CLBlast parameters for this device, when it
 * holds any, to CLBlast before the plan's first GEMM. A set CLBlast refuses
 * leaves the parameters it had: the plan still runs, and the log says why.
 */
static void tune_gemm(clattn_plan *plan)
{
    clattn_context *ctx = plan->ctx;
    char params[CLATTN_GEMM_TUNING_SIZE];
    clattn_tuning_origin origin;

    if (clattn_gemm_tuning_lookup(ctx, params, sizeof(params), &origin) ||
        origin != CLATTN_TUNING_DATABASE)
        return;
    if (clattn_gemm_tuning_apply(ctx, params)) {
        clattn__log(ctx, CLATTN_LOG_WARNING,
                    "the naive variant's GEMMs keep the parameters CLBlast had: %s",
                    ctx->message);
        clattn__clear_message(ctx);
        return;
    }
    clattn__log(ctx, CLATTN_LOG_INFO, "CLBlast GEMM parameters from %s: %s",
                ctx->tuning_file, params);
}

static clattn_status convert(clattn_plan *plan, clattn_run_args *args, cl_kernel kernel,
                             cl_mem src, cl_mem dst, size_t halves)
{
    cl_ulong count = halves;
    size_t global = (halves + 255) / 256 * 256;
    cl_event event;
    cl_int err;

    err = clattn__set_args(kernel, 0, 3, sizeof(cl_mem), &src, sizeof(cl_mem), &dst,
                           sizeof(cl_ulong), &count);
    if (err == CL_SUCCESS)
        err = clEnqueueNDRangeKernel(plan->ctx->queue, kernel, 1, NULL, &global, NULL, 0,
                                     NULL, &event);
    err = clattn__fault_call(plan->ctx, CLATTN_FAULT_ENQUEUE, err, &event);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "converting fp16 data");
    clattn__run_track(args, event);
    return CLATTN_OK;
}

/* The softmax also writes the output rows that see no key: o is the output
 * the GEMMs write (the fp32 copy for fp16 storage). */
static clattn_status softmax(clattn_plan *plan, naive *n, clattn_run_args *args, cl_mem o)
{
    const clattn_desc *d = &plan->desc;
    const clattn_strides *os = &plan->o_str;
    int rows = d->batch * d->q_heads * d->q_len;
    cl_event event;
    cl_int err;

    err = clattn__set_args(n->softmax, 0, 14, sizeof(cl_mem), &n->scores, sizeof(cl_mem),
                           &args->lse, sizeof(int), &rows, sizeof(int), &d->q_len,
                           sizeof(int), &d->kv_len, sizeof(int), &plan->left, sizeof(int),
                           &plan->right, sizeof(int), &n->first, sizeof(int), &n->block,
                           sizeof(cl_mem), &o, sizeof(int), &d->q_heads, sizeof(cl_ulong),
                           &os->batch, sizeof(cl_ulong), &os->head, sizeof(cl_ulong),
                           &os->seq);
    if (err == CL_SUCCESS)
        err = clEnqueueNDRangeKernel(plan->ctx->queue, n->softmax, 1, NULL, &n->sm_global,
                                     &n->sm_local, 0, NULL, &event);
    err = clattn__fault_call(plan->ctx, CLATTN_FAULT_ENQUEUE, err, &event);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(plan->ctx, err, "running the softmax kernel");
    clattn__run_track(args, event);
    return CLATTN_OK;
}

/*
 * One operand of a GEMM: the matrix of batch entry b and query head h starts
 * at b * batch + (h / group) * head, with rows ld apart, and the GEMM's part
 * of it at element `at` of that matrix. K and V have the plan's group, so
 * query heads that share them read the same matrix.
 */
typedef struct operand {
    cl_mem mem;
    size_t batch, head, group, ld, at;
} operand;

static size_t offset(const operand *x, size_t b, size_t h)
{
    return b * x->batch + h / x->group * x->head + x->at;
}

/*
 * C = alpha * A op(B), one plain GEMM per batch entry and query head.
 * CLBlast's batched forms do not fit: the one taking offset arrays uploads
 * them with a blocking write, which stalls on the caller's wait list, and the
 * strided one (1.5.3) computes wrong results for large problems when B starts
 * at a non-zero offset.
 */
static clattn_status gemm(clattn_plan *plan, clattn_run_args *args, CLBlastTranspose tb,
                          size_t m, size_t n, size_t k, float alpha, const operand *a,
                          const operand *b, const operand *c, const char *what)
{
    const clattn_desc *d = &plan->desc;
    cl_command_queue queue = plan->ctx->queue;
    cl_mem temp = ((naive *)plan->impl)->temp;

    for (size_t i = 0; i < (size_t)d->batch; i++) {
        for (size_t h = 0; h < (size_t)d->q_heads; h++) {
            cl_event event;
            CLBlastStatusCode code = CLBlastInsufficientMemoryTemp;

            if (temp)
                code = CLBlastSgemmWithTempBuffer(
                    CLBlastLayoutRowMajor, CLBlastTransposeNo, tb, m, n, k, alpha, a->mem,
                    offset(a, i, h), a->ld, b->mem, offset(b, i, h), b->ld, 0.0f, c->mem,
                    offset(c, i, h), c->ld, &queue, &event, temp);
            /* Parameters another plan passed to CLBlast since this one was
             * made may need a larger buffer: CLBlast then allocates its own. */
            if (code == CLBlastInsufficientMemoryTemp)
                code = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, tb, m, n,
                                    k, alpha, a->mem, offset(a, i, h), a->ld, b->mem,
                                    offset(b, i, h), b->ld, 0.0f, c->mem, offset(c, i, h),
                                    c->ld, &queue, &event);
            code = clattn__fault_call(plan->ctx, CLATTN_FAULT_ENQUEUE, code, &event);

            if (code != CLBlastSuccess)
                return clattn__fail(plan->ctx, CLATTN_BLAS_ERROR,
                                    "CLBlast GEMM of %s failed with status %d", what,
                                    (int)code);
            clattn__run_track(args, event);
        }
    }
    return CLATTN_OK;
}

static void tensor_operand(const clattn_plan *plan, cl_mem mem, const clattn_strides *s,
                           int shared, operand *x)
{
    x->mem = mem;
    x->batch = s->batch;
    x->head = s->head;
    x->group = shared ? (size_t)plan->group : 1;
    x->ld = s->seq;
    x->at = 0;
}

/* The operands of both GEMMs: Q, K, V, O and the scores. */
enum { OP_Q, OP_K, OP_V, OP_O, OP_S, OPS };

static void operands(const clattn_plan *plan, const naive *n, cl_mem q, cl_mem k,
                     cl_mem v, cl_mem o, operand *x)
{
    const clattn_desc *d = &plan->desc;
    const size_t lq = d->q_len, lk = d->kv_len;
    const operand s = {n->scores, d->q_heads * lq * lk, lq * lk, 1, lk, 0};

    tensor_operand(plan, q, &plan->q_str, 0, &x[OP_Q]);
    tensor_operand(plan, k, &plan->k_str, 1, &x[OP_K]);
    tensor_operand(plan, v, &plan->v_str, 1, &x[OP_V]);
    tensor_operand(plan, o, &plan->o_str, 0, &x[OP_O]);
    x[OP_S] = s;
}

/* Points the operands at block i of every head: its query rows in Q, S and
 * O, its key columns in S and its keys in K and V. */
static void place(const clattn_plan *plan, const naive *n, int i, operand *x,
                  size_t *rows, size_t *cols)
{
    row_block blk;

    block_of(plan, n->first, n->block, i, &blk);
    x[OP_Q].at = (size_t)blk.row * x[OP_Q].ld;
    x[OP_K].at = (size_t)blk.col * x[OP_K].ld;
    x[OP_V].at = (size_t)blk.col * x[OP_V].ld;
    x[OP_O].at = (size_t)blk.row * x[OP_O].ld;
    x[OP_S].at = (size_t)blk.row * x[OP_S].ld + (size_t)blk.col;
    *rows = (size_t)blk.rows;
    *cols = (size_t)blk.cols;
}

/* Scores, then softmax, then the product with V, each block of rows reading
 * and writing only its columns of the scores. */
static clattn_status attend(clattn_plan *plan, naive *n, clattn_run_args *args, cl_mem q,
                            cl_mem k, cl_mem v, cl_mem o)
{
    const clattn_desc *d = &plan->desc;
    clattn_status status = CLATTN_OK;
    size_t rows, cols;
    operand x[OPS];

    operands(plan, n, q, k, v, o, x);
    for (int i = 0; i < n->blocks && !status; i++) {
        place(plan, n, i, x, &rows, &cols);
        status = gemm(plan, args, CLBlastTransposeYes, rows, cols, d->head_dim, d->scale,
                      &x[OP_Q], &x[OP_K], &x[OP_S], "Q and K");
    }
    if (!status)
        status = softmax(plan, n, args, o);
    for (int i = 0; i < n->blocks && !status; i++) {
        place(plan, n, i, x, &rows, &cols);
        status = gemm(plan, args, CLBlastTransposeNo, rows, d->v_head_dim, cols, 1.0f,
                      &x[OP_S], &x[OP_V], &x[OP_O], "P and V");
    }
    return status;
}

/* The largest temporary buffer one GEMM of a shape needs, over the first and
 * the last head's offsets; 0 when CLBlast cannot say. (The offsets matter:
 * CLBlast copies an operand only when it cannot use it in place.) */
static size_t temp_bytes(clattn_plan *plan, CLBlastTranspose tb, size_t m, size_t n,
                         size_t k, const operand *a, const operand *b, const operand *c)
{
    const size_t last_b = (size_t)plan->desc.batch - 1;
    const size_t last_h = (size_t)plan->desc.q_heads - 1;
    cl_command_queue queue = plan->ctx->queue;
    size_t most = 0;

    for (int end = 0; end < 2; end++) {
        const size_t i = end ? last_b : 0, h = end ? last_h : 0;
        size_t bytes = 0;

        if (CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor, CLBlastTransposeNo, tb, m,
                                       n, k, offset(a, i, h), a->ld, offset(b, i, h),
                                       b->ld, offset(c, i, h), c->ld, &queue,
                                       &bytes) != CLBlastSuccess)
            return 0;
        if (bytes > most)
            most = bytes;
    }
    return most;
}

/*
 * CLBlast's faster GEMM kernel copies its operands into padded buffers, and
 * allocates them afresh on every call unless given one: with one GEMM per
 * query head, that is an allocation (and its first touch) per head and run.
 * The plan keeps one buffer for all of them instead. Without it (CLBlast
 * cannot size it, or the device cannot hold it), CLBlast allocates its own.
 */
static void alloc_temp(clattn_plan *plan, naive *n)
{
    const clattn_desc *d = &plan->desc;
    size_t rows, cols, bytes = 0;
    operand x[OPS];
    cl_int err;

    operands(plan, n, NULL, NULL, NULL, NULL, x);
    for (int i = 0; i < n->blocks; i++) {
        size_t qk, pv;

        place(plan, n, i, x, &rows, &cols);
        qk = temp_bytes(plan, CLBlastTransposeYes, rows, cols, d->head_dim, &x[OP_Q],
                        &x[OP_K], &x[OP_S]);
        pv = temp_bytes(plan, CLBlastTransposeNo, rows, d->v_head_dim, cols, &x[OP_S],
                        &x[OP_V], &x[OP_O]);
        bytes = qk > bytes ? qk : bytes;
        bytes = pv > bytes ? pv : bytes;
    }
    if (bytes == 0 || bytes > plan->ctx->info.max_alloc)
        return;
    n->temp = clCreateBuffer(plan->ctx->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
    clattn__fault_mem(plan->ctx, &n->temp, &err);
    if (err != CL_SUCCESS) {
        n->temp = NULL;
        clattn__log(plan->ctx, CLATTN_LOG_INFO,
                    "no room for a %zu-byte GEMM buffer (%s): CLBlast allocates its own",
                    bytes, clattn__cl_error_name(err));
        return;
    }
    plan->workspace_bytes += bytes;
}

static clattn_status setup(clattn_plan *plan)
{
    naive *n = calloc(1, sizeof(*n));
    const size_t *bytes = plan->bytes;
    clattn_status status;

    if (!n)
        return clattn__fail(plan->ctx, CLATTN_HOST_MEMORY, "out of host memory");
    plan->impl = n;
    tune_gemm(plan);
    if ((status = alloc_scores(plan, n)) || (status = kernels(plan, n)))
        return status;
    choose_blocks(plan, n);
    alloc_temp(plan, n);
    if (plan->desc.dtype != CLATTN_F16)
        return CLATTN_OK;
    if ((status = alloc(plan, &n->qf, bytes[CLATTN_TENSOR_Q] * 2, "fp32 copy of Q")) ||
        (status = alloc(plan, &n->kf, bytes[CLATTN_TENSOR_K] * 2, "fp32 copy of K")) ||
        (status = alloc(plan, &n->vf, bytes[CLATTN_TENSOR_V] * 2, "fp32 copy of V")) ||
        (status = alloc(plan, &n->of, bytes[CLATTN_TENSOR_O] * 2, "fp32 output")))
        return status;
    return CLATTN_OK;
}

static clattn_status run(clattn_plan *plan, clattn_run_args *args)
{
    naive *n = plan->impl;
    const clattn_desc *d = &plan->desc;
    const size_t *bytes = plan->bytes;
    const int f16 = d->dtype == CLATTN_F16;
    cl_mem q = f16 ? n->qf : args->q, k = f16 ? n->kf : args->k;
    cl_mem v = f16 ? n->vf : args->v, o = f16 ? n->of : args->o;
    clattn_status status;

    if (f16 && ((status = convert(plan, args, n->to_float, args->q, q,
                                  bytes[CLATTN_TENSOR_Q] / 2)) ||
                (status = convert(plan, args, n->to_float, args->k, k,
                                  bytes[CLATTN_TENSOR_K] / 2)) ||
                (status = convert(plan, args, n->to_float, args->v, v,
                                  bytes[CLATTN_TENSOR_V] / 2))))
        return status;

    if ((status = attend(plan, n, args, q, k, v, o)))
        return status;

    if (f16)
        return convert(plan, args, n->to_half, o, args->o, bytes[CLATTN_TENSOR_O] / 2);
    return CLATTN_OK;
}

const clattn_variant_ops clattn__naive_ops = {setup, run, destroy};
