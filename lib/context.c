/*
 * Contexts: choosing a device, owning or wrapping the OpenCL objects.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

void clattn_context_options_init(clattn_context_options *options)
{
    if (!options)
        return;
    memset(options, 0, sizeof(*options));
    options->log_level = CLATTN_LOG_WARNING;
}

static cl_int query_string(cl_device_id device, cl_device_info what, char *buf,
                           size_t size)
{
    cl_int err = clGetDeviceInfo(device, what, size, buf, NULL);

    buf[size - 1] = '\0';
    return err;
}

cl_int clattn__device_info(cl_device_id device, clattn_device_info *info)
{
    cl_platform_id platform;
    cl_int err = 0;

    memset(info, 0, sizeof(*info));
    err |= clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof(platform), &platform, NULL);
    err |= clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof(info->platform_name),
                             info->platform_name, NULL);
    err |=
        clGetPlatformInfo(platform, CL_PLATFORM_VERSION, sizeof(info->platform_version),
                          info->platform_version, NULL);
    err |= query_string(device, CL_DEVICE_NAME, info->name, sizeof(info->name));
    err |= query_string(device, CL_DEVICE_VENDOR, info->vendor, sizeof(info->vendor));
    err |= query_string(device, CL_DEVICE_VERSION, info->version, sizeof(info->version));
    err |= query_string(device, CL_DRIVER_VERSION, info->driver, sizeof(info->driver));
    err |= clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof(info->type), &info->type, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof(info->max_alloc),
                           &info->max_alloc, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof(info->local_mem),
                           &info->local_mem, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE,
                           sizeof(info->max_work_group), &info->max_work_group, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS,
                           sizeof(info->compute_units), &info->compute_units, NULL);
    err |= clGetDeviceInfo(device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT,
                           sizeof(info->vector_width), &info->vector_width, NULL);
    info->platform_name[sizeof(info->platform_name) - 1] = '\0';
    info->platform_version[sizeof(info->platform_version) - 1] = '\0';
    return err ? CL_INVALID_DEVICE : CL_SUCCESS;
}

/* Every device of every platform, in the order `clattn devices` prints. */
static int list_devices(cl_device_id *devices, int max)
{
    cl_platform_id platforms[MAX_PLATFORMS];
    cl_uint nplat = 0;
    int count = 0;

    if (clGetPlatformIDs(MAX_PLATFORMS, platforms, &nplat) != CL_SUCCESS)
        return 0;
    if (nplat > MAX_PLATFORMS)
        nplat = MAX_PLATFORMS;
    for (cl_uint p = 0; p < nplat && count < max; p++) {
        cl_uint n = 0;

        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, (cl_uint)(max - count),
                           devices + count, &n) != CL_SUCCESS)
            continue;
        count += (int)n < max - count ? (int)n : max - count;
    }
    return count;
}

