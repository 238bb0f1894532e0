/*
 * clattn: transformer attention on any OpenCL 1.2 device.
 *
 * One header, opaque handles, and a status from every fallible call.
 *
 *   clattn_context  owns (or wraps) an OpenCL context, device and in-order queue,
 *                   plus a cache of compiled programs.
 *   clattn_desc     describes one attention problem; a plain struct the caller
 *                   fills after clattn_desc_init() has set the defaults.
 *   clattn_plan     is made from a context and a descriptor: it validates the
 *                   problem, picks and compiles kernels and allocates any
 *                   workspace. Run it as often as needed.
 *
 * Semantics, for every variant:
 *
 *   O = softmax(Q K^T * scale + mask) V, computed independently for each batch
 *   entry b and query head h. Query head h reads key/value head
 *   h / (q_heads / kv_heads), so kv_heads == q_heads is ordinary multi-head
 *   attention, 1 < kv_heads < q_heads is grouped-query attention and
 *   kv_heads == 1 is multi-query attention.
 *
 *   Masks align bottom-right. With i' = i + kv_len - q_len, query row i may see
 *   key j (0 <= j < kv_len) when
 *       causal:  j <= i'
 *       window:  i' - window_left <= j <= i' + window_right
 *   where a window bound of -1 means unbounded on that side. Causal and a
 *   window combine: causal caps window_right at 0.
 *
 *   A query row that sees no key yields an output row of zeros and a
 *   log-sum-exp of -infinity. The log-sum-exp, when requested, is the natural
 *   logarithm of sum_j exp(scale * q_i . k_j) over the keys row i sees.
 *
 *   Storage is fp32 or fp16 (IEEE half, read and written with vload_half and
 *   vstore_half); arithmetic and accumulation are always fp32. The output uses
 *   the dtype and layout of the inputs; the log-sum-exp is always fp32 and laid
 *   out [batch, q_heads, q_len].
 *
 *   NaN and Inf in the inputs of the naive, tiled and window variants
 *   propagate as in a float64 reference: a NaN in query row i, or in a key
 *   that row i sees, makes output row i NaN; a NaN or Inf in column c of a
 *   value that row i sees makes column c of row i NaN or Inf. A score of +Inf
 *   makes its row NaN (Inf - Inf), one of -Inf gives its key no weight, and
 *   keys that a mask hides never matter. Finite scores of any size are safe:
 *   the softmax subtracts the running maximum, so scores of +-1e4 neither
 *   overflow nor turn into 0/0.
 */
#ifndef CLATTN_H
#define CLATTN_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(CLATTN_BUILDING_DLL)
#define CLATTN_API __declspec(dllexport)
#elif defined(__GNUC__)
#define CLATTN_API __attribute__((visibility("default")))
#else
#define CLATTN_API
#endif

#define CLATTN_VERSION_MAJOR 0
#define CLATTN_VERSION_MINOR 1
#define CLATTN_VERSION_PATCH 0

/** Returns the library version as "MAJOR.MINOR.PATCH". */
CLATTN_API const char *clattn_version(void);

/*
 * Status codes. One list generates the enum, the names and the texts.
 */
#define CLATTN_STATUS_LIST(X)                                                            \
    X(OK, 0, "success")                                                                  \
    X(INVALID_ARGUMENT, -1, "an argument is missing or out of range")                    \
    X(INVALID_SHAPE, -2, "the problem's sizes are inconsistent or too large")            \
    X(BUFFER_TOO_SMALL, -3, "a buffer is smaller than the problem needs")                \
    X(UNSUPPORTED, -4, "the device or variant does not support this problem")            \
    X(NO_DEVICE, -5, "no OpenCL device matches")                                         \
    X(HOST_MEMORY, -6, "a host allocation failed")                                       \
    X(DEVICE_MEMORY, -7, "the device could not allocate enough memory")                  \
    X(BUILD_FAILED, -8, "an OpenCL program failed to build")                             \
    X(OPENCL_ERROR, -9, "an OpenCL call failed")                                         \
    X(BLAS_ERROR, -10, "a CLBlast call failed")                                          \
    X(IO_ERROR, -11, "a file could not be read or written")

