/*
 * Three yardsticks for `clattn bench`: the device's SGEMM rate through
 * CLBlast, its FMA peak and its memory read rate through small kernels of our
 * own.
 */
#ifndef CLATTN_PEAK_H
#define CLATTN_PEAK_H

#include "clattn.h"

/* The size of the square SGEMM that gives the GEMM rate. */
#define GEMM_SIZE 1024

/* The median rate of a square CLBlast SGEMM in GFLOP/s. Returns 0 or 1. */
int peak_gemm_gflops(clattn_context *ctx, double *gflops);

/* The rate of independent float8 multiply-add chains. Returns 0 or 1. */
int peak_fma_gflops(clattn_context *ctx, double *gflops);

/*
 * The rate at which the device reads a buffer far larger than its caches, in
 * GB/s: the ceiling of decode, which reads every key and value once.
 */
int peak_read_gbps(clattn_context *ctx, double *gbps);

/*
 * Device milliseconds between the start of first and the end of last, both
 * finished events on a profiling queue; negative when either lacks times.
 */
double peak_event_ms(cl_event first, cl_event last);

#endif /* CLATTN_PEAK_H */
