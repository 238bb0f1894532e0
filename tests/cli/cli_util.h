/*
 * Helpers for the tests of the clattn command: running it, scratch files,
 * and checks of what it printed.
 */
#ifndef CLATTN_CLI_UTIL_H
#define CLATTN_CLI_UTIL_H

#include <stddef.h>

#include "npy.h"

/* Room for any scratch path, and for one followed by a short suffix. */
#define CLI_PATH_MAX 800

typedef struct cli_result {
    int status; /* exit status, or 128 + signal */
    char *out;  /* everything printed on stdout */
    char *err;  /* everything printed on stderr */
} cli_result;

/* Makes the scratch folder; returns 0 or -1. For cmocka group setup. */
int cli_setup(void **state);

/* Removes the scratch folder and what is in it. For cmocka group teardown. */
int cli_teardown(void **state);

/* The path of name inside the scratch folder, valid for the next 15 calls. */
const char *cli_path(const char *name);

/*
 * Runs $CLATTN_EXE with the NULL-terminated arguments, stdin from /dev/null,
 * and waits for it. Fails the test when it cannot be started.
 */
cli_result cli_run(const char *const *args);

void cli_result_free(cli_result *r);

/* Writes bytes to a scratch file and returns its path. */
const char *cli_write_raw(const char *name, const void *bytes, size_t len);

/*
 * Writes a version 1.0 .npy file with the given header dictionary text and
 * data bytes, padding the header as NumPy does. Returns the path.
 */
const char *cli_write_npy_text(const char *name, const char *dict, const void *data,
                               size_t len);

/* Writes an array of zeros of the dtype and rank-4 shape. Returns the path. */
const char *cli_write_zeros(const char *name, npy_dtype dtype, size_t b, size_t h,
                            size_t l, size_t d);

/* Asserts a failed run: the status, and one line on stderr that names what. */
void cli_assert_error(const cli_result *r, int status, const char *what);

#endif /* CLATTN_CLI_UTIL_H */
