/*
 * The search of `clattn tune` for one configuration. Every candidate is first
 * checked against the float64 reference on small problems with odd lengths;
 * the ones that pass are timed on a prefill and a decode shape, and the best
 * by the geometric mean of their GFLOP/s goes to the tuning database.
 */
#include "tune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* Timed runs per shape after the warm-up; their median is the time. */
#define REPEAT 5

/* A warm-up this many times slower than the fastest so far cannot win, so
 * the candidate keeps that one run instead of its median. */
#define PRUNE_FACTOR 3.0

/* How many of the best are timed again, side by side, before choosing. */
#define FINALISTS 3

typedef enum cand_state { UNTRIED, MEASURED, DISCARDED, STOPPED } cand_state;

typedef struct candidate {
    clattn_tuning t;
    cand_state state;
    double gflops[TUNE_SHAPES], score, cost_s;
} candidate;

/* Where the search starts: the current choice and the built-in one. */
typedef struct starts {
    clattn_tuning current, builtin;
    clattn_tuning_origin origin;
} starts;

/* The search of one configuration. */
typedef struct search {
    const tune_options *o;
    clattn_context *ctx;
    tune_problems *pr;
    char label[96];
    candidate c[TUNE_MAX_CANDIDATES];
    int count, done, discarded, best;
    clattn_kernel_shape natural;
    double fastest_ms[TUNE_SHAPES];
    double start, deadline;
    int tty;
} search;

double tune_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int over_budget(const search *s)
{
    return tune_now() >= s->deadline;
}

static int same_tuning(const clattn_tuning *a, const clattn_tuning *b)
{
    return a->kernel_shape == b->kernel_shape && a->block_q == b->block_q &&
           a->block_k == b->block_k;
}

static int find(const search *s, const clattn_tuning *t)
{
    for (int i = 0; i < s->count; i++) {
        if (same_tuning(&s->c[i].t, t))
            return i;
    }
    return -1;
}

/* Clears the progress bar, so that a line can be printed in its place. */
static void clear_bar(const search *s)
{
    if (s->tty)
        fputs("\r\033[K", stderr);
}

static void best_text(const search *s, char *text, size_t size)
{
    char name[48];

    if (s->best < 0) {
        snprintf(text, size, "none yet");
        return;
    }
    tune_name(&s->c[s->best].t, name, sizeof name);
    snprintf(text, size, "%s %.1f GFLOP/s", name, s->c[s->best].score);
}

static void result_text(const candidate *c, char *text, size_t size)
{
    char name[48];

    tune_name(&c->t, name, sizeof name);
    if (c->state == MEASURED)
        snprintf(text, size, "%s %.1f GFLOP/s in %.1f s", name, c->score, c->cost_s);
    else
        snprintf(text, size, "%s %s", name,
                 c->state == DISCARDED ? "discarded" : "stopped by the budget");
}

/*
 * On a terminal one bar is redrawn in place, also when a candidate starts,
 * since one may take seconds; elsewhere one line per finished candidate.
 */
static void show_progress(const search *s, const candidate *c, int finished)
{
    char best[96], text[128], name[48];
    double left = s->deadline - tune_now();

    if (!s->tty && !finished)
        return;
    best_text(s, best, sizeof best);
    result_text(c, text, sizeof text);
    tune_name(&c->t, name, sizeof name);
    clear_bar(s);
    if (s->tty)
        fprintf(stderr, "clattn: tune: %s: %d/%d done, best %s, %.0f s left%s%s",
                s->label, s->done, s->count, best, left > 0 ? left : 0.0,
                finished ? "" : ", trying ", finished ? "" : name);
    else
        fprintf(stderr, "clattn: tune: %s: %d/%d: %s; best %s; %.0f s left\n", s->label,
                s->done, s->count, text, best, left > 0 ? left : 0.0);
    fflush(stderr);
}

