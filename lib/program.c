/*
 * Program building and caching.
 *
 * A program is the prelude followed by one kernel family, built with the
 * plan's options. Built programs are kept per context in memory and, as
 * binaries, on disk. A disk entry is a file named by a hash of its key; it
 * holds the whole key and a checksum of the binary, and anything that does not
 * match exactly is ignored and replaced.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "program.h"

#define DISK_MAGIC "clattn-binary-1\n"
#define MAX_BINARY_BYTES ((size_t)256 << 20)

struct clattn_cached_program {
    clattn_cached_program *next;
    char *key; /* family, a newline, options */
    cl_program program;
};

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t hash_str(const char *s)
{
    return fnv1a(0xcbf29ce484222325ull, s, strlen(s));
}

static const char *find_source(const char *name)
{
    for (const clattn_source *s = clattn_sources; s->name; s++)
        if (!strcmp(s->name, name))
            return s->text;
    return NULL;
}

static char *join3(const char *a, const char *sep, const char *b)
{
    size_t n = strlen(a) + strlen(sep) + strlen(b) + 1;
    char *s = malloc(n);

    if (s)
        snprintf(s, n, "%s%s%s", a, sep, b);
    return s;
}

static cl_program memory_find(clattn_context *ctx, const char *key)
{
    for (clattn_cached_program *c = ctx->programs; c; c = c->next)
        if (!strcmp(c->key, key))
            return c->program;
    return NULL;
}

void clattn__programs_release(clattn_context *ctx)
{
    clattn_cached_program *c = ctx->programs;

    while (c) {
        clattn_cached_program *next = c->next;

        clReleaseProgram(c->program);
        free(c->key);
        free(c);
        c = next;
    }
    ctx->programs = NULL;
}

/* The disk key names everything that changes the binary. */
static char *disk_key(const clattn_context *ctx, const char *source, const char *options)
{
    const clattn_device_info *d = &ctx->info;
    size_t n = strlen(options) + 2048;
    char *key = malloc(n);

    if (key)
        snprintf(key, n,
                 "clattn %s\nplatform %s %s\ndevice %s %s\ndriver %s\n"
                 "source %016llx\noptions %s\n",
                 clattn_version(), d->platform_name, d->platform_version, d->name,
                 d->version, d->driver, (unsigned long long)hash_str(source), options);
    return key;
}

static void disk_path(const clattn_context *ctx, const char *key, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%016llx.bin", ctx->cache_dir,
             (unsigned long long)hash_str(key));
}

static int read_exact(FILE *f, void *buf, size_t n)
{
    return fread(buf, 1, n, f) == n;
}

/* Whether exactly n bytes follow the position: a length field is checked
 * against the file before anything is allocated for it. */
static int left_exactly(FILE *f, uint64_t n)
{
    struct stat st;
    long pos = ftell(f);

    return pos >= 0 && fstat(fileno(f), &st) == 0 && st.st_size >= pos &&
           (uint64_t)(st.st_size - pos) == n;
}

/*
 * Reads a disk entry: magic, key length, key, binary length, checksum,
 * binary, and nothing after. Returns the binary (caller frees) or NULL.
 */
static unsigned char *disk_read(const char *path, const char *key, size_t *size)
{
    char magic[sizeof(DISK_MAGIC) - 1];
    uint64_t key_len, bin_len, sum;
    unsigned char *bin = NULL;
    char *stored = NULL;
    FILE *f = fopen(path, "rb");
    int ok = 0;

    if (!f)
        return NULL;
    if (!read_exact(f, magic, sizeof(magic)) ||
        memcmp(magic, DISK_MAGIC, sizeof(magic)) ||
        !read_exact(f, &key_len, sizeof(key_len)) || key_len != strlen(key))
        goto done;
    stored = malloc(key_len);
    if (!stored || !read_exact(f, stored, key_len) || memcmp(stored, key, key_len))
        goto done;
    if (!read_exact(f, &bin_len, sizeof(bin_len)) || bin_len == 0 ||
        bin_len > MAX_BINARY_BYTES || !read_exact(f, &sum, sizeof(sum)) ||
        !left_exactly(f, bin_len))
        goto done;
    bin = malloc(bin_len);
    if (!bin || !read_exact(f, bin, bin_len) || fgetc(f) != EOF)
        goto done;
    ok = fnv1a(0xcbf29ce484222325ull, bin, bin_len) == sum;
    *size = bin_len;
done:
    fclose(f);
    free(stored);
    if (!ok) {
        free(bin);
        return NULL;
    }
    return bin;
}

