/*
 * Threads: plans of one context run from four threads at once, and plans
 * made from several threads at once share the program cache correctly.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

#define THREADS 4
#define RUNS 50

typedef struct worker {
    clattn_context *ctx;
    clattn_desc desc;
    problem p;
    clattn_plan *plan;
    int failures;
    clattn_status first_status;
} worker;

/* Each thread a different variant or kernel shape, and different sizes. */
static void worker_desc(int t, clattn_desc *d)
{
    static const clattn_variant variants[THREADS] = {
        CLATTN_VARIANT_TILED, CLATTN_VARIANT_NAIVE, CLATTN_VARIANT_WINDOW,
        CLATTN_VARIANT_TILED};

    clattn_desc_init(d);
    d->variant = variants[t];
    d->kernel_shape = t == 3 ? CLATTN_SHAPE_GPU : CLATTN_SHAPE_AUTO;
    d->q_heads = 2 + t % 2 * 2;
    d->kv_heads = 2;
    d->q_len = 33 + 11 * t;
    d->kv_len = 41 + 7 * t;
    d->head_dim = 16 + 8 * t;
    d->causal = t % 2;
    if (d->variant == CLATTN_VARIANT_WINDOW)
        d->window_left = 9;
}

static void *run_many(void *arg)
{
    worker *w = arg;
    void *o = malloc(w->p.o_count * w->p.elem_size);

    for (int r = 0; r < RUNS && o; r++) {
        clattn_status status;

        problem_poison(o, w->p.o_count, w->desc.dtype);
        status = clattn_plan_run_host(w->plan, w->p.q, w->p.k, w->p.v, o, NULL);
        if (status != CLATTN_OK && !w->first_status)
            w->first_status = status;
        if (status != CLATTN_OK ||
            !(problem_output_error(&w->p, o) <= problem_tolerance(&w->p)))
            w->failures++;
    }
    if (!o)
        w->failures = RUNS;
    free(o);
    return NULL;
}

static void plans_run_from_threads(void **state)
{
    worker w[THREADS];
    pthread_t threads[THREADS];

    (void)state;
    for (int t = 0; t < THREADS; t++) {
        w[t] = (worker){.ctx = harness_ctx};
        worker_desc(t, &w[t].desc);
        assert_int_equal(problem_init(&w[t].p, &w[t].desc, harness_seed + t), 0);
        EXPECT_OK(harness_ctx, clattn_plan_create(&w[t].plan, harness_ctx, &w[t].desc));
    }
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, run_many, &w[t]), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);

    for (int t = 0; t < THREADS; t++) {
        if (w[t].failures)
            print_error("thread %d: %d of %d runs wrong (first status %s)\n", t,
                        w[t].failures, RUNS, clattn_status_name(w[t].first_status));
        assert_int_equal(w[t].failures, 0);
        clattn_plan_destroy(w[t].plan);
        problem_free(&w[t].p);
    }
}

/* Every thread makes a plan that all share, then one of its own. */
typedef struct maker {
    clattn_context *ctx;
    clattn_desc shared, own;
    clattn_plan *plans[2];
    clattn_status status[2];
} maker;

static void *make_plans(void *arg)
{
    maker *m = arg;

    m->status[0] = clattn_plan_create(&m->plans[0], m->ctx, &m->shared);
    m->status[1] = clattn_plan_create(&m->plans[1], m->ctx, &m->own);
    return NULL;
}

static void small_tiled(clattn_desc *d, int head_dim)
{
    clattn_desc_init(d);
    d->variant = CLATTN_VARIANT_TILED;
    d->q_len = 37;
    d->kv_len = 45;
    d->head_dim = head_dim;
}

static void plans_made_from_threads(void **state)
{
    clattn_context_options options;
    clattn_context *ctx = NULL;
    pthread_t threads[THREADS];
    maker m[THREADS];
    clattn_stats stats;

    (void)state;
    clattn_context_options_init(&options);
    options.log = harness_log;
    EXPECT_OK(NULL, clattn_context_create(&ctx, &options));
    for (int t = 0; t < THREADS; t++) {
        m[t] = (maker){.ctx = ctx};
        small_tiled(&m[t].shared, 48);
        small_tiled(&m[t].own, 8 + 8 * t);
    }
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, make_plans, &m[t]), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);

    /* One program per configuration, however the threads raced. */
    EXPECT_OK(ctx, clattn_context_stats(ctx, &stats));
    assert_int_equal(stats.programs_compiled + stats.programs_from_disk, 1 + THREADS);
    assert_int_equal(stats.programs_from_memory, THREADS - 1);
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < 2; i++) {
            problem p;

            EXPECT_OK(ctx, m[t].status[i]);
            assert_int_equal(
                problem_init(&p, i ? &m[t].own : &m[t].shared, harness_seed + t), 0);
            harness_run_host(ctx, m[t].plans[i], &p);
            clattn_plan_destroy(m[t].plans[i]);
            problem_free(&p);
        }
    }
    clattn_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plans_run_from_threads),
        cmocka_unit_test(plans_made_from_threads),
    };

    return cmocka_run_group_tests(tests, harness_setup, harness_teardown);
}
