/*
 * Fuzzes the tuning database's line parser with the lines of the input, cut
 * as fgets cuts them into the reader's 2048-byte buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define LINE_BYTES 2048

static void parse(const uint8_t *data, size_t n)
{
    char line[LINE_BYTES];
    clattn_tuning t;

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
