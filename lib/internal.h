/*
 * Shared by the runtime's files; never installed. Cross-file names carry the
 * clattn__ prefix.
 */
#ifndef CLATTN_INTERNAL_H
#define CLATTN_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "clattn.h"

#define CLATTN_MAX_HEAD_DIM 256
#define CLATTN_MAX_LENGTH (1 << 30)
#define CLATTN_MESSAGE_SIZE 8192

typedef struct clattn_device_info {
    char platform_name[256];
    char platform_version[256];
    char name[256];
    char vendor[256];
    char version[256];
    char driver[256];
    cl_device_type type;
    cl_ulong max_alloc;
    cl_ulong local_mem;
    size_t max_work_group;
    cl_uint compute_units;
    cl_uint vector_width; /* native float vector width: 16 with AVX-512 */
} clattn_device_info;

typedef struct clattn_cached_program clattn_cached_program;

struct clattn_context {
    cl_context cl_ctx;
    cl_device_id device;
    cl_command_queue queue;
    int profiling;
    clattn_device_info info;

    clattn_log_fn log;
    void *log_cookie;
    clattn_log_level log_level;

    /* Guards the program list and the counters: plans may be made from
     * several threads. */
    pthread_mutex_t lock;
    clattn_cached_program *programs;
    clattn_stats stats;
    char *cache_dir;   /* NULL when the disk cache is off */
    char *tuning_file; /* NULL when there is nowhere to keep one */

    char message[CLATTN_MESSAGE_SIZE];

    int fault_kind;             /* a clattn_fault, or -1: see lib/fault.c */
    atomic_int fault_countdown; /* calls of that kind until the one that fails */
};

/* Records the detail of a failure (ctx may be NULL: thread-local) and returns
 * status, so that error paths read `return clattn__fail(...)`. */
clattn_status clattn__fail(clattn_context *ctx, clattn_status status, const char *fmt,
                           ...) __attribute__((format(printf, 3, 4)));

/* Same, for a failed OpenCL call: names the call and the error code. */
clattn_status clattn__cl_fail(clattn_context *ctx, cl_int err, const char *call);

void clattn__clear_message(clattn_context *ctx);