static void discard(search *s, candidate *c, const char *why)
{
    char name[48];

    c->state = DISCARDED;
    s->discarded++;
    tune_name(&c->t, name, sizeof name);
    clear_bar(s);
    fprintf(stderr, "clattn: tune: %s: discarded %s: %s\n", s->label, name, why);
}

void tune_library_why(const clattn_context *ctx, const char *step, clattn_status status,
                      char *why, size_t size)
{
    const char *detail = clattn_context_message(ctx);
    int n = (int)strcspn(detail, "\n");

    snprintf(why, size, "%s: %s: %.*s", step, clattn_status_name(status),
             n > 200 ? 200 : n, detail);
}

static void library_why(const search *s, const char *step, clattn_status status,
                        char *why, size_t size)
{
    tune_library_why(s->ctx, step, status, why, size);
}

static clattn_status make_plan(search *s, const candidate *c, const clattn_desc *d,
                               clattn_plan **plan)
{
    clattn_desc mine = *d;

    mine.kernel_shape = c->t.kernel_shape;
    mine.block_q = c->t.block_q;
    mine.block_k = c->t.block_k;
    return clattn_plan_create(plan, s->ctx, &mine);
}

/* Makes a correct output wrong, as a broken kernel would. */
static void corrupt(const problem *p, void *o)
{
    if (p->desc.dtype == CLATTN_F16) {
        uint16_t *h = o;

        h[0] = problem_float_to_half(problem_half_to_float(h[0]) + 1.0f);
    } else {
        ((float *)o)[0] += 1.0f;
    }
}

static int read_output(clattn_context *ctx, const workload *w, void *o)
{
    return clEnqueueReadBuffer(clattn_context_queue(ctx), w->o, CL_TRUE, 0, w->o_bytes, o,
                               0, NULL, NULL) == CL_SUCCESS
               ? 0
               : -1;
}

int tune_check_plan(clattn_context *ctx, clattn_plan *plan, const problem *p,
                    const workload *w, int spoil, char *why, size_t size)
{
    void *o = malloc(w->o_bytes);
    clattn_status status = CLATTN_OK;
    double error = INFINITY;
    int rc = -1;

    if (o == NULL) {
        snprintf(why, size, "out of host memory");
        return -1;
    }
    if (workload_poison(ctx, &p->desc, w) != CL_SUCCESS)
        snprintf(why, size, "clEnqueueFillBuffer failed");
    else if ((status = clattn_plan_run(plan, w->q, w->k, w->v, w->o, NULL, 0, NULL,
                                       NULL)) != CLATTN_OK)
        tune_library_why(ctx, "run failed", status, why, size);
    else if (read_output(ctx, w, o) != 0)
        snprintf(why, size, "reading the output failed");
    else
        rc = 0;

    if (rc == 0 && spoil)
        corrupt(p, o);
    if (rc == 0 && !((error = problem_output_error(p, o)) <= problem_tolerance(p))) {
        snprintf(why, size,
                 "wrong results: relative error %.3g over %.1g on Lq=%d Lk=%d "
                 "(replay with CLATTN_TEST_SEED=%llu)",
                 error, problem_tolerance(p), p->desc.q_len, p->desc.kv_len,
                 (unsigned long long)p->seed);
        rc = -1;
    }
    free(o);
    return rc;
}

/* Runs the candidate once on a poisoned output and compares it with the
 * reference. Returns 0, or -1 with why filled in. */
static int check_once(search *s, const candidate *c, clattn_plan *plan, int i, char *why,
                      size_t size)
{
    const int spoil = s->o->corrupt.block_q > 0 && same_tuning(&c->t, &s->o->corrupt);

    return tune_check_plan(s->ctx, plan, &s->pr->check[i], &s->pr->check_buf[i], spoil,
                           why, size);
}

