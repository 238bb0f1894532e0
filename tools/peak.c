#include "peak.h"

#include <clblast_c.h>
#include <stdlib.h>
#include <time.h>

#include "cli.h"

#define RUNS 3
#define FMA_CHAINS 12
#define FMA_MIN_MS 25.0
#define FMA_MAX_ITERS (1 << 26)
#define READ_BYTES ((size_t)512 << 20)

/*
 * Twelve independent chains hide the multiply-add latency on every device we
 * know; the step and addend are arguments so that nothing can be folded, and
 * the chains converge to add / (1 - step) without overflow or denormals.
 * OP, a build option, is fma or mad: PoCL's mad ran at 0.8 of its fma on an
 * AVX-512 EPYC (187 against 230 GFLOP/s), while a device without fused
 * hardware would emulate fma slowly; the peak is the faster of the two.
 */
static const char fma_source[] =
    "#define STEP(x) x = OP(x, b, c)\n"
    "__kernel void fma_chains(__global float *out, int iters, float step, float add)\n"
    "{\n"
    "    float8 b = (float8)(step), c = (float8)(add);\n"
    "    float8 a0 = (float8)((float)(get_global_id(0) & 7)) * 0.125f;\n"
    "    float8 a1 = a0 + 1.0f, a2 = a0 + 2.0f, a3 = a0 + 3.0f;\n"
    "    float8 a4 = a0 + 4.0f, a5 = a0 + 5.0f, a6 = a0 + 6.0f;\n"
    "    float8 a7 = a0 + 7.0f, a8 = a0 + 8.0f, a9 = a0 + 9.0f;\n"
    "    float8 a10 = a0 + 10.0f, a11 = a0 + 11.0f;\n"
    "    for (int i = 0; i < iters; i++) {\n"
    "        STEP(a0); STEP(a1); STEP(a2); STEP(a3); STEP(a4); STEP(a5);\n"
    "        STEP(a6); STEP(a7); STEP(a8); STEP(a9); STEP(a10); STEP(a11);\n"
    "    }\n"
    "    float8 s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) +\n"
    "               ((a8 + a9) + (a10 + a11));\n"
    "    float4 h = s.lo + s.hi;\n"
    "    out[get_global_id(0)] = (h.x + h.y) + (h.z + h.w);\n"
    "}\n";

/*
 * Streams a buffer once and sums it, so that nothing can be skipped. A CPU
 * work-item reads one contiguous stretch, which its core's prefetchers
 * follow; elsewhere neighbouring work-items read neighbouring vectors, so
 * that the accesses of a work-group coalesce.
 */
static const char read_source[] =
    "__kernel void read_sum(__global const float4 *in, __global float *out,\n"
    "                       int per_item, int contiguous)\n"
    "{\n"
    "    const size_t g = get_global_id(0), n = get_global_size(0);\n"
    "    const size_t first = contiguous ? g * per_item : g;\n"
    "    const size_t step = contiguous ? 1 : n;\n"
    "    float4 s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;\n"
    "    for (int i = 0; i < per_item; i += 4) {\n"
    "        s0 += in[first + i * step];\n"
    "        s1 += in[first + (i + 1) * step];\n"
    "        s2 += in[first + (i + 2) * step];\n"
    "        s3 += in[first + (i + 3) * step];\n"
    "    }\n"
    "    float4 s = (s0 + s1) + (s2 + s3);\n"
    "    out[g] = (s.x + s.y) + (s.z + s.w);\n"
    "}\n";

/* Builds one of the yardstick kernels; the caller releases what is set. */
static cl_int build_kernel(cl_context cl, cl_device_id device, const char *source,
                           const char *options, const char *name, cl_program *program,
                           cl_kernel *kernel)
{
    cl_int err = CL_SUCCESS;

    *program = clCreateProgramWithSource(cl, 1, &source, NULL, &err);
    if (err == CL_SUCCESS)
        err = clBuildProgram(*program, 1, &device, options, NULL, NULL);
    if (err == CL_SUCCESS)
        *kernel = clCreateKernel(*program, name, &err);
    return err;
}

