/*
 * Fuzzes the program cache's file reader: each input is written to one
 * temporary file and read back with the key the seed corpus was made for.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define KEY "clattn fuzz\noptions -D X=1\n"

static char path[64];
static int fd = -1;

static void remove_file(void)
{
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *bin;
    size_t bin_size = 0;

    /* A file in memory, where there is one, keeps the target fast. */
    if (fd < 0) {
        snprintf(path, sizeof(path), "%s/clattn-fuzz-cache-XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        fd = mkstemp(path);
        if (fd < 0)
            abort();
        atexit(remove_file);
    }
    if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();

    bin = clattn__cache_read_file(path, KEY, &bin_size);
    if (bin && (bin_size == 0 || bin_size > size))
        abort();
    free(bin);
    return 0;
}
