/*
 * Fuzzes the .npy reader: the header parser on the raw input, then the whole
 * reader on the input as a file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"

/* A successful read must describe exactly the data it returns. */
static void check_array(const npy_array *a, size_t input_size)
{
    size_t count = 1;

    for (int i = 0; i < a->rank; i++)
        count *= a->shape[i];
    if (a->rank < 0 || a->rank > NPY_MAX_RANK || count != a->count ||
        a->bytes != count * npy_dtype_size(a->dtype) || a->bytes > input_size)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[NPY_ERROR_SIZE];
    npy_array a;
    FILE *f;

    if (npy_parse_header((const char *)data, size, &a, err, sizeof(err)) == 0 &&
        a.data != NULL)
        abort();

    /* fmemopen refuses an empty buffer. */
    f = size ? fmemopen((void *)data, size, "rb") : NULL;
    if (f == NULL)
        return 0;
    if (npy_read_stream(f, &a, err, sizeof(err)) == 0) {
        if (a.data == NULL)
            abort();
        check_array(&a, size);
        npy_free(&a);
    } else if (err[0] == '\0' || memchr(err, '\n', strlen(err)) != NULL) {
        abort();
    }
    fclose(f);
    return 0;
}
