/*
 * The tuning database and the built-in table of starting points.
 *
 * The database is a text file of tab-separated lines:
 *   platform device driver source variant dtype head_dim v_head_dim
 *   shape block_q block_k gflops
 * where source is the hash of the kernel source the entry was measured with.
 * The naive variant's CLBlast parameters, one set per device, take lines of
 * seven fields:
 *   platform device driver clblast-VERSION naive params gflops
 * where params is the text form of clattn_gemm_tuning_apply.
 * Lines starting with '#' are comments. A line that does not parse, or whose
 * platform, device, driver or source differ from now, is ignored.
 */
#include <clblast_c.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define FIELDS 12
#define GEMM_FIELDS 7
#define LINE_MAX_BYTES 2048
#define GEMM_VALUE_MAX 1048576

#define STR2(x) #x
#define STR(x) STR2(x)
/* The CLBlast whose kernels a set of parameters was measured with. */
#define CLBLAST_TAG                                                                      \
    "clblast-" STR(CLBLAST_VERSION_MAJOR) "." STR(CLBLAST_VERSION_MINOR) "." STR(        \
        CLBLAST_VERSION_PATCH)

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
 * a vendor (and optionally a device name) substring, a device type and the
 * least native float vector width. `clattn tune --export` prints rows of
 * this form for a tuned device. CPUs with 16-float vectors (AVX-512) have 32
 * vector registers, enough for 24 rows per work-item, which measured 6-16%
 * faster there than 16 (bench/NOTES.md, 2026-12-04); with 16 registers
 * (AVX2) 24 rows spill. The GPU rows are the GPU shape's general defaults;
 * no GPU has measured them.
 */
