/*
 * The work of one problem on a device, shared by the bench and tune
 * commands: its useful floating-point operations, random inputs in device
 * buffers, and an output poisoned before each checked run.
 */
#ifndef CLATTN_WORKLOAD_H
#define CLATTN_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "clattn.h"
#include "problem.h"

typedef struct workload {
    cl_mem q, k, v, o;
    size_t o_bytes;
} workload;

/* Unmasked (query, key) pairs of one head, counted as the header defines masks. */
double workload_pairs(const clattn_desc *d);

/*
 * Useful operations: 2*B*Hq*(D+Dv) per unmasked pair; for the linear
 * variant, its chunked algorithm's state products and in-chunk pairs.
 */
double workload_flops(const clattn_desc *d);

/*
 * Bytes of K and V the problem must read at least once: every key of the
 * union of the rows' bands, in storage precision. Decode is bound by them.
 */
double workload_kv_bytes(const clattn_desc *d);

/*
 * Uploads host inputs (q, k, v in storage form, with their sizes) and makes
 * the output buffer. Returns 0, or CLI_FAILED after printing why, naming
 * command.
 */
int workload_upload(clattn_context *ctx, const char *command, const clattn_desc *d,
                    const void *const host[3], const size_t bytes[3], workload *w);

/* Same, with the inputs of a reference problem. */
int workload_problem(clattn_context *ctx, const char *command, const problem *p,
                     workload *w);

/* Same, with pseudo-random inputs in [-1, 1) drawn from seed. */
int workload_random(clattn_context *ctx, const char *command, const clattn_desc *d,
                    uint64_t seed, workload *w);

/* Fills the output with NaN so that a run that writes nothing cannot pass. */
cl_int workload_poison(clattn_context *ctx, const clattn_desc *d, const workload *w);

/* Releases the buffers; safe on a zeroed struct, which it leaves zeroed. */
void workload_release(workload *w);

#endif /* CLATTN_WORKLOAD_H */