typedef struct fma_setup {
    cl_command_queue queue;
    cl_kernel kernel;
    size_t items, local;
} fma_setup;

static double wall_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

double peak_event_ms(cl_event first, cl_event last)
{
    cl_ulong start = 0, end = 0;

    if (clGetEventProfilingInfo(first, CL_PROFILING_COMMAND_START, sizeof start, &start,
                                NULL) != CL_SUCCESS ||
        clGetEventProfilingInfo(last, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL) !=
            CL_SUCCESS ||
        end <= start)
        return -1.0;
    return (double)(end - start) * 1e-6;
}

/*
 * CLBlast returns the event of its last kernel only, so a marker enqueued
 * before the call stands for the start of any preparation kernels.
 */
static int time_gemm(cl_command_queue queue, cl_mem a, cl_mem b, cl_mem c, double *ms)
{
    const size_t n = GEMM_SIZE;
    cl_event start = NULL, end = NULL;
    CLBlastStatusCode status;
    double wall = wall_ms();
    int rc = 0;

    clEnqueueMarkerWithWaitList(queue, 0, NULL, &start);
    status = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo,
                          n, n, n, 1.0f, a, 0, n, b, 0, n, 0.0f, c, 0, n, &queue, &end);
    if (status != CLBlastSuccess || clFinish(queue) != CL_SUCCESS) {
        rc = cli_error("CLBlast SGEMM failed (status %d)", (int)status);
    } else {
        *ms = start != NULL ? peak_event_ms(start, end) : -1.0;
        if (*ms <= 0.0)
            *ms = wall_ms() - wall;
    }

    if (start != NULL)
        clReleaseEvent(start);
    if (end != NULL)
        clReleaseEvent(end);
    return rc;
}

static int run_gemms(cl_command_queue queue, cl_mem *mem, double *gflops)
{
    const double flops = 2.0 * GEMM_SIZE * GEMM_SIZE * GEMM_SIZE;
    double times[RUNS];

    for (int run = -1; run < RUNS; run++) {
        double ms = 0.0;

        if (time_gemm(queue, mem[0], mem[1], mem[2], &ms) != 0)
            return CLI_FAILED;
        if (run >= 0)
            times[run] = ms;
    }

    *gflops = flops / (cli_median(times, RUNS) * 1e6);
    return 0;
}

int peak_gemm_gflops(clattn_context *ctx, double *gflops)
{
    const size_t count = (size_t)GEMM_SIZE * GEMM_SIZE;
    cl_context cl = clattn_context_cl_context(ctx);
    cl_command_queue queue = clattn_context_queue(ctx);
    cl_mem mem[3] = {NULL, NULL, NULL};
    float *host = malloc(count * sizeof *host);
    cl_int err = CL_SUCCESS;
    int rc;

    if (host == NULL)
        return cli_error("out of memory");
    for (size_t i = 0; i < count; i++)
        host[i] = (float)(i % 17) * 0.0625f - 0.5f;

    for (int i = 0; i < 3 && err == CL_SUCCESS; i++)
        mem[i] = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                count * sizeof *host, host, &err);

    rc = err == CL_SUCCESS ? run_gemms(queue, mem, gflops)
                           : cli_error("clCreateBuffer failed (%d)", (int)err);
    for (int i = 0; i < 3; i++) {
        if (mem[i] != NULL)
            clReleaseMemObject(mem[i]);
    }
    free(host);
    return rc;
}

static int time_fma(const fma_setup *s, int iters, double *ms)
{
    cl_event event = NULL;
    cl_int err;

    err = clSetKernelArg(s->kernel, 1, sizeof iters, &iters);
    if (err == CL_SUCCESS)
        err = clEnqueueNDRangeKernel(s->queue, s->kernel, 1, NULL, &s->items, &s->local,
                                     0, NULL, &event);
    if (err == CL_SUCCESS)
        err = clWaitForEvents(1, &event);
    if (err == CL_SUCCESS)
        *ms = peak_event_ms(event, event);

    if (event != NULL)
        clReleaseEvent(event);
    if (err != CL_SUCCESS || *ms <= 0.0)
        return cli_error("the FMA kernel failed (OpenCL error %d)", (int)err);
    return 0;
}