static int check(search *s, candidate *c)
{
    char why[512];

    for (int i = 0; i < TUNE_CHECKS; i++) {
        clattn_plan *plan = NULL;
        clattn_status status = make_plan(s, c, &s->pr->check[i].desc, &plan);
        int rc;

        if (status != CLATTN_OK) {
            library_why(s, "plan creation failed", status, why, sizeof why);
            discard(s, c, why);
            return -1;
        }
        rc = check_once(s, c, plan, i, why, sizeof why);
        clattn_plan_destroy(plan);
        if (rc != 0) {
            discard(s, c, why);
            return -1;
        }
    }
    return 0;
}

/* The median of the timed runs, or the warm-up alone when it shows the
 * candidate cannot win. Returns OK, or the status of a failed run; *stopped
 * is set when the budget ran out on the way. */
static clattn_status time_shape(search *s, clattn_plan *plan, int j, double *ms,
                                int *stopped)
{
    const workload *w = &s->pr->timed_buf[j];
    double times[REPEAT];
    clattn_status status;
    int n = 0;

    status = clattn_plan_run_timed(plan, w->q, w->k, w->v, w->o, NULL, ms);
    if (status != CLATTN_OK || s->fastest_ms[j] <= 0 ||
        *ms <= PRUNE_FACTOR * s->fastest_ms[j]) {
        for (; n < REPEAT && status == CLATTN_OK; n++) {
            if (over_budget(s) && s->best >= 0) {
                *stopped = 1;
                return CLATTN_OK;
            }
            status = clattn_plan_run_timed(plan, w->q, w->k, w->v, w->o, NULL, &times[n]);
        }
    }
    if (status == CLATTN_OK && n > 0)
        *ms = cli_median(times, n);
    return status;
}

/* Times the candidate on every shape. Returns 0, or -1 when it was discarded
 * or stopped. */
static int time_candidate(search *s, candidate *c, double ms[TUNE_SHAPES])
{
    char why[512];

    for (int j = 0; j < TUNE_SHAPES; j++) {
        clattn_plan *plan = NULL;
        clattn_status status = make_plan(s, c, &s->pr->timed[j], &plan);
        int stopped = 0;

        if (status == CLATTN_OK)
            status = time_shape(s, plan, j, &ms[j], &stopped);
        if (status != CLATTN_OK)
            library_why(s, plan ? "timing failed" : "plan creation failed", status, why,
                        sizeof why);
        clattn_plan_destroy(plan);
        if (status != CLATTN_OK) {
            discard(s, c, why);
            return -1;
        }
        if (stopped) {
            c->state = STOPPED;
            return -1;
        }
        c->gflops[j] = workload_flops(&s->pr->timed[j]) / (ms[j] * 1e6);
    }
    return 0;
}

static void record(search *s, candidate *c, const double ms[TUNE_SHAPES])
{
    double log_sum = 0.0;

    for (int j = 0; j < TUNE_SHAPES; j++) {
        log_sum += log(c->gflops[j]);
        if (s->fastest_ms[j] <= 0 || ms[j] < s->fastest_ms[j])
            s->fastest_ms[j] = ms[j];
    }
    c->score = exp(log_sum / TUNE_SHAPES);
    c->state = MEASURED;
    if (s->best < 0 || c->score > s->c[s->best].score)
        s->best = (int)(c - s->c);
}

static void evaluate(search *s, candidate *c)
{
    double start = tune_now(), ms[TUNE_SHAPES];

    show_progress(s, c, 0);
    if (check(s, c) == 0 && time_candidate(s, c, ms) == 0)
        record(s, c, ms);
    c->cost_s = tune_now() - start;
    if (c->state != STOPPED)
        s->done++;
    show_progress(s, c, 1);
}

static int try_index(search *s, int i)
{
    if (i < 0 || s->c[i].state != UNTRIED || over_budget(s))
        return 0;
    evaluate(s, &s->c[i]);
    return 1;
}

static int block(const clattn_tuning *t, int axis)
{
    return axis == 0 ? t->block_q : t->block_k;
}

/* The adjacent value of block_q (axis 0) or block_k (axis 1) in the space,
 * below (dir -1) or above (dir 1), with the other block unchanged. */