void clattn__log(clattn_context *ctx, clattn_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *clattn__cl_error_name(cl_int err);

/* Queries the facts the runtime needs about a device. */
cl_int clattn__device_info(cl_device_id device, clattn_device_info *info);

/*
 * Returns a built program for the kernel family (a file of cl/, without the
 * .cl) and build options, from this context's memory cache, the disk cache or
 * a fresh build. The caller owns one reference.
 */
clattn_status clattn__program_get(clattn_context *ctx, const char *family,
                                  const char *options, cl_program *program);

/* The hash of the source a family is built from (prelude included). */
uint64_t clattn__source_hash(const char *family);

/* Creates the folders above path; 0 on success. */
int clattn__mkdir_for(const char *path);

/*
 * A file or folder of the user's: option when set, else the environment
 * variable env_name, else name inside $XDG_CACHE_HOME/clattn or
 * $HOME/.cache/clattn. NULL when none applies. The caller frees it.
 */
char *clattn__user_path(const char *option, const char *env_name, const char *name);

/* Releases every cached program of the context. */
void clattn__programs_release(clattn_context *ctx);

/*
 * Everything a variant needs to run: the resolved descriptor and the element
 * strides of each tensor, for the plan's layout.
 */
typedef struct clattn_strides {
    cl_ulong batch;
    cl_ulong head;
    cl_ulong seq;
} clattn_strides;

/* Collects the events of one run so that run_timed can span them. */
typedef struct clattn_event_list {
    cl_event events[16];
    int count;
} clattn_event_list;

typedef struct clattn_run_args {
    cl_mem q, k, v, o, lse;
    cl_uint num_wait;
    const cl_event *wait_list;
    clattn_event_list *events; /* every command's event, when not NULL */
    cl_event last;             /* the last command's event, owned */
} clattn_run_args;

typedef struct clattn_variant_ops {
    clattn_status (*setup)(clattn_plan *plan);
    clattn_status (*run)(clattn_plan *plan, clattn_run_args *args);
    void (*destroy)(clattn_plan *plan);
} clattn_variant_ops;

struct clattn_plan {
    clattn_context *ctx;
    clattn_desc desc; /* defaults filled in, scale resolved */
    clattn_variant variant;
    clattn_kernel_shape shape;
    const clattn_variant_ops *ops;
    size_t bytes[5]; /* per clattn_tensor */
    clattn_strides q_str, k_str, v_str, o_str;
    int group;            /* query heads per key/value head */
    int left, right;      /* window as kernel arguments, never -1 */
    int masked;           /* any mask at all */
    clattn_tuning tuning; /* the shape and tiles the tuning sources suggest */
    size_t workspace_bytes;
    cl_mem dummy; /* bound where an optional buffer is absent */
    void *impl;   /* the variant's own state */
};

extern const clattn_variant_ops clattn__naive_ops;
extern const clattn_variant_ops clattn__tiled_ops;
extern const clattn_variant_ops clattn__window_ops;
extern const clattn_variant_ops clattn__linear_ops;

/*
 * Helpers for variants: take the event a command returned into the run's
 * list (and as args->last), and the wait list for the next command.
 */
void clattn__run_track(clattn_run_args *args, cl_event event);
cl_uint clattn__run_wait(const clattn_run_args *args, const cl_event **list);

/* Appends "-D NAME=VALUE" options shared by every kernel of a plan. */
int clattn__common_options(const clattn_plan *plan, char *buf, size_t size);

/* Sets count kernel arguments, given as (size_t size, const void *value)
 * pairs, from index first on; returns the first error. */
cl_int clattn__set_args(cl_kernel kernel, cl_uint first, int count, ...);

/*
 * The parsers of the files clattn reads, for the fuzz targets in tests/fuzz:
 * one line of the tuning database (1 and *tuning set when it is an entry),
 * and one program cache file for key (the binary, which the caller frees,
 * or NULL).
 */
int clattn__tuning_parse_line(char *line, clattn_tuning *tuning);
/* The built-in tiles of a kernel shape for a device: 1 when the table has a
 * row for both, else 0 and *out untouched. */
int clattn__tuning_builtin(const clattn_device_info *info, clattn_kernel_shape shape,
                           clattn_tuning *out);
unsigned char *clattn__cache_read_file(const char *path, const char *key, size_t *size);

/*
 * CLBlast kernel parameters for the naive variant's GEMMs, parsed from the
 * text form of clattn_gemm_tuning_apply: up to one set per CLBlast kernel,
 * each with all of that kernel's parameters, in the order of its names.
 * Names point to static tables.
 */
#define CLATTN_GEMM_KERNELS 3
#define CLATTN_GEMM_PARAMS 16

typedef struct clattn_gemm_kernel {
    const char *name;
    int count;
    const char *const *names;
    size_t values[CLATTN_GEMM_PARAMS];
} clattn_gemm_kernel;

typedef struct clattn_gemm_params {
    int count;
    clattn_gemm_kernel kernels[CLATTN_GEMM_KERNELS];
} clattn_gemm_params;

/*
 * Parses params and checks the rules CLBlast's kernels need, and the
 * device's work-group and local memory limits when info is not NULL.
 * Returns 1, or 0 with why (a sentence naming the kernel and parameter)
 * filled in.
 */
int clattn__gemm_parse(const char *params, const clattn_device_info *info,
                       clattn_gemm_params *out, char *why, size_t size);

/* The parser of the tuning database's lines of CLBlast parameters, for the
 * fuzz target: 1 when line is one, with its parameters in *out. */
int clattn__gemm_parse_line(char *line, clattn_gemm_params *out);

/*
 * Fault injection for the tests (lib/fault.c). Each hook follows the real
 * call. clattn__fault_call returns status, or the kind's OpenCL error when
 * this is the call that CLATTN_FAULT picks (then *event, when given, is
 * released and NULL). clattn__fault_mem does the same for a new buffer and
 * counts the buffers that live; clattn__live_buffers says how many do.
 */
typedef enum clattn_fault {
    CLATTN_FAULT_ALLOC = 0,
    CLATTN_FAULT_BUILD = 1,
    CLATTN_FAULT_ENQUEUE = 2,
    CLATTN_FAULT_POISON = 3, /* no failure: new workspaces filled with NaN */
} clattn_fault;

void clattn__fault_init(clattn_context *ctx);
int clattn__fault_call(clattn_context *ctx, clattn_fault kind, int status,
                       cl_event *event);
void clattn__fault_mem(clattn_context *ctx, cl_mem *mem, cl_int *err);
long clattn__live_buffers(void);

#endif /* CLATTN_INTERNAL_H */