typedef enum clattn_status {
#define CLATTN_STATUS_ENUM(name, value, text) CLATTN_##name = value,
    CLATTN_STATUS_LIST(CLATTN_STATUS_ENUM)
#undef CLATTN_STATUS_ENUM
} clattn_status;

/** Returns the status's name without prefix ("INVALID_ARGUMENT"). */
CLATTN_API const char *clattn_status_name(clattn_status status);

/** Returns a one-line description of the status. */
CLATTN_API const char *clattn_status_text(clattn_status status);

/*
 * Context.
 *
 * Threads: plans of one context may be created from several threads at once
 * (the program cache is locked). A plan is run from one thread at a time;
 * different plans of a context may run from different threads, since they
 * share only the context's in-order queue, which OpenCL makes thread-safe.
 * The per-context message belongs to whichever call failed last.
 */
typedef struct clattn_context clattn_context;

typedef enum clattn_log_level {
    CLATTN_LOG_ERROR = 0,
    CLATTN_LOG_WARNING = 1,
    CLATTN_LOG_INFO = 2,
    CLATTN_LOG_DEBUG = 3,
} clattn_log_level;

typedef void (*clattn_log_fn)(void *cookie, clattn_log_level level, const char *message);

typedef struct clattn_context_options {
    /**
     * Which device to use: a decimal index into the list that `clattn devices`
     * prints (all platforms, in order), "cpu", "gpu", or a case-insensitive
     * substring of the platform or device name. NULL reads the environment
     * variable CLATTN_DEVICE; when that is unset too, the first GPU is taken,
     * else the first device of any kind.
     */
    const char *device;
    /**
     * Folder for compiled program binaries. NULL reads CLATTN_CACHE_DIR, then
     * $XDG_CACHE_HOME/clattn, then $HOME/.cache/clattn. The disk cache is off
     * when CLATTN_DISABLE_CACHE is set to anything but "" or "0", or when
     * disable_disk_cache is non-zero.
     */
    const char *cache_dir;
    int disable_disk_cache;
    /** The tuning database; NULL: see clattn_tuning_file(). */
    const char *tuning_file;
    /** Receives errors, warnings (e.g. build logs) and notes. NULL: silent. */
    clattn_log_fn log;
    void *log_cookie;
    /** Messages above this level are not passed to log. Default: WARNING. */
    clattn_log_level log_level;
} clattn_context_options;

/** Fills options with the defaults stated above. */
CLATTN_API void clattn_context_options_init(clattn_context_options *options);

/**
 * Creates a context, an in-order command queue with profiling enabled, and an
 * empty program cache on the chosen device. options may be NULL.
 *
 * Returns OK, NO_DEVICE, HOST_MEMORY or OPENCL_ERROR. On failure *out is NULL
 * and clattn_context_message(NULL) tells why.
 */
CLATTN_API clattn_status clattn_context_create(clattn_context **out,
                                               const clattn_context_options *options);

/**
 * Wraps a context, device and queue that the application owns; clattn retains
 * them and releases its references on destroy. The queue must belong to the
 * context and device and must be in-order. Profiling timings
 * (clattn_plan_run_timed) need CL_QUEUE_PROFILING_ENABLE.
 *
 * Returns OK, INVALID_ARGUMENT (null handle, mismatched device or
 * out-of-order queue), HOST_MEMORY or OPENCL_ERROR.
 */
CLATTN_API clattn_status clattn_context_wrap(clattn_context **out, cl_context cl_ctx,
                                             cl_device_id device, cl_command_queue queue,
                                             const clattn_context_options *options);

/** Destroys the context. Plans made from it must be destroyed first. NULL is a no-op. */
CLATTN_API void clattn_context_destroy(clattn_context *ctx);

/**
 * The detail of the last failure on ctx: which argument was wrong and why, or
 * the OpenCL error and call. With ctx NULL, the detail of the last failed
 * clattn_context_create or clattn_context_wrap on this thread. Never NULL;
 * empty when there was no failure. Valid until the next call on ctx.
 */