static int neighbour(const search *s, const clattn_tuning *t, int axis, int dir)
{
    int found = -1;

    for (int i = 0; i < s->count; i++) {
        const clattn_tuning *u = &s->c[i].t;

        if (u->kernel_shape != t->kernel_shape || block(u, !axis) != block(t, !axis))
            continue;
        if ((block(u, axis) - block(t, axis)) * dir <= 0)
            continue;
        if (found < 0 || (block(u, axis) - block(&s->c[found].t, axis)) * dir < 0)
            found = i;
    }
    return found;
}

static int best_of_shape(const search *s, clattn_kernel_shape shape)
{
    int best = -1;

    for (int i = 0; i < s->count; i++) {
        const candidate *c = &s->c[i];

        if (c->state == MEASURED && c->t.kernel_shape == shape &&
            (best < 0 || c->score > s->c[best].score))
            best = i;
    }
    return best;
}

/* An untried neighbour of the best of the natural shape, else of the best of
 * the other shape; -1 when both are local optima. */
static int guided_next(const search *s)
{
    const clattn_kernel_shape shapes[2] = {
        s->natural, s->natural == CLATTN_SHAPE_CPU ? CLATTN_SHAPE_GPU : CLATTN_SHAPE_CPU};

    for (int k = 0; k < 2; k++) {
        int b = best_of_shape(s, shapes[k]);

        for (int m = 0; b >= 0 && m < 4; m++) {
            int n = neighbour(s, &s->c[b].t, m / 2, m % 2 ? 1 : -1);

            if (n >= 0 && s->c[n].state == UNTRIED)
                return n;
        }
    }
    return -1;
}

/* The expected cost of the untried candidates, from the measured ones of the
 * same shape (of any shape, slot 0, when there are none). */
static double estimate_rest(const search *s)
{
    double sum[3] = {0, 0, 0}, count[3] = {0, 0, 0}, total = 0.0;

    for (int i = 0; i < s->count; i++) {
        const candidate *c = &s->c[i];

        if (c->state == MEASURED || c->state == DISCARDED) {
            sum[c->t.kernel_shape] += c->cost_s;
            count[c->t.kernel_shape]++;
            sum[0] += c->cost_s;
            count[0]++;
        }
    }
    for (int i = 0; i < s->count && count[0] > 0; i++) {
        int shape = s->c[i].t.kernel_shape;

        if (s->c[i].state == UNTRIED)
            total += count[shape] > 0 ? sum[shape] / count[shape] : sum[0] / count[0];
    }
    return total;
}

/* The other shape's candidate nearest the library's defaults for it (CPU 16
 * rows by 32 keys, GPU 64 by 32), so that both shapes are measured early. */
static int other_start(const search *s)
{
    const clattn_kernel_shape shape =
        s->natural == CLATTN_SHAPE_CPU ? CLATTN_SHAPE_GPU : CLATTN_SHAPE_CPU;
    const double q0 = shape == CLATTN_SHAPE_CPU ? 16 : 64, k0 = 32;
    double nearest = INFINITY;
    int found = -1;

    for (int i = 0; i < s->count; i++) {
        const clattn_tuning *t = &s->c[i].t;
        double d = fabs(log2(t->block_q / q0)) + fabs(log2(t->block_k / k0));

        if (t->kernel_shape == shape && d < nearest) {
            nearest = d;
            found = i;
        }
    }
    return found;
}

/*
 * The current and the built-in choices first, and one candidate of the other
 * shape; then every candidate when the rest fits in the budget, else a walk
 * over neighbours of the best. Returns 1 for an exhaustive search.
 */
