/*
 * The tuning database and the built-in table of starting points.
 *
 * The database is a text file of tab-separated lines:
 *   platform device driver source variant dtype head_dim v_head_dim
 *   shape block_q block_k gflops
 * where source is the hash of the kernel source the entry was measured with.
 * Lines starting with '#' are comments. A line that does not parse, or whose
 * platform, device, driver or source differ from now, is ignored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define FIELDS 12
#define LINE_MAX_BYTES 2048

typedef struct entry {
    char platform[256], device[256], driver[256];
    unsigned long long source;
    char variant[16], dtype[8];
    int head_dim, v_head_dim;
    clattn_tuning tuning;
    double gflops;
} entry;

/*
 * Starting points for devices nobody has tuned here, most specific first:
 * a vendor (and optionally a device name) substring and a device type.
 * `clattn tune --export` prints rows of this form for a tuned device. The
 * GPU rows are the GPU shape's general defaults; no GPU has measured them.
 */
static const struct builtin {
    const char *vendor, *device;
    cl_device_type type;
    clattn_tuning tuning;
} builtins[] = {
    {"", "", CL_DEVICE_TYPE_CPU, {CLATTN_SHAPE_CPU, 16, 32}},
    {"NVIDIA", "", CL_DEVICE_TYPE_GPU, {CLATTN_SHAPE_GPU, 64, 32}},
    {"Advanced Micro Devices", "", CL_DEVICE_TYPE_GPU, {CLATTN_SHAPE_GPU, 64, 32}},
    {"Intel", "", CL_DEVICE_TYPE_GPU, {CLATTN_SHAPE_GPU, 32, 16}},
    {"Apple", "", CL_DEVICE_TYPE_GPU, {CLATTN_SHAPE_GPU, 32, 16}},
};

static const char *shape_name(clattn_kernel_shape shape)
{
    return shape == CLATTN_SHAPE_CPU ? "cpu" : "gpu";
}

/* The kernel family an entry was measured with, whose source it is keyed by. */
static const char *family_of(const char *variant, clattn_kernel_shape shape)
{
    if (!strcmp(variant, "linear"))
        return "linear";
    return shape == CLATTN_SHAPE_CPU ? "tiled_cpu" : "tiled_gpu";
}

const char *clattn_tuning_file(const clattn_context *ctx)
{
    return ctx && ctx->tuning_file ? ctx->tuning_file : "";
}

static int copy_field(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);

    if (n == 0 || n >= size)
        return 0;
    memcpy(dst, src, n + 1);
    return 1;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return 0;
    *out = (int)v;
    return 1;
}

/* Splits a line at tabs and checks every field; 1 when it is an entry. */
static int parse_line(char *line, entry *e)
{
    char *f[FIELDS], *save = NULL, *end;
    int n = 0, shape;

    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '#' || line[0] == '\0')
        return 0;
    for (char *t = strtok_r(line, "\t", &save); t; t = strtok_r(NULL, "\t", &save)) {
        if (n == FIELDS)
            return 0;
        f[n++] = t;
    }
    if (n != FIELDS)
        return 0;
    memset(e, 0, sizeof(*e));
    errno = 0;
    e->source = strtoull(f[3], &end, 16);
    if (errno || *end || strlen(f[3]) != 16)
        return 0;
    shape = !strcmp(f[8], "cpu")   ? CLATTN_SHAPE_CPU
            : !strcmp(f[8], "gpu") ? CLATTN_SHAPE_GPU
                                   : 0;
    e->tuning.kernel_shape = (clattn_kernel_shape)shape;
    e->gflops = strtod(f[11], &end);
    return shape && !*end && copy_field(e->platform, sizeof(e->platform), f[0]) &&
           copy_field(e->device, sizeof(e->device), f[1]) &&
           copy_field(e->driver, sizeof(e->driver), f[2]) &&
           copy_field(e->variant, sizeof(e->variant), f[4]) &&
           copy_field(e->dtype, sizeof(e->dtype), f[5]) &&
           parse_int(f[6], 1, CLATTN_MAX_HEAD_DIM, &e->head_dim) &&
           parse_int(f[7], 1, CLATTN_MAX_HEAD_DIM, &e->v_head_dim) &&
           parse_int(f[9], 1, 4096, &e->tuning.block_q) &&
           parse_int(f[10], 1, 4096, &e->tuning.block_k);
}