uint64_t clattn__source_hash(const char *family)
{
    const char *prelude = find_source("prelude"), *body = find_source(family);
    uint64_t h = hash_str(prelude ? prelude : "");

    h = fnv1a(h, "\n", 1);
    return fnv1a(h, body ? body : "", body ? strlen(body) : 0);
}

static int mkdir_p(const char *dir)
{
    char buf[4096];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, dir, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) && errno != EEXIST ? -1 : 0;
}

int clattn__mkdir_for(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;

    if (n == 0)
        return 0;
    if (n >= sizeof(dir))
        return -1;
    memcpy(dir, path, n);
    dir[n] = '\0';
    return mkdir_p(dir);
}

/* Writes to a temporary file and renames it, so readers never see half. */
static void disk_write(clattn_context *ctx, const char *path, const char *key,
                       const unsigned char *bin, size_t size)
{
    uint64_t key_len = strlen(key), bin_len = size;
    uint64_t sum = fnv1a(0xcbf29ce484222325ull, bin, size);
    char tmp[4300];
    FILE *f;
    int fd, ok;

    if (mkdir_p(ctx->cache_dir))
        goto fail;
    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0)
        goto fail;
    f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        goto fail;
    }
    ok = fwrite(DISK_MAGIC, 1, sizeof(DISK_MAGIC) - 1, f) == sizeof(DISK_MAGIC) - 1 &&
         fwrite(&key_len, sizeof(key_len), 1, f) == 1 &&
         fwrite(key, 1, key_len, f) == key_len &&
         fwrite(&bin_len, sizeof(bin_len), 1, f) == 1 &&
         fwrite(&sum, sizeof(sum), 1, f) == 1 && fwrite(bin, 1, size, f) == size;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        goto fail;
    }
    return;
fail:
    clattn__log(ctx, CLATTN_LOG_WARNING, "could not write the program cache file %s: %s",
                path, strerror(errno));
}

static unsigned char *program_binary(cl_program program, cl_device_id device,
                                     size_t *size)
{
    unsigned char *bin;

    (void)device;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof(*size), size, NULL) !=
            CL_SUCCESS ||
        *size == 0 || *size > MAX_BINARY_BYTES)
        return NULL;
    bin = malloc(*size);
    if (bin && clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof(bin), &bin, NULL) !=
                   CL_SUCCESS) {
        free(bin);
        bin = NULL;
    }
    return bin;
}

static char *build_log(clattn_context *ctx, cl_program program)
{
    size_t size = 0;
    char *log;

    clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size);
    log = malloc(size + 1);
    if (!log)
        return NULL;
    if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, size, log,
                              NULL) != CL_SUCCESS)
        size = 0;
    log[size] = '\0';
    return log;
}

static cl_program from_binary(clattn_context *ctx, const unsigned char *bin, size_t size,
                              const char *options)
{
    cl_int err, bin_status;
    cl_program program = clCreateProgramWithBinary(ctx->cl_ctx, 1, &ctx->device, &size,
                                                   &bin, &bin_status, &err);

    if (err != CL_SUCCESS || bin_status != CL_SUCCESS) {
        if (program)
            clReleaseProgram(program);
        return NULL;
    }
    err = clBuildProgram(program, 1, &ctx->device, options, NULL, NULL);
    if (clattn__fault_call(ctx, CLATTN_FAULT_BUILD, err, NULL) != CL_SUCCESS) {
        clReleaseProgram(program);
        return NULL;
    }
    return program;
}