/* The best measured candidates, best first, and the built-in one. */
static int finalists(const search *s, const starts *st, int *out, int max)
{
    int n = 0, builtin = find(s, &st->builtin);

    for (int k = 0; k < FINALISTS && n < max; k++) {
        int top = -1;

        for (int i = 0; i < s->count; i++) {
            int taken = 0;

            for (int j = 0; j < n; j++)
                taken |= out[j] == i;
            if (!taken && s->c[i].state == MEASURED &&
                (top < 0 || s->c[i].score > s->c[top].score))
                top = i;
        }
        if (top >= 0)
            out[n++] = top;
    }
    for (int j = 0; j < n; j++)
        if (out[j] == builtin)
            builtin = -1;
    if (builtin >= 0 && s->c[builtin].state == MEASURED && n < max)
        out[n++] = builtin;
    return n;
}

/*
 * Candidates timed minutes apart saw different loads on a shared machine.
 * The finalists are timed again side by side, in alternating order, and
 * each keeps its best score: load only ever slows a run down.
 */
static void final_round(search *s, const starts *st)
{
    int pick[FINALISTS + 1], n = finalists(s, st, pick, FINALISTS + 1);
    double ms[TUNE_SHAPES];

    if (n < 2)
        return;
    for (int round = 0; round < 2 && !over_budget(s); round++) {
        for (int k = 0; k < n && !over_budget(s); k++) {
            candidate *c = &s->c[pick[round ? n - 1 - k : k]];
            double before = c->score;

            if (c->state != MEASURED)
                continue;
            if (time_candidate(s, c, ms) != 0) {
                /* Stopped by the budget, it keeps what it measured before. */
                if (c->state == STOPPED)
                    c->state = MEASURED;
                continue;
            }
            record(s, c, ms);
            c->score = c->score > before ? c->score : before;
        }
    }
    s->best = -1;
    for (int i = 0; i < s->count; i++)
        if (s->c[i].state == MEASURED &&
            (s->best < 0 || s->c[i].score > s->c[s->best].score))
            s->best = i;
}

static int run_search(search *s, const starts *st)
{
    double rest, left;
    int exhaustive;

    try_index(s, find(s, &st->current));
    try_index(s, find(s, &st->builtin));
    try_index(s, other_start(s));

    rest = estimate_rest(s);
    left = s->deadline - tune_now();
    exhaustive = rest <= left;
    clear_bar(s);
    fprintf(stderr,
            "clattn: tune: %s: %s search of the rest (%d of %d candidates, about "
            "%.0f s; %.0f s of budget left)\n",
            s->label, exhaustive ? "exhaustive" : "guided", s->count - s->done, s->count,
            rest, left > 0 ? left : 0.0);

    if (exhaustive) {
        for (int i = 0; i < s->count && !over_budget(s); i++)
            try_index(s, i);
    } else {
        while (try_index(s, guided_next(s)))
            ;
    }
    final_round(s, st);
    return exhaustive;
}

static int find_space(const tune_options *o, clattn_context *ctx, const clattn_desc *key,
                      search *s)
{
    clattn_tuning space[TUNE_MAX_CANDIDATES];
    clattn_status status;
    int count = o->n_test;

    if (o->n_test > 0)
        memcpy(space, o->test_space, sizeof(clattn_tuning) * (size_t)o->n_test);
    else if ((status = clattn_tuning_space(ctx, key, space, TUNE_MAX_CANDIDATES,
                                           &count)) != CLATTN_OK)
        return cli_library_error(status, ctx);
    if (count > TUNE_MAX_CANDIDATES)
        count = TUNE_MAX_CANDIDATES;
    if (count == 0)
        return cli_error("tune: %s: the device accepts no candidate", s->label);

    s->count = count;
    for (int i = 0; i < count; i++) {
        memset(&s->c[i], 0, sizeof s->c[i]);
        s->c[i].t = space[i];
    }
    s->natural = space[0].kernel_shape;
    return 0;
}

/* What the built-in table gives, whatever the database holds: a second
 * handle on the same device whose database is empty. */