CLATTN_API const char *clattn_context_message(const clattn_context *ctx);

/** The context's OpenCL handles; the caller does not own them. */
CLATTN_API cl_context clattn_context_cl_context(const clattn_context *ctx);
CLATTN_API cl_device_id clattn_context_device(const clattn_context *ctx);
CLATTN_API cl_command_queue clattn_context_queue(const clattn_context *ctx);

/** Counters of the program cache, for tools and tests. */
typedef struct clattn_stats {
    uint64_t programs_compiled;     /**< built from source */
    uint64_t programs_from_disk;    /**< built from a cached binary */
    uint64_t programs_from_memory;  /**< found already built in this context */
    uint64_t disk_entries_rejected; /**< corrupt or stale cache files ignored */
} clattn_stats;

CLATTN_API clattn_status clattn_context_stats(const clattn_context *ctx,
                                              clattn_stats *stats);

/*
 * Problem descriptor.
 */
typedef enum clattn_dtype {
    CLATTN_F32 = 0,
    CLATTN_F16 = 1,
} clattn_dtype;

typedef enum clattn_layout {
    CLATTN_LAYOUT_BHSD = 0, /**< [batch, heads, seq, dim], dim contiguous */
    CLATTN_LAYOUT_BSHD = 1, /**< [batch, seq, heads, dim], dim contiguous */
} clattn_layout;

typedef enum clattn_variant {
    /** Window when a window is set (a bound other than -1), else tiled. */
    CLATTN_VARIANT_AUTO = 0,
    /** Materialized scores: CLBlast GEMMs and a softmax. Its GEMMs are tuned
     * through CLBlast's parameters: see clattn_gemm_tuning_apply. */
    CLATTN_VARIANT_NAIVE = 1,
    CLATTN_VARIANT_TILED = 2, /**< flash-style, online softmax, O(N) memory */
    /** Sliding window: visits only the keys inside the window's band, so its
     * cost grows with N * W rather than N^2. */
    CLATTN_VARIANT_WINDOW = 3,
    /** Linear (kernel) attention, a different function: see clattn_feature_map. */
    CLATTN_VARIANT_LINEAR = 4,
} clattn_variant;

/** The variant's name: "auto", "naive", "tiled", "window" or "linear";
 * "unknown" for a value outside the enum. */
CLATTN_API const char *clattn_variant_name(clattn_variant variant);

/**
 * The feature map phi of linear attention. The linear variant computes
 *
 *   O_i = phi(q_i)^T S_i / (phi(q_i)^T z_i + 1e-6),
 *   S_i = sum_j phi(k_j) v_j^T,   z_i = sum_j phi(k_j),
 *
 * over the keys j that row i may see: all of them, or j <= i' when causal
 * (i' = i + kv_len - q_len, aligned bottom-right as for the other variants;
 * a row with i' < 0 sees no key and yields zeros). No softmax scale is
 * applied, windows other than causal are refused, and there is no
 * log-sum-exp. Causal runs in chunks: a masked quadratic product inside each
 * chunk of keys and a running D x Dv state across chunks, so time is O(N) and
 * memory O(N) plus one state per chunk; nothing N x N is ever formed.
 */
typedef enum clattn_feature_map {
    CLATTN_FEATURE_ELU1 = 0, /**< elu(x) + 1: x + 1 for x > 0, else exp(x) (default) */
    CLATTN_FEATURE_RELU = 1, /**< max(x, 0) */
} clattn_feature_map;

typedef enum clattn_kernel_shape {
    CLATTN_SHAPE_AUTO = 0, /**< by device type: CPU shape on CPUs, GPU shape elsewhere */
    CLATTN_SHAPE_GPU = 1,  /**< many work-items per work-group, local-memory tiles */
    CLATTN_SHAPE_CPU = 2,  /**< one work-item per block of rows, wide vectors */
} clattn_kernel_shape;