static void format_line(const entry *e, char *buf, size_t size)
{
    snprintf(buf, size, "%s\t%s\t%s\t%016llx\t%s\t%s\t%d\t%d\t%s\t%d\t%d\t%.1f\n",
             e->platform, e->device, e->driver, e->source, e->variant, e->dtype,
             e->head_dim, e->v_head_dim, shape_name(e->tuning.kernel_shape),
             e->tuning.block_q, e->tuning.block_k, e->gflops);
}

/* The entry a descriptor would have on this context's device, without its
 * result fields. */
static clattn_status key_of(clattn_context *ctx, const clattn_desc *d, entry *e)
{
    if (d->variant == CLATTN_VARIANT_NAIVE)
        return clattn__fail(ctx, CLATTN_UNSUPPORTED,
                            "desc.variant: the naive variant has no tunable tiles");
    memset(e, 0, sizeof(*e));
    snprintf(e->platform, sizeof(e->platform), "%s", ctx->info.platform_name);
    snprintf(e->device, sizeof(e->device), "%s", ctx->info.name);
    snprintf(e->driver, sizeof(e->driver), "%s", ctx->info.driver);
    snprintf(e->variant, sizeof(e->variant),
             d->variant == CLATTN_VARIANT_LINEAR ? "linear" : "tiled");
    snprintf(e->dtype, sizeof(e->dtype), d->dtype == CLATTN_F16 ? "f16" : "f32");
    e->head_dim = d->head_dim;
    e->v_head_dim = d->v_head_dim ? d->v_head_dim : d->head_dim;
    return CLATTN_OK;
}

static int same_key(const entry *a, const entry *b)
{
    return !strcmp(a->platform, b->platform) && !strcmp(a->device, b->device) &&
           !strcmp(a->driver, b->driver) && !strcmp(a->variant, b->variant) &&
           !strcmp(a->dtype, b->dtype) && a->head_dim == b->head_dim &&
           a->v_head_dim == b->v_head_dim;
}

/* A stored entry is trusted only for the kernel source it was measured on. */
static int fresh(const entry *e)
{
    return e->source ==
           clattn__source_hash(family_of(e->variant, e->tuning.kernel_shape));
}

/*
 * Reads the next whole line into buf. A line too long for buf is skipped to
 * its end and comes back empty, so no piece of it is ever taken for an entry.
 * Returns 0 at the end of the file.
 */
static int next_line(FILE *f, char *buf, size_t size)
{
    size_t n;
    int c;

    if (!fgets(buf, (int)size, f))
        return 0;
    n = strlen(buf);
    if (n + 1 < size || buf[n - 1] == '\n' || feof(f))
        return 1;
    while ((c = fgetc(f)) != EOF && c != '\n')
        ;
    buf[0] = '\0';
    return 1;
}

static int database_find(clattn_context *ctx, const entry *key, clattn_tuning *out)
{
    char line[LINE_MAX_BYTES];
    FILE *f;
    int found = 0;
    entry e;

    if (!ctx->tuning_file || !(f = fopen(ctx->tuning_file, "r")))
        return 0;
    while (next_line(f, line, sizeof(line))) {
        if (!parse_line(line, &e) || !same_key(&e, key))
            continue;
        if (!fresh(&e)) {
            clattn__log(ctx, CLATTN_LOG_INFO, "ignoring a stale tuning entry in %s",
                        ctx->tuning_file);
            continue;
        }
        *out = e.tuning;
        found = 1;
    }
    fclose(f);
    return found;
}

static int builtin_find(const clattn_device_info *info, clattn_tuning *out)
{
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
        const struct builtin *b = &builtins[i];

        if ((info->type & b->type) && strstr(info->vendor, b->vendor) &&
            strstr(info->name, b->device)) {
            *out = b->tuning;
            return 1;
        }
    }
    return 0;
}

