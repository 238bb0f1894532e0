/*
 * A context, a plan and a run made and destroyed 1000 times: process memory
 * must stay flat after a warm-up, and no buffer clattn made may outlive
 * them. One configuration throughout, so that after the first round every
 * program comes from the disk cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

#define ROUNDS 1000
#define WARM_UP 100
#define SLACK_KB (20 * 1024)

/* The sanitizers keep freed memory in quarantine, so RSS grows there by
 * design; their own leak check stands in for this one. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_CHECK 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_CHECK 0
#endif
#endif
#ifndef RSS_CHECK
#define RSS_CHECK 1
#endif

static long rss_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");

    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static void one_round(const problem *p, void *o)
{
    clattn_context_options options;
    clattn_context *ctx = NULL;
    clattn_plan *plan = NULL;

    clattn_context_options_init(&options);
    options.log = harness_log;
    EXPECT_OK(NULL, clattn_context_create(&ctx, &options));
    EXPECT_OK(ctx, clattn_plan_create(&plan, ctx, &p->desc));
    EXPECT_OK(ctx, clattn_plan_run_host(plan, p->q, p->k, p->v, o, NULL));
    clattn_plan_destroy(plan);
    clattn_context_destroy(ctx);
}

static void thousand_contexts(void **state)
{
    long warm = 0, now;
    clattn_desc d;
    problem p;
    void *o;

    (void)state;
    clattn_desc_init(&d);
    d.q_heads = 2;
    d.q_len = 24;
    d.head_dim = 16;
    d.causal = 1;
    assert_int_equal(problem_init(&p, &d, harness_seed), 0);
    o = malloc(p.o_count * p.elem_size);
    assert_non_null(o);

    for (int round = 0; round < ROUNDS; round++) {
        if (round == WARM_UP)
            warm = rss_kb();
        one_round(&p, o);
    }
    assert_true(problem_output_error(&p, o) <= problem_tolerance(&p));
    now = rss_kb();
    printf("VmRSS %ld kB after %d rounds, %ld kB after %d; %ld buffers live\n", warm,
           WARM_UP, now, ROUNDS, clattn__live_buffers());
    assert_int_equal(clattn__live_buffers(), 0);
    if (RSS_CHECK)
        assert_true(warm > 0 && now - warm < SLACK_KB);
    free(o);
    problem_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thousand_contexts),
    };

    return cmocka_run_group_tests(tests, harness_setup, harness_teardown);
}