typedef struct clattn_desc {
    int batch;      /**< 1..65536, default 1 */
    int q_heads;    /**< 1..65536, default 1 */
    int kv_heads;   /**< 0 (default): same as q_heads; must divide q_heads */
    int q_len;      /**< queries per head, 1..2^29; required */
    int kv_len;     /**< keys per head, 1..2^29; 0 (default): same as q_len */
    int head_dim;   /**< Q and K head size, 1..256; required */
    int v_head_dim; /**< V and O head size, 1..256; 0 (default): head_dim */
    clattn_dtype dtype;
    clattn_layout layout;
    float scale;      /**< 0 (default): 1/sqrt(head_dim); else finite and > 0 */
    int causal;       /**< non-zero: causal mask, aligned bottom-right */
    int window_left;  /**< -1 (default): unbounded */
    int window_right; /**< -1 (default): unbounded */
    int want_lse;     /**< non-zero: runs write the log-sum-exp */
    clattn_variant variant;
    clattn_kernel_shape kernel_shape;
    clattn_feature_map feature_map; /**< linear variant only */
    /**
     * Tile overrides; 0 picks the device's default. The CPU shape takes
     * block_q as a multiple of 8 up to 64 and block_k as a multiple of 4 up
     * to 256; the GPU shape takes block_q up to the device's work-group size
     * and block_k up to 256 whose K/V tiles fit in local memory.
     */
    int block_q; /**< query rows per work-item (CPU) or work-group (GPU) */
    int block_k; /**< keys per tile */
} clattn_desc;

/**
 * Sets every field to its default: batch and q_heads 1, fp32, BHSD, no mask,
 * variant and kernel shape AUTO. q_len and head_dim are left 0: the caller
 * must set them.
 */
CLATTN_API void clattn_desc_init(clattn_desc *desc);

typedef enum clattn_tensor {
    CLATTN_TENSOR_Q = 0,
    CLATTN_TENSOR_K = 1,
    CLATTN_TENSOR_V = 2,
    CLATTN_TENSOR_O = 3,
    CLATTN_TENSOR_LSE = 4,
} clattn_tensor;

/**
 * Bytes a tensor of the problem occupies. Returns OK, INVALID_ARGUMENT or
 * INVALID_SHAPE (also when the size overflows size_t).
 */
CLATTN_API clattn_status clattn_tensor_bytes(const clattn_desc *desc,
                                             clattn_tensor tensor, size_t *bytes);

/*
 * Plan.
 */
typedef struct clattn_plan clattn_plan;

/**
 * Validates desc, chooses the variant and kernel shape, compiles (or finds in
 * the caches) the programs and allocates any workspace. Lengths are kernel
 * arguments: plans that differ only in batch, heads or lengths share compiled
 * programs, so a decode loop that makes a plan per step never recompiles.
 *
 * Returns OK; INVALID_ARGUMENT for a field out of range; INVALID_SHAPE when
 * kv_heads does not divide q_heads or sizes overflow; UNSUPPORTED,
 * DEVICE_MEMORY (the naive variant's score workspace, B*Hq*Lq*Lk floats, is
 * refused up front when it exceeds the device's largest allocation),
 * HOST_MEMORY, BUILD_FAILED or OPENCL_ERROR. clattn_context_message() has the
 * detail, naming the field (and the build log for BUILD_FAILED). On failure
 * *out is NULL.
 */
CLATTN_API clattn_status clattn_plan_create(clattn_plan **out, clattn_context *ctx,
                                            const clattn_desc *desc);

/** Destroys the plan and its workspace. NULL is a no-op. */
CLATTN_API void clattn_plan_destroy(clattn_plan *plan);

/** The variant the plan runs (never AUTO). */
CLATTN_API clattn_variant clattn_plan_variant(const clattn_plan *plan);

/** The kernel shape the plan runs (never AUTO). */
CLATTN_API clattn_kernel_shape clattn_plan_kernel_shape(const clattn_plan *plan);

/** Bytes of device workspace the plan holds. */
CLATTN_API size_t clattn_plan_workspace_bytes(const clattn_plan *plan);

