#include "peak.h"

#include <clblast_c.h>
#include <stdlib.h>
#include <time.h>

#include "cli.h"

#define RUNS 3
#define FMA_CHAINS 12
#define FMA_MIN_MS 25.0
#define FMA_MAX_ITERS (1 << 26)

/*
 * Twelve independent chains hide the multiply-add latency on every device we
 * know; the step and addend are arguments so that nothing can be folded, and
 * the chains converge to add / (1 - step) without overflow or denormals.
 */
static const char fma_source[] =
    "#define STEP(x) x = mad(x, b, c)\n"
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
    cl_context cl = clattn_context_cl_context(ctx);
    cl_device_id device = clattn_context_device(ctx);
    const char *source = fma_source;
    fma_setup s = {clattn_context_queue(ctx), NULL, 0, 0};
    cl_program program;
    cl_int err = CL_SUCCESS;
    int rc;

    program = clCreateProgramWithSource(cl, 1, &source, NULL, &err);
    if (err == CL_SUCCESS)
        err = clBuildProgram(program, 1, &device, "", NULL, NULL);
    if (err == CL_SUCCESS)
        s.kernel = clCreateKernel(program, "fma_chains", &err);

    rc = err == CL_SUCCESS
             ? fma_with_kernel(&s, cl, device, gflops)
             : cli_error("the FMA kernel failed to build (OpenCL error %d)", (int)err);
    if (s.kernel != NULL)
        clReleaseKernel(s.kernel);
    if (program != NULL)
        clReleaseProgram(program);
    return rc;
}
