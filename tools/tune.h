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
    clattn_variant variant; /* tiled or window */
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

#endif /* CLATTN_TUNE_H */
