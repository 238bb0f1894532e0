/*
 * What the tune command shares between its command line (tune.c) and its
 * search (tune_search.c).
 */
#ifndef CLATTN_TUNE_H
#define CLATTN_TUNE_H

#include <stddef.h>

#include "clattn.h"
#include "problem.h"
#include "workload.h"

#define TUNE_CHECKS 2
#define TUNE_SHAPES 2
#define TUNE_MAX_CANDIDATES 256
#define TUNE_MAX_HEAD_DIMS 8

typedef struct tune_options {
    clattn_variant variant; /* tiled, window, linear or naive */
    int head_dims[TUNE_MAX_HEAD_DIMS], n_head_dims;
    int v_head_dim; /* 0: each head dim */
    clattn_dtype dtypes[2];
    int n_dtypes;
    double budget_s;
    const char *device;
    int export_rows, dry_run;

    /* Test hooks: a space that replaces the library's (n_test > 0), and a
     * candidate whose output is spoiled before it is checked (block_q > 0). */
    clattn_tuning test_space[TUNE_MAX_CANDIDATES];
    int n_test;
    clattn_tuning corrupt;
} tune_options;

/*
 * One configuration (variant, dtype and head sizes, in key) and its
 * problems: small ones with a float64 reference that every candidate must
 * match, and the prefill and decode shapes it is timed on.
 */
typedef struct tune_problems {
    clattn_desc key;
    problem check[TUNE_CHECKS];
    workload check_buf[TUNE_CHECKS];
    clattn_desc timed[TUNE_SHAPES];
    workload timed_buf[TUNE_SHAPES];
} tune_problems;

/* "cpu:16x32": the form candidates take in messages and test options. */
void tune_name(const clattn_tuning *t, char *text, size_t size);

/* "database", "built-in" or "default". */
const char *tune_origin_name(clattn_tuning_origin origin);

/* "tiled f32 D=64 Dv=64": a configuration in messages. */
void tune_label(const clattn_desc *key, char *text, size_t size);

/* Seconds on a monotonic clock. */
double tune_now(void);

/*
 * Searches one configuration until deadline (tune_now() seconds; no
 * candidate starts after it), prints what it found and saves the best.
 * Returns 0, or CLI_FAILED after printing why.
 */
int tune_search(const tune_options *o, clattn_context *ctx, tune_problems *pr,
                double deadline);

/*
 * Runs plan once on p's inputs (uploaded in w) into a poisoned output and
 * compares the output with the float64 reference; spoil makes a correct
 * output wrong first, as a broken kernel would. Returns 0, or -1 with why
 * filled in.
 */
int tune_check_plan(clattn_context *ctx, clattn_plan *plan, const problem *p,
                    const workload *w, int spoil, char *why, size_t size);

/* "STEP: STATUS: the library's detail", cut at its first line. */
void tune_library_why(const clattn_context *ctx, const char *step, clattn_status status,
                      char *why, size_t size);

/*
 * The search of CLBlast's GEMM parameters for the naive variant (see
 * tune_naive.c), until deadline. Returns 0, or CLI_FAILED after printing why.
 */
int tune_naive(const tune_options *o, clattn_context *ctx, double deadline);

/* --dry-run for the naive variant: where its search starts, and its space. */
int tune_naive_dry_run(const tune_options *o, clattn_context *ctx);

#endif /* CLATTN_TUNE_H */