static const struct builtin {
    const char *vendor, *device;
    cl_device_type type;
    cl_uint min_width;
    clattn_tuning tuning;
} builtins[] = {
    {"", "", CL_DEVICE_TYPE_CPU, 16, {CLATTN_SHAPE_CPU, 24, 64}},
    {"", "", CL_DEVICE_TYPE_CPU, 0, {CLATTN_SHAPE_CPU, 16, 32}},
    {"NVIDIA", "", CL_DEVICE_TYPE_GPU, 0, {CLATTN_SHAPE_GPU, 64, 32}},
    {"Advanced Micro Devices", "", CL_DEVICE_TYPE_GPU, 0, {CLATTN_SHAPE_GPU, 64, 32}},
    {"Intel", "", CL_DEVICE_TYPE_GPU, 0, {CLATTN_SHAPE_GPU, 32, 16}},
    {"Apple", "", CL_DEVICE_TYPE_GPU, 0, {CLATTN_SHAPE_GPU, 32, 16}},
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

/*
 * The naive variant's CLBlast parameters. The names are CLBlast 1.5's, for
 * the kernels its GEMM routine uses; the rules are those its tuner keeps.
 */
static const char *const xgemm_names[] = {
    "GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
    "NDIMC", "NWG",  "SA",  "SB",  "STRM",  "STRN",  "VWM", "VWN",
};
static const char *const direct_names[] = {
    "KWID", "MDIMAD", "MDIMCD", "NDIMBD", "NDIMCD", "PADA", "PADB", "VWMD", "VWND", "WGD",
};
static const char *const routine_names[] = {"XGEMM_MIN_INDIRECT_SIZE"};

static const struct gemm_kernel_names {
    const char *name;
    const char *const *names;
    int count;
} gemm_kernels[CLATTN_GEMM_KERNELS] = {
    {"Xgemm", xgemm_names, 16},
    {"XgemmDirect", direct_names, 10},
    {"GemmRoutine", routine_names, 1},
};

/* The checks of one kernel's set: the first broken rule fills why. */
typedef struct rules {
    const clattn_gemm_kernel *k;
    char *why;
    size_t size;
    int ok;
} rules;

static size_t value_of(const clattn_gemm_kernel *k, const char *name)
{
    for (int i = 0; i < k->count; i++) {
        if (!strcmp(k->names[i], name))
            return k->values[i];
    }
    return 0;
}

static void broken(rules *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void broken(rules *r, const char *fmt, ...)
{
    char text[256];
    va_list ap;

    if (!r->ok)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (r->size)
        snprintf(r->why, r->size, "%s: %s", r->k->name, text);
    r->ok = 0;
}

static void need_range(rules *r, const char *name, size_t lo, size_t hi)
{
    size_t v = value_of(r->k, name);

    if (v < lo || v > hi)
        broken(r, "%s=%zu is outside [%zu, %zu]", name, v, lo, hi);
}

static void need_vector(rules *r, const char *name)
{
    size_t v = value_of(r->k, name);

    if (v != 1 && v != 2 && v != 4 && v != 8 && v != 16)
        broken(r, "%s=%zu is not a vector width (1, 2, 4, 8 or 16)", name, v);
}

static void need_value(rules *r, const char *name, size_t want)
{
    size_t v = value_of(r->k, name);

    if (v != want)
        broken(r, "%s=%zu must be %zu here", name, v, want);
}

/* a must be a multiple of b*c (c may be NULL). Values are at most 2^20, so
 * products of two or three never overflow. */
static void need_multiple(rules *r, const char *a, const char *b, const char *c)
{
    size_t va = value_of(r->k, a), vb = value_of(r->k, b) * (c ? value_of(r->k, c) : 1);

    if (r->ok && (vb == 0 || va % vb != 0))
        broken(r, "%s=%zu is not a multiple of %s%s%s=%zu", a, va, b, c ? "*" : "",
               c ? c : "", vb);
}

/* The work-items that load a tile along k: a must be a multiple of
 * (mc*nc)/d, a whole number. */
static void need_loaders(rules *r, const char *a, const char *mc, const char *nc,
                         const char *d)
{
    size_t threads = value_of(r->k, mc) * value_of(r->k, nc), vd = value_of(r->k, d);

    if (r->ok && (vd == 0 || threads % vd != 0))
        broken(r, "%s*%s=%zu is not a multiple of %s=%zu", mc, nc, threads, d, vd);
    else if (r->ok && value_of(r->k, a) % (threads / vd) != 0)
        broken(r, "%s=%zu is not a multiple of %s*%s/%s=%zu", a, value_of(r->k, a), mc,
               nc, d, threads / vd);
}

static void need_device(rules *r, const clattn_device_info *info, const char *mc,
                        const char *nc, size_t local_bytes)
{
    size_t group = value_of(r->k, mc) * value_of(r->k, nc);

    if (!info)
        return;
    if (group > info->max_work_group)
        broken(r, "a work-group of %s*%s=%zu work-items is over the device's %zu", mc, nc,
               group, info->max_work_group);
    if (local_bytes > info->local_mem)
        broken(r, "its tiles need %zu bytes of local memory, over the device's %llu",
               local_bytes, (unsigned long long)info->local_mem);
}

static void xgemm_rules(rules *r, const clattn_device_info *info)
{
    static const char *const sizes[] = {"KREG", "KWG",   "KWI",   "MDIMA", "MDIMC",
                                        "MWG",  "NDIMB", "NDIMC", "NWG"};
    static const char *const flags[] = {"GEMMK", "SA", "SB", "STRM", "STRN"};
    const clattn_gemm_kernel *k = r->k;
    size_t a_tile, b_tile;

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        need_range(r, sizes[i], 1, GEMM_VALUE_MAX);
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        need_range(r, flags[i], 0, 1);
    need_vector(r, "VWM");
    need_vector(r, "VWN");
    need_multiple(r, "KWG", "KWI", NULL);
    need_multiple(r, "MWG", "MDIMC", "VWM");
    need_multiple(r, "NWG", "NDIMC", "VWN");
    need_multiple(r, "MWG", "MDIMA", "VWM");
    need_multiple(r, "NWG", "NDIMB", "VWN");
    if (value_of(k, "GEMMK") == 0) {
        need_value(r, "KREG", 1);
        need_loaders(r, "KWG", "MDIMC", "NDIMC", "MDIMA");
        need_loaders(r, "KWG", "MDIMC", "NDIMC", "NDIMB");
    } else {
        /* The second kernel tiles k in registers: no local memory. */
        need_value(r, "KWG", 1);
        need_value(r, "KWI", 1);
        need_value(r, "SA", 0);
        need_value(r, "SB", 0);
        need_value(r, "STRM", 0);
        need_value(r, "STRN", 0);
        need_value(r, "MDIMA", value_of(k, "MDIMC"));
        need_value(r, "NDIMB", value_of(k, "NDIMC"));
        need_multiple(r, "KREG", "VWN", NULL);
    }
    if (!r->ok)
        return;

    /* CLBlast packs padded copies of A, B and C into one buffer, and B's
     * and C's must start at a whole vector. */
    a_tile = value_of(k, "MWG") * value_of(k, "KWG") * value_of(k, "KREG");
    b_tile = value_of(k, "NWG") * value_of(k, "KWG") * value_of(k, "KREG");
    if (a_tile % value_of(k, "VWN") != 0)
        broken(r, "MWG*KWG*KREG=%zu is not a multiple of VWN=%zu", a_tile,
               value_of(k, "VWN"));
    if (b_tile % value_of(k, "VWM") != 0)
        broken(r, "NWG*KWG*KREG=%zu is not a multiple of VWM=%zu", b_tile,
               value_of(k, "VWM"));
    need_device(r, info, "MDIMC", "NDIMC",
                sizeof(float) * value_of(k, "KWG") *
                    (value_of(k, "SA") * value_of(k, "MWG") +
                     value_of(k, "SB") * value_of(k, "NWG")));
}

static void direct_rules(rules *r, const clattn_device_info *info)
{
    static const char *const sizes[] = {"KWID",   "MDIMAD", "MDIMCD",
                                        "NDIMBD", "NDIMCD", "WGD"};
    size_t wgd;

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        need_range(r, sizes[i], 1, GEMM_VALUE_MAX);
    need_range(r, "PADA", 0, 1);
    need_range(r, "PADB", 0, 1);
    need_vector(r, "VWMD");
    need_vector(r, "VWND");
    need_multiple(r, "WGD", "KWID", NULL);
    need_multiple(r, "WGD", "MDIMCD", "VWMD");
    need_multiple(r, "WGD", "NDIMCD", "VWND");
    need_multiple(r, "WGD", "MDIMAD", "VWMD");
    need_multiple(r, "WGD", "NDIMBD", "VWND");
    need_loaders(r, "WGD", "MDIMCD", "NDIMCD", "MDIMAD");
    need_loaders(r, "WGD", "MDIMCD", "NDIMCD", "NDIMBD");
    if (!r->ok)
        return;
    wgd = value_of(r->k, "WGD");
    need_device(r, info, "MDIMCD", "NDIMCD",
                sizeof(float) * wgd *
                    (2 * wgd + value_of(r->k, "PADA") + value_of(r->k, "PADB")));
}

static int check_rules(const clattn_gemm_kernel *k, const clattn_device_info *info,
                       char *why, size_t size)
{
    rules r = {k, why, size, 1};

    if (!strcmp(k->name, "Xgemm"))
        xgemm_rules(&r, info);
    else if (!strcmp(k->name, "XgemmDirect"))
        direct_rules(&r, info);
    else
        need_range(&r, "XGEMM_MIN_INDIRECT_SIZE", 1, GEMM_VALUE_MAX);
    return r.ok;
}

static int gemm_rules(const clattn_gemm_params *p, const clattn_device_info *info,
                      char *why, size_t size)
{
    for (int i = 0; i < p->count; i++) {
        if (!check_rules(&p->kernels[i], info, why, size))
            return 0;
    }
    return 1;
}

static int parse_fail(char *why, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int parse_fail(char *why, size_t size, const char *fmt, ...)
{
    va_list ap;

    if (size) {
        va_start(ap, fmt);
        vsnprintf(why, size, fmt, ap);
        va_end(ap);
    }
    return 0;
}

/* "NAME=VALUE" of kernel k, whose names seen so far are marked in seen. */
static int parse_param(const char *item, size_t n, clattn_gemm_kernel *k, int *seen,
                       char *why, size_t size)
{
    const char *eq = memchr(item, '=', n);
    size_t name_len = eq ? (size_t)(eq - item) : n, digits = eq ? n - name_len - 1 : 0;
    size_t value = 0;
    int at = -1;

    for (int i = 0; i < k->count && eq; i++) {
        if (strlen(k->names[i]) == name_len && !memcmp(k->names[i], item, name_len))
            at = i;
    }
    if (!eq)
        return parse_fail(why, size, "%s: '%.*s' is not NAME=VALUE", k->name, (int)n,
                          item);
    if (at < 0)
        return parse_fail(why, size, "%s: CLBlast has no parameter '%.*s' for it",
                          k->name, (int)name_len, item);
    if (seen[at])
        return parse_fail(why, size, "%s: %s is given twice", k->name, k->names[at]);
    for (size_t i = 0; i < digits; i++) {
        if (eq[1 + i] < '0' || eq[1 + i] > '9' || value > GEMM_VALUE_MAX)
            break;
        value = value * 10 + (size_t)(eq[1 + i] - '0');
        if (i + 1 == digits && value <= GEMM_VALUE_MAX) {
            seen[at] = 1;
            k->values[at] = value;
            return 1;
        }
    }
    return parse_fail(why, size, "%s: %s='%.*s' is not an integer in [0, %d]", k->name,
                      k->names[at], (int)digits, eq + 1, GEMM_VALUE_MAX);
}

/* "KERNEL:NAME=VALUE,..." into the next kernel of out. */
static int parse_kernel(const char *text, size_t n, clattn_gemm_params *out, char *why,
                        size_t size)
{
    const char *colon = memchr(text, ':', n), *p, *end = text + n;
    size_t name_len = colon ? (size_t)(colon - text) : n;
    int seen[CLATTN_GEMM_PARAMS] = {0}, at = -1;
    clattn_gemm_kernel *k = &out->kernels[out->count];

    for (int i = 0; i < CLATTN_GEMM_KERNELS; i++) {
        if (strlen(gemm_kernels[i].name) == name_len &&
            !memcmp(gemm_kernels[i].name, text, name_len))
            at = i;
    }
    if (!colon || at < 0)
        return parse_fail(why, size,
                          "'%.*s' does not start with Xgemm:, XgemmDirect: or "
                          "GemmRoutine:",
                          (int)(n > 40 ? 40 : n), text);
    for (int i = 0; i < out->count; i++) {
        if (!strcmp(out->kernels[i].name, gemm_kernels[at].name))
            return parse_fail(why, size, "%s is given twice", gemm_kernels[at].name);
    }
    memset(k, 0, sizeof(*k));
    k->name = gemm_kernels[at].name;
    k->names = gemm_kernels[at].names;
    k->count = gemm_kernels[at].count;
    for (p = colon + 1; p <= end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t len = comma ? (size_t)(comma - p) : (size_t)(end - p);

        if (!parse_param(p, len, k, seen, why, size))
            return 0;
        p += len + 1;
    }
    for (int i = 0; i < k->count; i++) {
        if (!seen[i])
            return parse_fail(why, size, "%s: %s is missing", k->name, k->names[i]);
    }
    out->count++;
    return 1;
}

int clattn__gemm_parse(const char *params, const clattn_device_info *info,
                       clattn_gemm_params *out, char *why, size_t size)
{
    size_t n = params ? strnlen(params, CLATTN_GEMM_TUNING_SIZE) : 0;

    memset(out, 0, sizeof(*out));
    if (!params || n == 0)
        return parse_fail(why, size, "no CLBlast parameters");
    if (n == CLATTN_GEMM_TUNING_SIZE)
        return parse_fail(why, size, "longer than %d characters",
                          CLATTN_GEMM_TUNING_SIZE - 1);
    for (const char *p = params; p <= params + n;) {
        const char *semi = memchr(p, ';', (size_t)(params + n - p));
        size_t len = semi ? (size_t)(semi - p) : (size_t)(params + n - p);

        if (out->count == CLATTN_GEMM_KERNELS)
            return parse_fail(why, size, "more than %d kernels", CLATTN_GEMM_KERNELS);
        if (!parse_kernel(p, len, out, why, size))
            return 0;
        p += len + 1;
    }
    return gemm_rules(out, info, why, size);
}

/* The canonical text: kernels as given, parameters in CLBlast's order. */
static int gemm_format(const clattn_gemm_params *p, char *buf, size_t size)
{
    size_t used = 0;

    buf[0] = '\0';
    for (int i = 0; i < p->count; i++) {
        const clattn_gemm_kernel *k = &p->kernels[i];

        used += (size_t)snprintf(buf + used, used < size ? size - used : 0,
                                 "%s%s:", i ? ";" : "", k->name);
        for (int j = 0; j < k->count; j++)
            used += (size_t)snprintf(buf + used, used < size ? size - used : 0,
                                     "%s%s=%zu", j ? "," : "", k->names[j], k->values[j]);
    }
    return used < size;
}

typedef struct gemm_entry {
    char platform[256], device[256], driver[256], clblast[32];
    double gflops;
} gemm_entry;

/*
 * One database line of CLBlast parameters: 1 when it is one, with its
 * parameters in *p; -1 when its fields are those of one but its parameters
 * break a rule (said in why); 0 when it is no such line.
 */
static int parse_gemm_line(char *line, gemm_entry *e, clattn_gemm_params *p, char *why,
                           size_t size)
{
    char *f[GEMM_FIELDS], *save = NULL, *end;
    int n = 0;

    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '#' || line[0] == '\0')
        return 0;
    for (char *t = strtok_r(line, "\t", &save); t; t = strtok_r(NULL, "\t", &save)) {
        if (n == GEMM_FIELDS)
            return 0;
        f[n++] = t;
    }
    if (n != GEMM_FIELDS || strcmp(f[4], "naive") || strncmp(f[3], "clblast-", 8))
        return 0;
    memset(e, 0, sizeof(*e));
    errno = 0;
    e->gflops = strtod(f[6], &end);
    if (errno || *end || end == f[6] ||
        !copy_field(e->platform, sizeof(e->platform), f[0]) ||
        !copy_field(e->device, sizeof(e->device), f[1]) ||
        !copy_field(e->driver, sizeof(e->driver), f[2]) ||
        !copy_field(e->clblast, sizeof(e->clblast), f[3]))
        return 0;
    return clattn__gemm_parse(f[5], NULL, p, why, size) ? 1 : -1;
}

static void gemm_key(const clattn_context *ctx, gemm_entry *e)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->platform, sizeof(e->platform), "%s", ctx->info.platform_name);
    snprintf(e->device, sizeof(e->device), "%s", ctx->info.name);
    snprintf(e->driver, sizeof(e->driver), "%s", ctx->info.driver);
    snprintf(e->clblast, sizeof(e->clblast), "%s", CLBLAST_TAG);
}