/*
 * After a first run that may include compilation, grows the loop count until
 * one run lasts long enough to time, then times it.
 */
static int run_fma(const fma_setup *s, double *gflops)
{
    double times[RUNS];
    double ms = 0.0;
    int iters = 256;

    if (time_fma(s, iters, &ms) != 0 || time_fma(s, iters, &ms) != 0)
        return CLI_FAILED;
    while (ms < FMA_MIN_MS && iters < FMA_MAX_ITERS) {
        iters *= 4;
        if (time_fma(s, iters, &ms) != 0)
            return CLI_FAILED;
    }

    for (int run = 0; run < RUNS; run++) {
        if (time_fma(s, iters, &times[run]) != 0)
            return CLI_FAILED;
    }

    ms = cli_median(times, RUNS);
    *gflops = 2.0 * 8 * FMA_CHAINS * (double)iters * (double)s->items / (ms * 1e6);
    return 0;
}

/*
 * On a CPU one work-item per work-group runs the chains in vector registers;
 * on other devices the work-groups must be wide enough to fill the SIMD lanes.
 */
static void size_fma(fma_setup *s, cl_device_id device)
{
    cl_device_type type = 0;
    cl_uint units = 1;
    size_t limit = 1;

    clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    clGetKernelWorkGroupInfo(s->kernel, device, CL_KERNEL_WORK_GROUP_SIZE, sizeof limit,
                             &limit, NULL);

    if (type & CL_DEVICE_TYPE_CPU) {
        s->local = 1;
        s->items = units * 16 > 64 ? units * 16 : 64;
        return;
    }
    s->local = limit < 64 ? (limit > 0 ? limit : 1) : 64;
    s->items = ((size_t)units * 2048 + s->local - 1) / s->local * s->local;
}

static int fma_with_kernel(fma_setup *s, cl_context cl, cl_device_id device,
                           double *gflops)
{
    cl_float step = 0.999f, add = 0.001f;
    cl_int err = CL_SUCCESS;
    cl_mem out;
    int rc;

    size_fma(s, device);
    out = clCreateBuffer(cl, CL_MEM_WRITE_ONLY, s->items * sizeof(cl_float), NULL, &err);
    if (err != CL_SUCCESS)
        return cli_error("clCreateBuffer failed (%d)", (int)err);

    err = clSetKernelArg(s->kernel, 0, sizeof out, &out);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(s->kernel, 2, sizeof step, &step);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(s->kernel, 3, sizeof add, &add);

    rc = err == CL_SUCCESS ? run_fma(s, gflops)
                           : cli_error("clSetKernelArg failed (%d)", (int)err);
    clReleaseMemObject(out);
    return rc;
}

int peak_fma_gflops(clattn_context *ctx, double *gflops)
{
    static const char *const ops[] = {"-D OP=fma", "-D OP=mad"};
    cl_context cl = clattn_context_cl_context(ctx);
    cl_device_id device = clattn_context_device(ctx);
    int rc = 0;

    *gflops = 0.0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        fma_setup s = {clattn_context_queue(ctx), NULL, 0, 0};
        cl_program program = NULL;
        cl_int err = build_kernel(cl, device, fma_source, ops[i], "fma_chains", &program,
                                  &s.kernel);
        double rate = 0.0;

        rc =
            err == CL_SUCCESS
                ? fma_with_kernel(&s, cl, device, &rate)
                : cli_error("the FMA kernel failed to build (OpenCL error %d)", (int)err);
        if (rate > *gflops)
            *gflops = rate;
        if (s.kernel != NULL)
            clReleaseKernel(s.kernel);
        if (program != NULL)
            clReleaseProgram(program);
    }
    return rc;
}

typedef struct read_setup {
    cl_command_queue queue;
    cl_kernel kernel;
    size_t items, local;
} read_setup;