clattn_status clattn_tuning_lookup(clattn_context *ctx, const clattn_desc *desc,
                                   clattn_tuning *tuning, clattn_tuning_origin *origin)
{
    clattn_tuning_origin from = CLATTN_TUNING_DEFAULT;
    clattn_status status;
    entry key;

    if (!ctx)
        return CLATTN_INVALID_ARGUMENT;
    if (!desc || !tuning)
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT, "%s is NULL",
                            !desc ? "desc" : "tuning");
    if ((status = key_of(ctx, desc, &key)))
        return status;

    const int linear = !strcmp(key.variant, "linear");

    if (database_find(ctx, &key, tuning)) {
        from = CLATTN_TUNING_DATABASE;
    } else if (!linear && builtin_find(&ctx->info, tuning)) {
        from = CLATTN_TUNING_BUILTIN;
    } else {
        /* Linear's tiles: 16 rows per CPU work-item, chunks of 64 keys. */
        tuning->kernel_shape =
            ctx->info.type & CL_DEVICE_TYPE_CPU ? CLATTN_SHAPE_CPU : CLATTN_SHAPE_GPU;
        tuning->block_q = tuning->kernel_shape == CLATTN_SHAPE_CPU ? 16 : linear ? 1 : 64;
        tuning->block_k = linear ? 64 : 32;
    }
    if (origin)
        *origin = from;
    return CLATTN_OK;
}

/* Copies every line of the old file but the one for key, then adds the new
 * entry, through a temporary file and a rename. */
static clattn_status rewrite(clattn_context *ctx, const entry *fresh_entry)
{
    char tmp[4200], line[LINE_MAX_BYTES], copy[LINE_MAX_BYTES];
    FILE *in = fopen(ctx->tuning_file, "r"), *out;
    int fd, ok = 1;
    entry e;

    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", ctx->tuning_file);
    fd = mkstemp(tmp);
    if (fd < 0 || !(out = fdopen(fd, "w"))) {
        if (fd >= 0)
            close(fd);
        if (in)
            fclose(in);
        return clattn__fail(ctx, CLATTN_IO_ERROR, "cannot write %s: %s", ctx->tuning_file,
                            strerror(errno));
    }
    fputs("# clattn tuning database: platform, device, driver, source, variant, dtype,\n"
          "# head_dim, v_head_dim, shape, block_q, block_k, GFLOP/s (tab-separated)\n",
          out);
    while (in && next_line(in, line, sizeof(line))) {
        memcpy(copy, line, sizeof(copy));
        if (parse_line(copy, &e) && !same_key(&e, fresh_entry))
            ok = ok && fputs(line, out) >= 0;
    }
    format_line(fresh_entry, line, sizeof(line));
    ok = ok && fputs(line, out) >= 0;
    if (in)
        fclose(in);
    ok = (fclose(out) == 0) && ok;
    if (!ok || rename(tmp, ctx->tuning_file)) {
        unlink(tmp);
        return clattn__fail(ctx, CLATTN_IO_ERROR, "cannot write %s: %s", ctx->tuning_file,
                            strerror(errno));
    }
    return CLATTN_OK;
}

clattn_status clattn_tuning_save(clattn_context *ctx, const clattn_desc *desc,
                                 const clattn_tuning *tuning, double gflops)
{
    clattn_status status;
    entry e;

    if (!ctx)
        return CLATTN_INVALID_ARGUMENT;
    if (!desc || !tuning)
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT, "%s is NULL",
                            !desc ? "desc" : "tuning");
    if (tuning->kernel_shape != CLATTN_SHAPE_CPU &&
        tuning->kernel_shape != CLATTN_SHAPE_GPU)
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT,
                            "tuning.kernel_shape must be CPU or GPU");
    if (tuning->block_q < 1 || tuning->block_q > 4096 || tuning->block_k < 1 ||
        tuning->block_k > 4096)
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT,
                            "tuning.block_q and block_k must be in [1, 4096]");
    if (!ctx->tuning_file)
        return clattn__fail(ctx, CLATTN_IO_ERROR,
                            "no tuning file: set CLATTN_TUNING_FILE or HOME");
    if ((status = key_of(ctx, desc, &e)))
        return status;
    e.tuning = *tuning;
    e.source = clattn__source_hash(family_of(e.variant, tuning->kernel_shape));
    e.gflops = gflops;
    if (clattn__mkdir_for(ctx->tuning_file))
        return clattn__fail(ctx, CLATTN_IO_ERROR, "cannot create the folder of %s",
                            ctx->tuning_file);
    return rewrite(ctx, &e);
}

