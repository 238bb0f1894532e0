/*
 * What the commands of the clattn tool share: option parsing, messages and
 * exit statuses.
 */
#ifndef CLATTN_CLI_H
#define CLATTN_CLI_H

#include <stddef.h>

#include "clattn.h"

/* Exit statuses: 1 for failures, 2 for a command line that makes no sense. */
#define CLI_FAILED 1
#define CLI_USAGE 2

typedef struct cli_option {
    const char *name;   /* "--variant" */
    const char *alias;  /* "-q", or NULL */
    const char **value; /* receives the value; NULL for a flag */
    int *flag;          /* set to 1 when a flag is given */
} cli_option;

/*
 * Parses argv[0..argc) against options; values come as "--name VALUE" or
 * "--name=VALUE", and a later repeat wins. Returns 0, or CLI_USAGE after
 * printing why.
 */
int cli_parse(const char *command, int argc, char **argv, const cli_option *options,
              size_t count);

/* Prints "clattn: COMMAND: ..." with a pointer to --help; returns CLI_USAGE. */
int cli_usage_error(const char *command, const char *format, ...);

/* Prints "clattn: ..." on one line; returns CLI_FAILED. */
int cli_error(const char *format, ...);

/* Prints a library failure: the status name and the context's detail. */
int cli_library_error(clattn_status status, const clattn_context *ctx);

/* Value parsers: each returns 0, or CLI_USAGE after printing why. */
int cli_int(const char *command, const char *name, const char *text, int min, int max,
            int *out);
int cli_float(const char *command, const char *name, const char *text, float *out);
int cli_window(const char *command, const char *text, int *left, int *right);
int cli_variant(const char *command, const char *text, clattn_variant *out);
int cli_feature_map(const char *command, const char *text, clattn_feature_map *out);
int cli_kernel_shape(const char *command, const char *text, clattn_kernel_shape *out);
int cli_layout(const char *command, const char *text, clattn_layout *out);

const char *cli_kernel_shape_name(clattn_kernel_shape shape);
const char *cli_feature_map_name(clattn_feature_map map);

/* Sorts values and returns their median (0 for none). */
double cli_median(double *values, int count);

/* Creates a context on the device SPEC (NULL: the library's default). */
int cli_open_context(const char *device, clattn_context **ctx);

/* Prints the usage text on stdout. */
void cli_print_usage(void);

int cli_devices(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_tune(int argc, char **argv);

#endif /* CLATTN_CLI_H */