static int same_device(const gemm_entry *a, const gemm_entry *b)
{
    return !strcmp(a->platform, b->platform) && !strcmp(a->device, b->device) &&
           !strcmp(a->driver, b->driver);
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

/* The first row for the device, of the given kernel shape unless AUTO. */
int clattn__tuning_builtin(const clattn_device_info *info, clattn_kernel_shape shape,
                           clattn_tuning *out)
{
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
        const struct builtin *b = &builtins[i];

        if ((info->type & b->type) && strstr(info->vendor, b->vendor) &&
            strstr(info->name, b->device) && info->vector_width >= b->min_width &&
            (shape == CLATTN_SHAPE_AUTO || shape == b->tuning.kernel_shape)) {
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
    } else if (!linear && clattn__tuning_builtin(&ctx->info, CLATTN_SHAPE_AUTO, tuning)) {
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

/* Whether a line of the old file stays: an entry of either kind, unless it
 * has the key of the new one, which replaces it. */
static int keep_line(const char *line, const entry *tiled_key, const gemm_entry *gemm_key)
{
    char copy[LINE_MAX_BYTES];
    clattn_gemm_params params;
    gemm_entry g;
    entry e;

    memcpy(copy, line, sizeof(copy));
    if (parse_line(copy, &e))
        return !tiled_key || !same_key(&e, tiled_key);
    memcpy(copy, line, sizeof(copy));
    if (parse_gemm_line(copy, &g, &params, NULL, 0) == 1)
        return !gemm_key || !same_device(&g, gemm_key);
    return 0;
}

/* Copies every entry of the old file but the one with the new line's key,
 * then adds the new line, through a temporary file and a rename. */
static clattn_status rewrite(clattn_context *ctx, const char *new_line,
                             const entry *tiled_key, const gemm_entry *gemm_key)
{
    char tmp[4200], line[LINE_MAX_BYTES];
    FILE *in = fopen(ctx->tuning_file, "r"), *out;
    int fd, ok = 1;

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
          "# head_dim, v_head_dim, shape, block_q, block_k, GFLOP/s (tab-separated);\n"
          "# for the naive variant's CLBlast GEMMs: platform, device, driver,\n"
          "# clblast-VERSION, naive, parameters, GFLOP/s\n",
          out);
    while (in && next_line(in, line, sizeof(line))) {
        if (!keep_line(line, tiled_key, gemm_key))
            continue;
        ok = ok && fputs(line, out) >= 0;
        /* The old file's last line may lack its newline. */
        if (line[strlen(line) - 1] != '\n')
            ok = ok && fputc('\n', out) != EOF;
    }
    ok = ok && fputs(new_line, out) >= 0;
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
    char line[LINE_MAX_BYTES];
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
    format_line(&e, line, sizeof(line));
    return rewrite(ctx, line, &e, NULL);
}

/* Whether the tiled kernels accept these tiles on this device. */
static int legal(const clattn_context *ctx, const clattn_desc *d, const clattn_tuning *t)
{
    const int dv = d->v_head_dim ? d->v_head_dim : d->head_dim;
    const size_t per_key = (size_t)(d->head_dim + dv) * sizeof(float);

    /* Linear's CPU kernel holds phi of a chunk's keys, rows padded to 8s, in
     * at most 32768 private floats. */
    if (d->variant == CLATTN_VARIANT_LINEAR)
        return t->block_k % 8 == 0 && t->block_k <= 512 &&
               (t->kernel_shape == CLATTN_SHAPE_GPU ||
                (t->block_q % 8 == 0 && t->block_q <= 32 &&
                 t->block_k * ((d->head_dim + 7) / 8 * 8) <= 32768));
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

int clattn__gemm_parse_line(char *line, clattn_gemm_params *out)
{
    gemm_entry e;

    return parse_gemm_line(line, &e, out, NULL, 0) == 1;
}

/*
 * The last usable set for this device in the database, into *out. Sets of
 * another CLBlast are stale; sets that break a rule, or the device's limits,
 * are reported, since only a hand edit or another clattn makes them.
 */
static int gemm_find(clattn_context *ctx, clattn_gemm_params *out)
{
    char line[LINE_MAX_BYTES], why[512];
    clattn_gemm_params p;
    gemm_entry key, e;
    int found = 0, kind;
    FILE *f;

    if (!ctx->tuning_file || !(f = fopen(ctx->tuning_file, "r")))
        return 0;
    gemm_key(ctx, &key);
    while (next_line(f, line, sizeof(line))) {
        kind = parse_gemm_line(line, &e, &p, why, sizeof(why));
        if (kind == 0 || !same_device(&e, &key))
            continue;
        if (strcmp(e.clblast, key.clblast)) {
            clattn__log(ctx, CLATTN_LOG_INFO,
                        "ignoring CLBlast parameters for %s in %s: measured with %s",
                        key.clblast, ctx->tuning_file, e.clblast);
        } else if (kind < 0 || !gemm_rules(&p, &ctx->info, why, sizeof(why))) {
            clattn__log(ctx, CLATTN_LOG_WARNING,
                        "ignoring the naive variant's CLBlast parameters in %s: %s",
                        ctx->tuning_file, why);
        } else {
            *out = p;
            found = 1;
        }
    }
    fclose(f);
    return found;
}

clattn_status clattn_gemm_tuning_lookup(clattn_context *ctx, char *params, size_t size,
                                        clattn_tuning_origin *origin)
{
    clattn_gemm_params p;

    if (!ctx)
        return CLATTN_INVALID_ARGUMENT;
    if (!params || size < CLATTN_GEMM_TUNING_SIZE)
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT,
                            !params ? "params is NULL"
                                    : "size must be at least CLATTN_GEMM_TUNING_SIZE");
    params[0] = '\0';
    if (origin)
        *origin = CLATTN_TUNING_DEFAULT;
    if (!gemm_find(ctx, &p))
        return CLATTN_OK;
    gemm_format(&p, params, size);
    if (origin)
        *origin = CLATTN_TUNING_DATABASE;
    return CLATTN_OK;
}

clattn_status clattn_gemm_tuning_save(clattn_context *ctx, const char *params,
                                      double gflops)
{
    char why[512], text[CLATTN_GEMM_TUNING_SIZE], line[LINE_MAX_BYTES];
    clattn_gemm_params p;
    gemm_entry key;

    if (!ctx)
        return CLATTN_INVALID_ARGUMENT;
    if (!clattn__gemm_parse(params, &ctx->info, &p, why, sizeof(why)))
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT, "params: %s", why);
    if (!(gflops >= 0.0 && gflops <= 1e12))
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT, "gflops must be in [0, 1e12]");
    if (!ctx->tuning_file)
        return clattn__fail(ctx, CLATTN_IO_ERROR,
                            "no tuning file: set CLATTN_TUNING_FILE or HOME");
    if (!gemm_format(&p, text, sizeof(text)))
        return clattn__fail(ctx, CLATTN_INVALID_ARGUMENT, "params: too long");
    gemm_key(ctx, &key);
    snprintf(line, sizeof(line), "%s\t%s\t%s\t%s\tnaive\t%s\t%.1f\n", key.platform,
             key.device, key.driver, key.clblast, text, gflops);
    if (clattn__mkdir_for(ctx->tuning_file))
        return clattn__fail(ctx, CLATTN_IO_ERROR, "cannot create the folder of %s",
                            ctx->tuning_file);
    return rewrite(ctx, line, NULL, &key);
}