/* Whether the tiled kernels accept these tiles on this device. */
static int legal(const clattn_context *ctx, const clattn_desc *d, const clattn_tuning *t)
{
    const int dv = d->v_head_dim ? d->v_head_dim : d->head_dim;
    const size_t per_key = (size_t)(d->head_dim + dv) * sizeof(float);

    if (d->variant == CLATTN_VARIANT_LINEAR)
        return t->block_k % 8 == 0 && t->block_k <= 512 &&
               (t->kernel_shape == CLATTN_SHAPE_GPU ||
                (t->block_q % 8 == 0 && t->block_q <= 32));
    if (t->kernel_shape == CLATTN_SHAPE_CPU)
        return t->block_q % 8 == 0 && t->block_q <= 64 && t->block_k % 4 == 0 &&
               t->block_k <= 256;
    return (size_t)t->block_q <= ctx->info.max_work_group && t->block_k <= 256 &&
           t->block_k * per_key <= ctx->info.local_mem;
}

clattn_status clattn_tuning_space(clattn_context *ctx, const clattn_desc *desc,
                                  clattn_tuning *out, int max, int *count)
{
    static const int cpu_q[] = {8, 16, 24, 32}, cpu_k[] = {8, 16, 32, 64};
    static const int gpu_q[] = {16, 32, 64, 128, 256}, gpu_k[] = {8, 16, 32, 64};
    /* Linear: rows per CPU work-item (the GPU kernel has one row per
     * work-item) and keys per chunk. */
    static const int lin_cpu_q[] = {8, 16, 24, 32}, lin_gpu_q[] = {1};
    static const int lin_k[] = {32, 64, 128, 256};
    const int linear = desc && desc->variant == CLATTN_VARIANT_LINEAR;
    const int cpu_first = ctx && (ctx->info.type & CL_DEVICE_TYPE_CPU);
    clattn_status status;
    entry key;
    int n = 0;

    if (!ctx)
        return CLATTN_INVALID_ARGUMENT;
    if (!desc || !count || (max > 0 && !out))
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT, "%s is NULL",
                            !desc    ? "desc"
                            : !count ? "count"
                                     : "out");
    if ((status = key_of(ctx, desc, &key)))
        return status;

    for (int pass = 0; pass < 2; pass++) {
        const int cpu = pass == 0 ? cpu_first : !cpu_first;
        const int *qs = linear ? (cpu ? lin_cpu_q : lin_gpu_q) : cpu ? cpu_q : gpu_q;
        const int *ks = linear ? lin_k : cpu ? cpu_k : gpu_k;
        const int nq = linear ? (cpu ? 4 : 1) : cpu ? 4 : 5;

        for (int i = 0; i < nq; i++) {
            for (int j = 0; j < 4; j++) {
                clattn_tuning t = {cpu ? CLATTN_SHAPE_CPU : CLATTN_SHAPE_GPU, qs[i],
                                   ks[j]};

                if (!legal(ctx, desc, &t))
                    continue;
                if (n < max)
                    out[n] = t;
                n++;
            }
        }
    }
    *count = n;
    return CLATTN_OK;
}

int clattn__tuning_parse_line(char *line, clattn_tuning *tuning)
{
    entry e;

    if (!parse_line(line, &e))
        return 0;
    *tuning = e.tuning;
    return 1;
}
