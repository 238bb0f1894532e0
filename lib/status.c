/*
 * Status names and texts, failure messages and logging.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define STR2(x) #x
#define STR(x) STR2(x)

const char *clattn_version(void)
{
    return STR(CLATTN_VERSION_MAJOR) "." STR(CLATTN_VERSION_MINOR) "." STR(
        CLATTN_VERSION_PATCH);
}

const char *clattn_status_name(clattn_status status)
{
    switch (status) {
#define NAME_CASE(name, value, text)                                                     \
    case CLATTN_##name:                                                                  \
        return #name;
        CLATTN_STATUS_LIST(NAME_CASE)
#undef NAME_CASE
    }
    return "UNKNOWN_STATUS";
}

const char *clattn_status_text(clattn_status status)
{
    switch (status) {
#define TEXT_CASE(name, value, text)                                                     \
    case CLATTN_##name:                                                                  \
        return text;
        CLATTN_STATUS_LIST(TEXT_CASE)
#undef TEXT_CASE
    }
    return "unknown status";
}

/* Failures of context creation have no context to hold their detail. */
static _Thread_local char create_message[CLATTN_MESSAGE_SIZE];

const char *clattn_context_message(const clattn_context *ctx)
{
    return ctx ? ctx->message : create_message;
}

void clattn__clear_message(clattn_context *ctx)
{
    if (ctx)
        ctx->message[0] = '\0';
    else
        create_message[0] = '\0';
}

static void vlog(clattn_context *ctx, clattn_log_level level, const char *fmt, va_list ap)
{
    char line[CLATTN_MESSAGE_SIZE];

    if (!ctx || !ctx->log || level > ctx->log_level)
        return;
    vsnprintf(line, sizeof(line), fmt, ap);
    ctx->log(ctx->log_cookie, level, line);
}

void clattn__log(clattn_context *ctx, clattn_log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(ctx, level, fmt, ap);
    va_end(ap);
}

clattn_status clattn__fail(clattn_context *ctx, clattn_status status, const char *fmt,
                           ...)
{
    char *buf = ctx ? ctx->message : create_message;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, CLATTN_MESSAGE_SIZE, fmt, ap);
    va_end(ap);
    clattn__log(ctx, CLATTN_LOG_DEBUG, "%s: %s", clattn_status_name(status), buf);
    return status;
}

clattn_status clattn__cl_fail(clattn_context *ctx, cl_int err, const char *call)
{
    clattn_status status = CLATTN_OPENCL_ERROR;

    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
        err == CL_INVALID_BUFFER_SIZE)
        status = CLATTN_DEVICE_MEMORY;
    else if (err == CL_OUT_OF_HOST_MEMORY)
        status = CLATTN_HOST_MEMORY;
    return clattn__fail(ctx, status, "%s failed: %s (%d)", call,
                        clattn__cl_error_name(err), (int)err);
}

const char *clattn__cl_error_name(cl_int err)
{
    switch (err) {
#define CL_ERR(e)                                                                        \
    case e:                                                                              \
        return #e;
        CL_ERR(CL_SUCCESS)
        CL_ERR(CL_DEVICE_NOT_FOUND)
        CL_ERR(CL_DEVICE_NOT_AVAILABLE)
        CL_ERR(CL_COMPILER_NOT_AVAILABLE)
        CL_ERR(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        CL_ERR(CL_OUT_OF_RESOURCES)
        CL_ERR(CL_OUT_OF_HOST_MEMORY)
        CL_ERR(CL_PROFILING_INFO_NOT_AVAILABLE)
        CL_ERR(CL_BUILD_PROGRAM_FAILURE)
        CL_ERR(CL_INVALID_VALUE)
        CL_ERR(CL_INVALID_DEVICE)
        CL_ERR(CL_INVALID_CONTEXT)
        CL_ERR(CL_INVALID_COMMAND_QUEUE)
        CL_ERR(CL_INVALID_MEM_OBJECT)
        CL_ERR(CL_INVALID_BINARY)
        CL_ERR(CL_INVALID_BUILD_OPTIONS)
        CL_ERR(CL_INVALID_PROGRAM)
        CL_ERR(CL_INVALID_PROGRAM_EXECUTABLE)
        CL_ERR(CL_INVALID_KERNEL_NAME)
        CL_ERR(CL_INVALID_KERNEL)
        CL_ERR(CL_INVALID_ARG_INDEX)
        CL_ERR(CL_INVALID_ARG_VALUE)
        CL_ERR(CL_INVALID_ARG_SIZE)
        CL_ERR(CL_INVALID_KERNEL_ARGS)
        CL_ERR(CL_INVALID_WORK_DIMENSION)
        CL_ERR(CL_INVALID_WORK_GROUP_SIZE)
        CL_ERR(CL_INVALID_WORK_ITEM_SIZE)
        CL_ERR(CL_INVALID_GLOBAL_OFFSET)
        CL_ERR(CL_INVALID_EVENT_WAIT_LIST)
        CL_ERR(CL_INVALID_EVENT)
        CL_ERR(CL_INVALID_OPERATION)
        CL_ERR(CL_INVALID_BUFFER_SIZE)
        CL_ERR(CL_INVALID_GLOBAL_WORK_SIZE)
        CL_ERR(CL_INVALID_PLATFORM)
        CL_ERR(CL_INVALID_QUEUE_PROPERTIES)
        CL_ERR(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        CL_ERR(CL_MISALIGNED_SUB_BUFFER_OFFSET)
#undef CL_ERR
    }
    return "unknown OpenCL error";
}
