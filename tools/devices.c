#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_PLATFORMS 64
#define MAX_DEVICES 256

/* A device string, or "?" when the driver will not tell. */
static char *device_string(cl_device_id device, cl_device_info param)
{
    size_t size = 0;
    char *text;

    if (clGetDeviceInfo(device, param, 0, NULL, &size) != CL_SUCCESS || size == 0)
        return NULL;
    text = malloc(size + 1);
    if (text == NULL)
        return NULL;
    if (clGetDeviceInfo(device, param, size, text, NULL) != CL_SUCCESS) {
        free(text);
        return NULL;
    }
    text[size] = '\0';
    return text;
}

static char *platform_string(cl_platform_id platform, cl_platform_info param)
{
    size_t size = 0;
    char *text;

    if (clGetPlatformInfo(platform, param, 0, NULL, &size) != CL_SUCCESS || size == 0)
        return NULL;
    text = malloc(size + 1);
    if (text == NULL)
        return NULL;
    if (clGetPlatformInfo(platform, param, size, text, NULL) != CL_SUCCESS) {
        free(text);
        return NULL;
    }
    text[size] = '\0';
    return text;
}

static cl_ulong device_ulong(cl_device_id device, cl_device_info param)
{
    cl_ulong value = 0;

    clGetDeviceInfo(device, param, sizeof value, &value, NULL);
    return value;
}

static const char *type_name(cl_device_type type)
{
    if (type & CL_DEVICE_TYPE_GPU)
        return "GPU";
    if (type & CL_DEVICE_TYPE_CPU)
        return "CPU";
    if (type & CL_DEVICE_TYPE_ACCELERATOR)
        return "accelerator";
    return "other";
}

static void print_bytes(const char *label, cl_ulong bytes)
{
    const char *units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    double value = (double)bytes;
    int unit = 0;

    while (value >= 1024.0 && unit < 4) {
        value /= 1024.0;
        unit++;
    }
    if (unit == 0)
        printf("    %-18s %llu bytes\n", label, (unsigned long long)bytes);
    else
        printf("    %-18s %.1f %s\n", label, value, units[unit]);
}

static int has_extension(const char *extensions, const char *name)
{
    size_t len = strlen(name);

    for (const char *p = extensions; (p = strstr(p, name)) != NULL; p += len) {
        int starts = p == extensions || p[-1] == ' ';
        int ends = p[len] == '\0' || p[len] == ' ';

        if (starts && ends)
            return 1;
    }
    return 0;
}

static void print_device(int index, cl_device_id device, const char *platform)
{
    char *name = device_string(device, CL_DEVICE_NAME);
    char *extensions = device_string(device, CL_DEVICE_EXTENSIONS);
    char *driver = device_string(device, CL_DRIVER_VERSION);
    char *version = device_string(device, CL_DEVICE_VERSION);
    cl_device_type type = 0;
    cl_uint units = 0;
    size_t group = 0;

    clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof group, &group, NULL);

    printf("%d: %s\n", index, name != NULL ? name : "?");
    printf("    %-18s %s\n", "platform", platform);
    printf("    %-18s %s\n", "type", type_name(type));
    printf("    %-18s %u\n", "compute units", units);
    print_bytes("local memory", device_ulong(device, CL_DEVICE_LOCAL_MEM_SIZE));
    printf("    %-18s %zu\n", "max work-group", group);
    print_bytes("max allocation", device_ulong(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE));
    print_bytes("global memory", device_ulong(device, CL_DEVICE_GLOBAL_MEM_SIZE));
    printf("    %-18s %s\n", "fp16 arithmetic",
           extensions != NULL && has_extension(extensions, "cl_khr_fp16") ? "yes" : "no");
    printf("    %-18s %s\n", "driver", driver != NULL ? driver : "?");
    printf("    %-18s %s\n", "OpenCL", version != NULL ? version : "?");

    free(name);
    free(extensions);
    free(driver);
    free(version);
}

/* Prints the platform's devices, numbering on from *index. */
static void print_platform(cl_platform_id platform, int *index)
{
    cl_device_id devices[MAX_DEVICES];
    cl_uint count = 0;
    char *name = platform_string(platform, CL_PLATFORM_NAME);

    if (clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, MAX_DEVICES, devices, &count) !=
        CL_SUCCESS)
        count = 0;
    if (count > MAX_DEVICES)
        count = MAX_DEVICES;

    for (cl_uint i = 0; i < count; i++) {
        print_device(*index, devices[i], name != NULL ? name : "?");
        (*index)++;
    }
    free(name);
}

int cli_devices(int argc, char **argv)
{
    cl_platform_id platforms[MAX_PLATFORMS];
    cl_uint count = 0;
    int help = 0;
    int index = 0;
    const cli_option options[] = {{"--help", "-h", NULL, &help}};
    int rc = cli_parse("devices", argc, argv, options, 1);

    if (rc != 0)
        return rc;
    if (help) {
        cli_print_usage();
        return 0;
    }

    if (clGetPlatformIDs(MAX_PLATFORMS, platforms, &count) != CL_SUCCESS || count == 0)
        return cli_error("no OpenCL platform found (is an ICD such as PoCL installed?)");
    if (count > MAX_PLATFORMS)
        count = MAX_PLATFORMS;

    for (cl_uint i = 0; i < count; i++)
        print_platform(platforms[i], &index);
    if (index == 0)
        return cli_error("no OpenCL device found");
    return 0;
}
