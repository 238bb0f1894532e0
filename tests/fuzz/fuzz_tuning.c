/*
 * Fuzzes the tuning database's line parsers, of tiles and of the naive
 * variant's CLBlast parameters, with the lines of the input, cut as fgets
 * cuts them into the reader's 2048-byte buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define LINE_BYTES 2048

/* A parsed set has every parameter of each of its kernels, in range. */
static void check_gemm(const clattn_gemm_params *p)
{
    if (p->count < 1 || p->count > CLATTN_GEMM_KERNELS)
        abort();
    for (int i = 0; i < p->count; i++) {
        const clattn_gemm_kernel *k = &p->kernels[i];

        if (!k->name || !k->names || k->count < 1 || k->count > CLATTN_GEMM_PARAMS)
            abort();
        for (int j = 0; j < k->count; j++) {
            if (k->values[j] > 1048576)
                abort();
        }
    }
}

static void parse(const uint8_t *data, size_t n)
{
    char line[LINE_BYTES];
    clattn_gemm_params p;
    clattn_tuning t;

    memcpy(line, data, n);
    line[n] = '\0';
    if (clattn__gemm_parse_line(line, &p))
        check_gemm(&p);
    memcpy(line, data, n);
    line[n] = '\0';
    if (!clattn__tuning_parse_line(line, &t))
        return;
    if ((t.kernel_shape != CLATTN_SHAPE_CPU && t.kernel_shape != CLATTN_SHAPE_GPU) ||
        t.block_q < 1 || t.block_q > 4096 || t.block_k < 1 || t.block_k > 4096)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;

    while (pos < size) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t n = nl ? (size_t)(nl - (data + pos)) + 1 : size - pos;

        if (n > LINE_BYTES - 1)
            n = LINE_BYTES - 1;
        parse(data + pos, n);
        pos += n;
    }
    return 0;
}