/**
 * Enqueues the attention on the context's queue. q, k, v and o are device
 * buffers laid out as the descriptor says, starting at offset 0; lse is
 * required when the descriptor asked for it and ignored otherwise. The run
 * waits for wait_list and, when event is not NULL, returns an event that
 * completes with the run. Buffers smaller than the problem are refused
 * (BUFFER_TOO_SMALL); o or lse aliasing an input or each other is refused
 * (INVALID_ARGUMENT).
 */
CLATTN_API clattn_status clattn_plan_run(clattn_plan *plan, cl_mem q, cl_mem k, cl_mem v,
                                         cl_mem o, cl_mem lse, cl_uint num_wait,
                                         const cl_event *wait_list, cl_event *event);

/**
 * Runs once and waits for it, then reports the device time from the start of
 * the first command to the end of the last, from OpenCL profiling events.
 * Needs a queue with profiling enabled (UNSUPPORTED otherwise).
 */
CLATTN_API clattn_status clattn_plan_run_timed(clattn_plan *plan, cl_mem q, cl_mem k,
                                               cl_mem v, cl_mem o, cl_mem lse,
                                               double *milliseconds);

/**
 * Convenience: copies host arrays in, runs, waits and copies the output (and
 * the log-sum-exp when asked for) back. fp16 data is passed as uint16_t bits.
 */
CLATTN_API clattn_status clattn_plan_run_host(clattn_plan *plan, const void *q,
                                              const void *k, const void *v, void *o,
                                              float *lse);

/*
 * Tuning.
 *
 * Plans whose descriptor leaves kernel_shape AUTO and block_q/block_k 0 take
 * their kernel shape and tiles from, in order: the tuning database (entries
 * that `clattn tune` measured on this device, for this variant, dtype and head
 * sizes), the built-in table of starting points per vendor and device type,
 * and the defaults. A database entry counts only while the platform, device,
 * driver version and kernel source it was measured with are unchanged; stale
 * or malformed lines are ignored, never trusted. Plan creation never tunes.
 */
typedef struct clattn_tuning {
    clattn_kernel_shape kernel_shape; /**< CPU or GPU */
    int block_q;
    int block_k;
} clattn_tuning;

typedef enum clattn_tuning_origin {
    CLATTN_TUNING_DEFAULT = 0,  /**< nothing matched: the library's defaults */
    CLATTN_TUNING_BUILTIN = 1,  /**< the built-in table, by vendor and type */
    CLATTN_TUNING_DATABASE = 2, /**< a measured entry of the tuning database */
} clattn_tuning_origin;

/**
 * The tuning database the context reads and writes: the tuning_file option,
 * else CLATTN_TUNING_FILE, else tuning.txt in $XDG_CACHE_HOME/clattn or
 * $HOME/.cache/clattn. A human-readable text file, one entry per line.
 */
CLATTN_API const char *clattn_tuning_file(const clattn_context *ctx);

/**
 * What a plan for desc would use, ignoring the descriptor's own shape and
 * tile fields, and where it comes from (origin may be NULL). For tiled and
 * window, block_q and block_k are query rows and keys per tile; for linear,
 * query rows per CPU work-item and keys per chunk. Returns OK,
 * INVALID_ARGUMENT or UNSUPPORTED (naive, which has no tiles: its GEMMs are
 * tuned through clattn_gemm_tuning_lookup and the functions after it).
 */
CLATTN_API clattn_status clattn_tuning_lookup(clattn_context *ctx,
                                              const clattn_desc *desc,
                                              clattn_tuning *tuning,
                                              clattn_tuning_origin *origin);

/**
 * The legal tuning space for desc on the context's device: every kernel
 * shape and tile pair the tiled and window kernels accept there (work-group
 * limits, local memory), the device type's natural shape first. Writes up to
 * max entries to out and the full count to *count. Returns OK,
 * INVALID_ARGUMENT or UNSUPPORTED.
 */
CLATTN_API clattn_status clattn_tuning_space(clattn_context *ctx, const clattn_desc *desc,
                                             clattn_tuning *out, int max, int *count);

