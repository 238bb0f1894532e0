/*
 * One attention problem with random inputs and a float64 reference, shared by
 * the tests, `clattn bench` and the benchmarks. Not part of the installed
 * library.
 */
#ifndef CLATTN_PROBLEM_H
#define CLATTN_PROBLEM_H

#include <stddef.h>
#include <stdint.h>

#include "clattn.h"

typedef struct problem {
    clattn_desc desc;   /* copied in; scale resolved (never 0) */
    uint64_t seed;
    size_t q_count, k_count, v_count, o_count, lse_count; /* elements */
    size_t elem_size;   /* 4 for F32, 2 for F16 */

    /* Inputs in storage form (float or uint16_t half bits), ready to upload. */
    void *q, *k, *v;

    /* The same inputs as floats (the exact values the device will see). */
    float *qf, *kf, *vf;

    /* The float64 reference, in the output layout, and the log-sum-exp
     * [batch, q_heads, q_len] (-INFINITY for rows that see no key). The
     * linear variant has no log-sum-exp: there lse_ref holds the log of each
     * row's normalizer phi(q_i) . z_i, -INFINITY where the output row must
     * be exactly zero (no key seen, or a zero normalizer under relu). */
    double *o_ref, *lse_ref;
} problem;

/*
 * Fills inputs with fresh pseudo-random values from seed and computes the
 * reference: of linear attention when desc->variant is LINEAR (with
 * desc->feature_map), else of softmax attention. desc must be valid
 * (clattn_plan_create would accept it). Returns 0, or -1 when memory runs out
 * (p is then left empty).
 */
int problem_init(problem *p, const clattn_desc *desc, uint64_t seed);

/* Frees what problem_init allocated. Safe on a zeroed struct. */
void problem_free(problem *p);

/*
 * Relative error by norm of an output (storage form, output layout) against
 * the reference: ||o - ref|| / max(||ref||, tiny). Any NaN in o yields
 * INFINITY, so a poisoned output that was never written cannot pass.
 */
double problem_output_error(const problem *p, const void *o);

/*
 * Compares a log-sum-exp array with the reference: -INFINITY must match
 * exactly, finite values by relative error by norm. Returns that error, or
 * INFINITY on any mismatch or NaN.
 */
double problem_lse_error(const problem *p, const float *lse);

/* The error bound for the problem's dtype: 1e-4 for F32, 2e-3 for F16. */
double problem_tolerance(const problem *p);

/*
 * The seed for a run: CLATTN_TEST_SEED when set (decimal), else fresh from the
 * clock and pid. Printed by the caller so that a failure can be replayed.
 */
uint64_t problem_seed_from_env(void);

/* IEEE half conversions (round to nearest even), independent of the device. */
uint16_t problem_float_to_half(float f);
float problem_half_to_float(uint16_t h);

/* Fills n elements of storage with NaN (fp32 or fp16 NaN bits). */
void problem_poison(void *data, size_t n, clattn_dtype dtype);

#endif /* CLATTN_PROBLEM_H */
