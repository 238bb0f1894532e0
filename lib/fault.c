/*
 * Fault injection and buffer accounting, for the tests.
 *
 * CLATTN_FAULT="alloc:N", "build:N" or "enqueue:N", read when a context is
 * made, makes the Nth buffer allocation, program build or command (a kernel
 * launch or a CLBlast call) of that context fail once, as the driver would
 * fail it, after the real call succeeded: whatever the call made is
 * released, so the paths out of a failure are exercised with real objects.
 *
 * CLATTN_FAULT="poison" fails nothing: it fills every buffer the context
 * makes without host data with NaN (as fp32 and as fp16) before its first
 * use, so a kernel that reads a workspace entry no earlier command wrote
 * spoils the result instead of reading leftovers that happen to be zero.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const struct {
    const char *name;
    cl_int error;
} faults[] = {
    [CLATTN_FAULT_ALLOC] = {"alloc", CL_MEM_OBJECT_ALLOCATION_FAILURE},
    [CLATTN_FAULT_BUILD] = {"build", CL_BUILD_PROGRAM_FAILURE},
    [CLATTN_FAULT_ENQUEUE] = {"enqueue", CL_OUT_OF_RESOURCES},
    [CLATTN_FAULT_POISON] = {"poison", CL_SUCCESS},
};

/* Buffers that clattn made and OpenCL has not freed yet, in the process. */
static atomic_long live_buffers;

void clattn__fault_init(clattn_context *ctx)
{
    const char *spec = getenv("CLATTN_FAULT");

    ctx->fault_kind = -1;
    atomic_init(&ctx->fault_countdown, 0);
    if (!spec)
        return;
    for (int k = 0; k < (int)(sizeof(faults) / sizeof(faults[0])); k++) {
        size_t n = strlen(faults[k].name);

        if (k == CLATTN_FAULT_POISON) {
            if (!strcmp(spec, faults[k].name))
                ctx->fault_kind = k;
        } else if (!strncmp(spec, faults[k].name, n) && spec[n] == ':') {
            ctx->fault_kind = k;
            atomic_store(&ctx->fault_countdown, atoi(spec + n + 1));
        }
    }
}

/* Counts a call of the kind; true for the one that is to fail. */
static int strike(clattn_context *ctx, clattn_fault kind)
{
    return ctx->fault_kind == (int)kind &&
           atomic_fetch_sub(&ctx->fault_countdown, 1) == 1;
}

int clattn__fault_call(clattn_context *ctx, clattn_fault kind, int status,
                       cl_event *event)
{
    if (status != CL_SUCCESS || !strike(ctx, kind))
        return status;
    if (event && *event) {
        clReleaseEvent(*event);
        *event = NULL;
    }
    return faults[kind].error;
}

/* Both halves of 0x7fc07fc0 are fp16 NaNs, and the whole is an fp32 NaN. */
static void poison(clattn_context *ctx, cl_mem mem)
{
    const cl_ushort nan = 0x7fc0;
    cl_mem_flags flags = 0;
    size_t size = 0;

    clGetMemObjectInfo(mem, CL_MEM_FLAGS, sizeof(flags), &flags, NULL);
    clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof(size), &size, NULL);
    if (flags & (CL_MEM_COPY_HOST_PTR | CL_MEM_USE_HOST_PTR) || size < sizeof(nan))
        return;
    clEnqueueFillBuffer(ctx->queue, mem, &nan, sizeof(nan), 0, size & ~(size_t)1, 0,
                        NULL, NULL);
}

static void CL_CALLBACK buffer_freed(cl_mem mem, void *cookie)
{
    (void)mem;
    (void)cookie;
    atomic_fetch_sub(&live_buffers, 1);
}

void clattn__fault_mem(clattn_context *ctx, cl_mem *mem, cl_int *err)
{
    if (*err != CL_SUCCESS || !*mem)
        return;
    if (strike(ctx, CLATTN_FAULT_ALLOC)) {
        clReleaseMemObject(*mem);
        *mem = NULL;
        *err = faults[CLATTN_FAULT_ALLOC].error;
        return;
    }
    if (ctx->fault_kind == CLATTN_FAULT_POISON)
        poison(ctx, *mem);
    if (clSetMemObjectDestructorCallback(*mem, buffer_freed, NULL) == CL_SUCCESS)
        atomic_fetch_add(&live_buffers, 1);
}

long clattn__live_buffers(void)
{
    return atomic_load(&live_buffers);
}