/**
 * Records tuning as the measured best for desc's kernel configuration on the
 * context's device (variant, dtype and head sizes), replacing any entry for
 * the same key, with gflops as a note. The file is rewritten atomically.
 * Returns OK, INVALID_ARGUMENT, UNSUPPORTED or IO_ERROR.
 */
CLATTN_API clattn_status clattn_tuning_save(clattn_context *ctx, const clattn_desc *desc,
                                            const clattn_tuning *tuning, double gflops);

/*
 * Tuning of the naive variant. Its GEMMs run in CLBlast, whose kernels take
 * their parameters from CLBlast's own database. For a device that database
 * has no entry for (PoCL's CPU devices, for one) CLBlast falls back to
 * generic parameters that can be several times slower than the device
 * allows. `clattn tune --variant naive` measures CLBlast kernel parameters
 * on the device, against CLBlast's own, and saves the best set to the tuning
 * database when it beats them. A naive plan made on a context whose
 * database holds a set for its device (platform, device, driver and CLBlast
 * version) passes it to CLBlastOverrideParameters before its first GEMM. A
 * set that is malformed, breaks a rule of CLBlast's kernels or that CLBlast
 * refuses is not applied: the plan runs with the parameters CLBlast had, and
 * the log callback gets a warning that says why.
 *
 * CLBlast's override is process-global per device: it holds for every later
 * CLBlast GEMM on that device in the process, the application's own calls
 * and the naive plans of other contexts included, until another override
 * replaces it. clattn never restores CLBlast's own parameters, since
 * CLBlast's C API cannot read them back.
 *
 * The text form of a set: kernels separated by ';', each written
 * "KERNEL:NAME=VALUE,NAME=VALUE,..." with every parameter CLBlast 1.5 has for
 * it, in any order, each kernel at most once:
 *   Xgemm        GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM
 *                STRN VWM VWN (the indirect GEMM kernel)
 *   XgemmDirect  KWID MDIMAD MDIMCD NDIMBD NDIMCD PADA PADB VWMD VWND WGD
 *   GemmRoutine  XGEMM_MIN_INDIRECT_SIZE (GEMMs with m*n*k below its cube
 *                run the direct kernel)
 * Values are decimal integers up to 1048576. The rules checked are those of
 * CLBlast's own tuner, e.g. MWG a multiple of MDIMC*VWM, KWG of KWI, work
 * groups within the device's limit and local memory within its size.
 */

/** Room for the text form of a set of CLBlast parameters, with its NUL. */
#define CLATTN_GEMM_TUNING_SIZE 1024

/**
 * The set of CLBlast parameters the tuning database holds for the context's
 * device, in canonical text form (every kernel's parameters in CLBlast's
 * order). *origin (may be NULL) is DATABASE when there is one; else DEFAULT,
 * and params is "". Returns OK, or INVALID_ARGUMENT (NULL params, or size
 * under CLATTN_GEMM_TUNING_SIZE).
 */
CLATTN_API clattn_status clattn_gemm_tuning_lookup(clattn_context *ctx, char *params,
                                                   size_t size,
                                                   clattn_tuning_origin *origin);

/**
 * Records params as the measured best set of CLBlast parameters for the
 * context's device, replacing any set saved for it, with gflops as a note.
 * The file is rewritten atomically. Returns OK, INVALID_ARGUMENT (params
 * malformed or illegal on the device; the message says which rule) or
 * IO_ERROR.
 */
CLATTN_API clattn_status clattn_gemm_tuning_save(clattn_context *ctx, const char *params,
                                                 double gflops);

/**
 * Checks params and passes each of its kernels' parameters to
 * CLBlastOverrideParameters for the context's device, in single precision:
 * process-global, see above. Returns OK, INVALID_ARGUMENT (malformed or
 * illegal; nothing is passed to CLBlast) or BLAS_ERROR (CLBlast refused a
 * kernel's set, named in the message with CLBlast's status; the kernels
 * before it in params are overridden).
 */
CLATTN_API clattn_status clattn_gemm_tuning_apply(clattn_context *ctx,
                                                  const char *params);

#ifdef __cplusplus
}
#endif

#endif /* CLATTN_H */