static int time_read(const read_setup *s, double *ms)
{
    cl_event event = NULL;
    cl_int err;

    err = clEnqueueNDRangeKernel(s->queue, s->kernel, 1, NULL, &s->items, &s->local, 0,
                                 NULL, &event);
    if (err == CL_SUCCESS)
        err = clWaitForEvents(1, &event);
    if (err == CL_SUCCESS)
        *ms = peak_event_ms(event, event);

    if (event != NULL)
        clReleaseEvent(event);
    if (err != CL_SUCCESS || *ms <= 0.0)
        return cli_error("the read kernel failed (OpenCL error %d)", (int)err);
    return 0;
}

/*
 * The same shapes as the FMA kernel: on a CPU a few contiguous stretches per
 * compute unit, elsewhere enough work-groups to keep every unit's loads in
 * flight.
 */
static int read_with_kernel(read_setup *s, cl_context cl, cl_device_id device,
                            double *gbps)
{
    cl_device_type type = 0;
    cl_uint units = 1;
    cl_ulong max_alloc = 0;
    size_t bytes = READ_BYTES, vectors;
    cl_int per_item, contiguous, err;
    cl_float zero = 0.0f;
    double times[RUNS], ms = 0.0;
    cl_mem in = NULL, out = NULL;
    int rc = 0;

    clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc,
                    NULL);
    while (bytes > max_alloc && bytes > ((size_t)16 << 20))
        bytes /= 2;

    contiguous = (type & CL_DEVICE_TYPE_CPU) != 0;
    s->local = contiguous ? 1 : 64;
    s->items = contiguous ? (size_t)units * 16 : (size_t)units * 2048;
    vectors = bytes / (4 * sizeof(cl_float));
    per_item = (cl_int)(vectors / s->items) & ~3;
    if (per_item < 4)
        return cli_error("the device is too small to time its memory");

    in = clCreateBuffer(cl, CL_MEM_READ_ONLY, bytes, NULL, &err);
    if (err == CL_SUCCESS)
        out = clCreateBuffer(cl, CL_MEM_WRITE_ONLY, s->items * sizeof(cl_float), NULL,
                             &err);
    /* Filling the buffer also touches its pages, which the first read would
     * otherwise pay for. */
    if (err == CL_SUCCESS)
        err = clEnqueueFillBuffer(s->queue, in, &zero, sizeof zero, 0, bytes, 0, NULL,
                                  NULL);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(s->kernel, 0, sizeof in, &in);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(s->kernel, 1, sizeof out, &out);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(s->kernel, 2, sizeof per_item, &per_item);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(s->kernel, 3, sizeof contiguous, &contiguous);
    if (err != CL_SUCCESS)
        rc = cli_error("the read kernel's buffers failed (OpenCL error %d)", (int)err);

    for (int run = -1; rc == 0 && run < RUNS; run++) {
        rc = time_read(s, &ms);
        if (run >= 0)
            times[run] = ms;
    }
    if (rc == 0)
        *gbps = (double)per_item * s->items * 4 * sizeof(cl_float) /
                (cli_median(times, RUNS) * 1e6);

    if (in != NULL)
        clReleaseMemObject(in);
    if (out != NULL)
        clReleaseMemObject(out);
    return rc;
}

int peak_read_gbps(clattn_context *ctx, double *gbps)
{
    cl_context cl = clattn_context_cl_context(ctx);
    cl_device_id device = clattn_context_device(ctx);
    read_setup s = {clattn_context_queue(ctx), NULL, 0, 0};
    cl_program program = NULL;
    cl_int err =
        build_kernel(cl, device, read_source, "", "read_sum", &program, &s.kernel);
    int rc;

    rc = err == CL_SUCCESS
             ? read_with_kernel(&s, cl, device, gbps)
             : cli_error("the read kernel failed to build (OpenCL error %d)", (int)err);
    if (s.kernel != NULL)
        clReleaseKernel(s.kernel);
    if (program != NULL)
        clReleaseProgram(program);
    return rc;
}