static int builtin_lookup(clattn_context *ctx, const clattn_desc *key, clattn_tuning *t)
{
    clattn_context_options options;
    clattn_context *plain = NULL;
    clattn_status status;

    clattn_context_options_init(&options);
    options.tuning_file = "/dev/null";
    status = clattn_context_wrap(&plain, clattn_context_cl_context(ctx),
                                 clattn_context_device(ctx), clattn_context_queue(ctx),
                                 &options);
    if (status == CLATTN_OK)
        status = clattn_tuning_lookup(plain, key, t, NULL);
    clattn_context_destroy(plain);
    return status == CLATTN_OK ? 0 : -1;
}

static void print_candidate(const char *what, const candidate *c, double best)
{
    char name[48];

    tune_name(&c->t, name, sizeof name);
    if (c->state != MEASURED) {
        printf("  %-9s %-12s %s\n", what, name,
               c->state == DISCARDED ? "discarded" : "not measured");
        return;
    }
    printf("  %-9s %-12s %8.1f GFLOP/s (prefill %.1f, decode %.1f)", what, name, c->score,
           c->gflops[0], c->gflops[1]);
    if (best > 0 && c->score > 0)
        printf(", best is %.2fx", best / c->score);
    putchar('\n');
}

static void print_start(const search *s, const char *what, const clattn_tuning *t,
                        double best)
{
    int at = find(s, t);
    candidate missing;

    memset(&missing, 0, sizeof missing);
    missing.t = *t;
    print_candidate(what, at >= 0 ? &s->c[at] : &missing, best);
}

static void print_summary(const search *s, const starts *st, int exhaustive)
{
    const candidate *best = &s->c[s->best];
    char name[48];

    tune_name(&best->t, name, sizeof name);
    printf("%s: %s, %s search, %.0f s\n", s->label, name,
           exhaustive ? "exhaustive" : "guided", tune_now() - s->start);
    print_candidate("best", best, 0.0);
    print_start(s, "built-in", &st->builtin, best->score);
    if (st->origin == CLATTN_TUNING_DATABASE)
        print_start(s, "database", &st->current, best->score);
    printf("  %d of %d candidates measured, %d discarded%s\n", s->done - s->discarded,
           s->count, s->discarded, s->done < s->count ? ", the others not tried" : "");
}

static int save_best(search *s, const clattn_desc *key)
{
    const candidate *best = &s->c[s->best];
    clattn_status status = clattn_tuning_save(s->ctx, key, &best->t, best->score);

    if (status != CLATTN_OK)
        return cli_library_error(status, s->ctx);
    printf("  saved to %s\n", clattn_tuning_file(s->ctx));
    fflush(stdout);
    return 0;
}

static int find_starts(search *s, starts *st)
{
    clattn_status status;

    status = clattn_tuning_lookup(s->ctx, &s->pr->key, &st->current, &st->origin);
    if (status != CLATTN_OK)
        return cli_library_error(status, s->ctx);
    if (builtin_lookup(s->ctx, &s->pr->key, &st->builtin) != 0)
        st->builtin = st->current;
    return 0;
}

int tune_search(const tune_options *o, clattn_context *ctx, tune_problems *pr,
                double deadline)
{
    search *s = calloc(1, sizeof *s);
    int exhaustive, rc = CLI_FAILED;
    starts st;

    if (s == NULL)
        return cli_error("tune: out of host memory");
    s->o = o;
    s->ctx = ctx;
    s->pr = pr;
    s->best = -1;
    s->start = tune_now();
    s->deadline = deadline;
    s->tty = isatty(STDERR_FILENO);
    tune_label(&pr->key, s->label, sizeof s->label);

    if (find_space(o, ctx, &pr->key, s) == 0 && find_starts(s, &st) == 0) {
        exhaustive = run_search(s, &st);
        clear_bar(s);
        if (s->best >= 0) {
            print_summary(s, &st, exhaustive);
            rc = save_best(s, &pr->key);
        } else {
            cli_error("tune: %s: no candidate passed the checks%s; nothing saved",
                      s->label, s->done == 0 ? " (none was tried)" : "");
        }
    }
    free(s);
    return rc;
}