static int contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay; hay++) {
        size_t i = 0;

        while (i < n && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

static int matches(cl_device_id device, const char *spec)
{
    clattn_device_info info;
    char both[600];

    if (clattn__device_info(device, &info) != CL_SUCCESS)
        return 0;
    if (!strcmp(spec, "gpu"))
        return (info.type & CL_DEVICE_TYPE_GPU) != 0;
    if (!strcmp(spec, "cpu"))
        return (info.type & CL_DEVICE_TYPE_CPU) != 0;
    snprintf(both, sizeof(both), "%s %s", info.platform_name, info.name);
    return contains_nocase(both, spec);
}

static int is_index(const char *spec)
{
    if (!*spec || strlen(spec) > 4)
        return 0;
    for (const char *c = spec; *c; c++)
        if (!isdigit((unsigned char)*c))
            return 0;
    return 1;
}

static clattn_status pick_device(const char *spec, cl_device_id *out)
{
    cl_device_id devices[MAX_DEVICES];
    int count = list_devices(devices, MAX_DEVICES);

    if (count == 0)
        return clattn__fail(NULL, CLATTN_NO_DEVICE,
                            "no OpenCL platform or device found (is an ICD such as "
                            "pocl-opencl-icd installed?)");
    if (!spec || !*spec) {
        for (int i = 0; i < count; i++) {
            if (matches(devices[i], "gpu")) {
                *out = devices[i];
                return CLATTN_OK;
            }
        }
        *out = devices[0];
        return CLATTN_OK;
    }
    if (is_index(spec)) {
        int index = atoi(spec);

        if (index >= count)
            return clattn__fail(NULL, CLATTN_NO_DEVICE,
                                "device index %d out of range: %d device(s) found", index,
                                count);
        *out = devices[index];
        return CLATTN_OK;
    }
    for (int i = 0; i < count; i++) {
        if (matches(devices[i], spec)) {
            *out = devices[i];
            return CLATTN_OK;
        }
    }
    return clattn__fail(NULL, CLATTN_NO_DEVICE, "no OpenCL device matches \"%s\"", spec);
}

static int env_true(const char *name)
{
    const char *v = getenv(name);

    return v && *v && strcmp(v, "0") != 0;
}

char *clattn__user_path(const char *option, const char *env_name, const char *name)
{
    const char *env = getenv(env_name);
    char buf[4096];

    if (option && *option)
        return strdup(option);
    if (env && *env)
        return strdup(env);
    if ((env = getenv("XDG_CACHE_HOME")) && *env)
        snprintf(buf, sizeof(buf), "%s/clattn%s%s", env, *name ? "/" : "", name);
    else if ((env = getenv("HOME")) && *env)
        snprintf(buf, sizeof(buf), "%s/.cache/clattn%s%s", env, *name ? "/" : "", name);
    else
        return NULL;
    return strdup(buf);
}

static char *resolve_cache_dir(const clattn_context_options *options)
{
    if (options->disable_disk_cache || env_true("CLATTN_DISABLE_CACHE"))
        return NULL;
    return clattn__user_path(options->cache_dir, "CLATTN_CACHE_DIR", "");
}

/* Takes references to the three objects; the caller keeps its own. */
static clattn_status finish_context(clattn_context **out, cl_context cl_ctx,
                                    cl_device_id device, cl_command_queue queue,
                                    const clattn_context_options *options)
{
    clattn_context_options defaults;
    cl_command_queue_properties props = 0;
    clattn_context *ctx;

    if (!options) {
        clattn_context_options_init(&defaults);
        options = &defaults;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return clattn__fail(NULL, CLATTN_HOST_MEMORY,
                            "out of host memory for the context");
    if (clattn__device_info(device, &ctx->info) != CL_SUCCESS) {
        free(ctx);
        return clattn__fail(NULL, CLATTN_OPENCL_ERROR, "could not query the device");
    }
    clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof(props), &props, NULL);
    ctx->profiling = (props & CL_QUEUE_PROFILING_ENABLE) != 0;
    ctx->log = options->log;
    ctx->log_cookie = options->log_cookie;
    ctx->log_level = options->log_level;
    ctx->cache_dir = resolve_cache_dir(options);
    ctx->tuning_file =
        clattn__user_path(options->tuning_file, "CLATTN_TUNING_FILE", "tuning.txt");
    pthread_mutex_init(&ctx->lock, NULL);
    clattn__fault_init(ctx);

    clRetainContext(cl_ctx);
    clRetainCommandQueue(queue);
    ctx->cl_ctx = cl_ctx;
    ctx->device = device;
    ctx->queue = queue;
    clattn__log(ctx, CLATTN_LOG_INFO, "device: %s (%s, driver %s)", ctx->info.name,
                ctx->info.platform_name, ctx->info.driver);
    *out = ctx;
    return CLATTN_OK;
}

clattn_status clattn_context_create(clattn_context **out,
                                    const clattn_context_options *options)
{
    const char *spec = options ? options->device : NULL;
    cl_device_id device;
    cl_context cl_ctx;
    cl_command_queue queue;
    clattn_status status;
    cl_int err;

    clattn__clear_message(NULL);
    if (!out)
        return clattn__fail(NULL, CLATTN_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (!spec)
        spec = getenv("CLATTN_DEVICE");
    status = pick_device(spec, &device);
    if (status)
        return status;

    cl_ctx = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    if (err != CL_SUCCESS)
        return clattn__cl_fail(NULL, err, "clCreateContext");
    queue = clCreateCommandQueue(cl_ctx, device, CL_QUEUE_PROFILING_ENABLE, &err);
    if (err != CL_SUCCESS) {
        clReleaseContext(cl_ctx);
        return clattn__cl_fail(NULL, err, "clCreateCommandQueue");
    }
    status = finish_context(out, cl_ctx, device, queue, options);
    clReleaseCommandQueue(queue);
    clReleaseContext(cl_ctx);
    return status;
}

clattn_status clattn_context_wrap(clattn_context **out, cl_context cl_ctx,
                                  cl_device_id device, cl_command_queue queue,
                                  const clattn_context_options *options)
{
    cl_command_queue_properties props = 0;
    cl_context queue_ctx = NULL;
    cl_device_id queue_dev = NULL;

    clattn__clear_message(NULL);
    if (!out)
        return clattn__fail(NULL, CLATTN_INVALID_ARGUMENT, "out is NULL");
    *out = NULL;
    if (!cl_ctx || !device || !queue)
        return clattn__fail(NULL, CLATTN_INVALID_ARGUMENT, "%s is NULL",
                            !cl_ctx   ? "cl_ctx"
                            : !device ? "device"
                                      : "queue");
    if (clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof(queue_ctx), &queue_ctx,
                              NULL) != CL_SUCCESS ||
        clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof(queue_dev), &queue_dev,
                              NULL) != CL_SUCCESS ||
        clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof(props), &props, NULL) !=
            CL_SUCCESS)
        return clattn__fail(NULL, CLATTN_INVALID_ARGUMENT, "queue is not a valid queue");
    if (queue_ctx != cl_ctx)
        return clattn__fail(NULL, CLATTN_INVALID_ARGUMENT,
                            "queue belongs to another cl_context");
    if (queue_dev != device)
        return clattn__fail(NULL, CLATTN_INVALID_ARGUMENT,
                            "queue belongs to another device");
    if (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)
        return clattn__fail(NULL, CLATTN_INVALID_ARGUMENT,
                            "queue is out-of-order; clattn needs an in-order queue");
    return finish_context(out, cl_ctx, device, queue, options);
}

void clattn_context_destroy(clattn_context *ctx)
{
    if (!ctx)
        return;
    clattn__programs_release(ctx);
    clReleaseCommandQueue(ctx->queue);
    clReleaseContext(ctx->cl_ctx);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx->cache_dir);
    free(ctx->tuning_file);
    free(ctx);
}

cl_context clattn_context_cl_context(const clattn_context *ctx)
{
    return ctx ? ctx->cl_ctx : NULL;
}

cl_device_id clattn_context_device(const clattn_context *ctx)
{
    return ctx ? ctx->device : NULL;
}

cl_command_queue clattn_context_queue(const clattn_context *ctx)
{
    return ctx ? ctx->queue : NULL;
}

clattn_status clattn_context_stats(const clattn_context *ctx, clattn_stats *stats)
{
    if (!ctx || !stats)
        return CLATTN_INVALID_ARGUMENT;
    pthread_mutex_lock((pthread_mutex_t *)&ctx->lock);
    *stats = ctx->stats;
    pthread_mutex_unlock((pthread_mutex_t *)&ctx->lock);
    return CLATTN_OK;
}