static clattn_status from_source(clattn_context *ctx, const char *family,
                                 const char *source, const char *options, cl_program *out)
{
    cl_int err;
    cl_program program = clCreateProgramWithSource(ctx->cl_ctx, 1, &source, NULL, &err);
    char *log;

    if (err != CL_SUCCESS)
        return clattn__cl_fail(ctx, err, "clCreateProgramWithSource");
    err = clBuildProgram(program, 1, &ctx->device, options, NULL, NULL);
    err = clattn__fault_call(ctx, CLATTN_FAULT_BUILD, err, NULL);
    if (err == CL_SUCCESS) {
        *out = program;
        return CLATTN_OK;
    }
    log = build_log(ctx, program);
    clReleaseProgram(program);
    clattn__log(ctx, CLATTN_LOG_ERROR, "build of %s failed (%s):\n%s", family, options,
                log ? log : "");
    clattn__fail(ctx, CLATTN_BUILD_FAILED,
                 "building kernel family %s failed: %s (%d)\n"
                 "options: %s\nbuild log:\n%s",
                 family, clattn__cl_error_name(err), (int)err, options,
                 log ? log : "(none)");
    free(log);
    return CLATTN_BUILD_FAILED;
}

/* Tries the disk, else builds from source and stores the binary. */
static clattn_status load_or_build(clattn_context *ctx, const char *family,
                                   const char *source, const char *options,
                                   cl_program *out)
{
    char path[4200];
    char *key = NULL;
    unsigned char *bin;
    size_t size = 0;
    clattn_status status;

    if (ctx->cache_dir) {
        key = disk_key(ctx, source, options);
        if (!key)
            return clattn__fail(ctx, CLATTN_HOST_MEMORY, "out of host memory");
        disk_path(ctx, key, path, sizeof(path));
        bin = disk_read(path, key, &size);
        *out = bin ? from_binary(ctx, bin, size, options) : NULL;
        free(bin);
        if (*out) {
            ctx->stats.programs_from_disk++;
            free(key);
            return CLATTN_OK;
        }
        if (access(path, F_OK) == 0) {
            ctx->stats.disk_entries_rejected++;
            clattn__log(ctx, CLATTN_LOG_INFO, "ignoring unusable cache file %s", path);
        }
    }

    status = from_source(ctx, family, source, options, out);
    if (status == CLATTN_OK) {
        ctx->stats.programs_compiled++;
        bin = key ? program_binary(*out, ctx->device, &size) : NULL;
        if (bin)
            disk_write(ctx, path, key, bin, size);
        free(bin);
    }
    free(key);
    return status;
}

clattn_status clattn__program_get(clattn_context *ctx, const char *family,
                                  const char *options, cl_program *program)
{
    const char *prelude = find_source("prelude");
    const char *body = find_source(family);
    clattn_cached_program *entry;
    char *key, *source;
    clattn_status status;

    if (!prelude || !body)
        return clattn__fail(ctx, CLATTN_UNSUPPORTED, "no kernel family named %s", family);
    key = join3(family, "\n", options);
    source = join3(prelude, "\n", body);
    if (!key || !source) {
        free(key);
        free(source);
        return clattn__fail(ctx, CLATTN_HOST_MEMORY, "out of host memory");
    }

    /* The lock is held across the build so two threads never build the same
     * program twice; builds are rare and the cache makes them rarer. */
    pthread_mutex_lock(&ctx->lock);
    *program = memory_find(ctx, key);
    if (*program) {
        ctx->stats.programs_from_memory++;
        clRetainProgram(*program);
        status = CLATTN_OK;
        goto done;
    }
    status = load_or_build(ctx, family, source, options, program);
    if (status)
        goto done;
    entry = malloc(sizeof(*entry));
    if (!entry) {
        clReleaseProgram(*program);
        status = clattn__fail(ctx, CLATTN_HOST_MEMORY, "out of host memory");
        goto done;
    }
    entry->key = key;
    entry->program = *program;
    entry->next = ctx->programs;
    ctx->programs = entry;
    key = NULL;
    clRetainProgram(*program);
done:
    pthread_mutex_unlock(&ctx->lock);
    free(key);
    free(source);
    return status;
}

unsigned char *clattn__cache_read_file(const char *path, const char *key, size_t *size)
{
    return disk_read(path, key, size);
}
