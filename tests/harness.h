/*
 * Shared pieces of the cmocka tests: one context per test executable, a seed
 * printed for replay, and a check that runs a problem and compares it with
 * the float64 reference.
 */
#ifndef CLATTN_TEST_HARNESS_H
#define CLATTN_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "clattn.h"
#include "problem.h"

/* The context that a group setup made, and the seed of this run. */
extern clattn_context *harness_ctx;
extern uint64_t harness_seed;

/* Group setup and teardown: pick the seed, make and destroy harness_ctx. */
int harness_setup(void **state);
int harness_teardown(void **state);

/* Passes clattn's warnings and errors to stderr. */
void harness_log(void *cookie, clattn_log_level level, const char *message);

/* Writes a one-line description of a problem, for replay. */
void harness_describe(const clattn_desc *desc, char *buf, size_t size);

/*
 * Fails the test, naming the call, the status and the context's message, when
 * status is not want.
 */
void harness_expect(clattn_context *ctx, clattn_status status, clattn_status want,
                    const char *call, const char *file, int line);

#define EXPECT_STATUS(ctx, call, want)                                                   \
    harness_expect((ctx), (call), (want), #call, __FILE__, __LINE__)
#define EXPECT_OK(ctx, call) EXPECT_STATUS(ctx, call, CLATTN_OK)

/*
 * Checks an output (storage form) and a log-sum-exp (NULL to skip) against
 * the reference: errors within tolerance, and rows that see no key (for
 * linear attention, also rows with no weight) exactly 0.
 */
void harness_check_output(const problem *p, const void *o, const float *lse);

/*
 * Runs a plan of ctx once through device buffers, with the outputs poisoned
 * with NaN on the device and the uploads in the wait list, and checks it.
 * When user_event is not NULL it joins the wait list: the call must return
 * while the event is pending, and the run must not finish before it.
 */
void harness_run_buffers(clattn_context *ctx, clattn_plan *plan, const problem *p,
                         cl_event user_event);

/*
 * Runs a plan of ctx once through clattn_plan_run_host and checks it. Without
 * want_lse the log-sum-exp array passed must come back untouched.
 */
void harness_run_host(clattn_context *ctx, clattn_plan *plan, const problem *p);

/*
 * The whole check for one descriptor on ctx: makes the problem and the plan,
 * runs it through device buffers and through host memory, and checks both.
 */
void harness_check(clattn_context *ctx, const clattn_desc *desc);

#endif
