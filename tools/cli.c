#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints one line whatever the paths and arguments in it hold. */
static void report(const char *command, const char *suffix, const char *format,
                   va_list args)
{
    char text[1024];

    vsnprintf(text, sizeof text, format, args);
    for (char *p = text; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20)
            *p = '?';
    }
    fprintf(stderr, "clattn: %s%s%s%s\n", command != NULL ? command : "",
            command != NULL ? ": " : "", text, suffix);
}

int cli_usage_error(const char *command, const char *format, ...)
{
    va_list args;

    va_start(args, format);
    report(command, " (see 'clattn --help')", format, args);
    va_end(args);
    return CLI_USAGE;
}

int cli_error(const char *format, ...)
{
    va_list args;

    va_start(args, format);
    report(NULL, "", format, args);
    va_end(args);
    return CLI_FAILED;
}

int cli_library_error(clattn_status status, const clattn_context *ctx)
{
    const char *detail = clattn_context_message(ctx);

    if (detail == NULL || detail[0] == '\0')
        detail = clattn_status_text(status);
    fprintf(stderr, "clattn: %s: %s\n", clattn_status_name(status), detail);
    return CLI_FAILED;
}

static const cli_option *find_option(const char *arg, size_t len,
                                     const cli_option *options, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const char *alias = options[i].alias;

        if (strlen(options[i].name) == len && strncmp(arg, options[i].name, len) == 0)
            return &options[i];
        if (alias != NULL && strlen(alias) == len && strncmp(arg, alias, len) == 0)
            return &options[i];
    }
    return NULL;
}

int cli_parse(const char *command, int argc, char **argv, const cli_option *options,
              size_t count)
{
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        const cli_option *option;

        if (arg[0] != '-')
            return cli_usage_error(command, "unexpected argument '%s'", arg);
        option = find_option(arg, len, options, count);
        if (option == NULL)
            return cli_usage_error(command, "unknown option '%.*s'", (int)len, arg);

        if (option->value == NULL) {
            if (eq != NULL)
                return cli_usage_error(command, "%s takes no value", option->name);
            *option->flag = 1;
        } else if (eq != NULL) {
            *option->value = eq + 1;
        } else if (i + 1 < argc) {
            *option->value = argv[++i];
        } else {
            return cli_usage_error(command, "%s needs a value", option->name);
        }
    }
    return 0;
}

static int parse_long(const char *text, long *out)
{
    char *end;

    errno = 0;
    *out = strtol(text, &end, 10);
    return errno == 0 && end != text && *end == '\0' ? 0 : -1;
}

int cli_int(const char *command, const char *name, const char *text, int min, int max,
            int *out)
{
    long v;

    if (parse_long(text, &v) != 0 || v < min || v > max)
        return cli_usage_error(command, "%s: expected an integer from %d to %d, got '%s'",
                               name, min, max, text);
    *out = (int)v;
    return 0;
}

int cli_float(const char *command, const char *name, const char *text, float *out)
{
    char *end;
    float v;

    errno = 0;
    v = strtof(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(v))
        return cli_usage_error(command, "%s: expected a finite number, got '%s'", name,
                               text);
    *out = v;
    return 0;
}

int cli_window(const char *command, const char *text, int *left, int *right)
{
    const char *comma = strchr(text, ',');
    char first[32];
    long l, r;
    size_t n = comma != NULL ? (size_t)(comma - text) : 0;

    if (comma == NULL || n >= sizeof first)
        goto bad;
    memcpy(first, text, n);
    first[n] = '\0';

    if (parse_long(first, &l) != 0 || parse_long(comma + 1, &r) != 0 || l < -1 ||
        r < -1 || l > INT_MAX || r > INT_MAX)
        goto bad;
    *left = (int)l;
    *right = (int)r;
    return 0;

bad:
    return cli_usage_error(
        command, "--window: expected LEFT,RIGHT with integers >= -1, got '%s'", text);
}

int cli_variant(const char *command, const char *text, clattn_variant *out)
{
    if (strcmp(text, "auto") == 0)
        *out = CLATTN_VARIANT_AUTO;
    else if (strcmp(text, "naive") == 0)
        *out = CLATTN_VARIANT_NAIVE;
    else if (strcmp(text, "tiled") == 0)
        *out = CLATTN_VARIANT_TILED;
    else if (strcmp(text, "window") == 0)
        *out = CLATTN_VARIANT_WINDOW;
    else if (strcmp(text, "linear") == 0)
        *out = CLATTN_VARIANT_LINEAR;
    else
        return cli_usage_error(
            command, "--variant: expected auto, naive, tiled, window or linear, got '%s'",
            text);
    return 0;
}

int cli_feature_map(const char *command, const char *text, clattn_feature_map *out)
{
    if (strcmp(text, "elu1") == 0)
        *out = CLATTN_FEATURE_ELU1;
    else if (strcmp(text, "relu") == 0)
        *out = CLATTN_FEATURE_RELU;
    else
        return cli_usage_error(command, "--feature-map: expected elu1 or relu, got '%s'",
                               text);
    return 0;
}

int cli_kernel_shape(const char *command, const char *text, clattn_kernel_shape *out)
{
    if (strcmp(text, "auto") == 0)
        *out = CLATTN_SHAPE_AUTO;
    else if (strcmp(text, "cpu") == 0)
        *out = CLATTN_SHAPE_CPU;
    else if (strcmp(text, "gpu") == 0)
        *out = CLATTN_SHAPE_GPU;
    else
        return cli_usage_error(command, "--shape: expected auto, cpu or gpu, got '%s'",
                               text);
    return 0;
}

int cli_layout(const char *command, const char *text, clattn_layout *out)
{
    if (strcmp(text, "bhsd") == 0)
        *out = CLATTN_LAYOUT_BHSD;
    else if (strcmp(text, "bshd") == 0)
        *out = CLATTN_LAYOUT_BSHD;
    else
        return cli_usage_error(command, "--layout: expected bhsd or bshd, got '%s'",
                               text);
    return 0;
}

const char *cli_feature_map_name(clattn_feature_map map)
{
    return map == CLATTN_FEATURE_RELU ? "relu" : "elu1";
}

const char *cli_kernel_shape_name(clattn_kernel_shape shape)
{
    switch (shape) {
    case CLATTN_SHAPE_CPU:
        return "cpu";
    case CLATTN_SHAPE_GPU:
        return "gpu";
    default:
        return "auto";
    }
}

int cli_open_context(const char *device, clattn_context **ctx)
{
    clattn_context_options options;
    clattn_status status;

    clattn_context_options_init(&options);
    options.device = device;

    status = clattn_context_create(ctx, &options);
    if (status != CLATTN_OK)
        return cli_library_error(status, NULL);
    return 0;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

double cli_median(double *values, int count)
{
    if (count <= 0)
        return 0.0;
    qsort(values, (size_t)count, sizeof values[0], compare_doubles);
    if (count % 2 == 1)
        return values[count / 2];
    return 0.5 * (values[count / 2 - 1] + values[count / 2]);
}
