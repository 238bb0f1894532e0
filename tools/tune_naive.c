/*
 * `clattn tune --variant naive`: the search of CLBlast's GEMM parameters for
 * the naive variant. CLBlast's own parameters are timed first, since after
 * the first override this process cannot return to them. Every candidate is
 * then passed to CLBlast, checked through naive plans against the float64
 * reference, and timed on the GEMMs the naive variant runs: the scores Q K^T
 * (M=L, N=L, K=D, B transposed) and their product with V (M=L, N=Dv, K=L),
 * at a short and a long L. The best by the geometric mean of its GFLOP/s is
 * saved when it beats CLBlast's own.
 */
#include "tune.h"

#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_CANDIDATES 48
#define LENGTHS 2
#define MAX_SHAPES (2 * LENGTHS * TUNE_MAX_HEAD_DIMS)
#define REPEAT 5
#define PRUNE_FACTOR 3.0
#define FINALISTS 3

/* A set must beat CLBlast's own by this much to be saved: less is noise. */
#define SAVE_MARGIN 1.05

/*
 * GEMMs with m*n*k under the cube of this run CLBlast's direct kernel: with
 * the indirect candidates, the decode GEMMs (M=1) and other small ones stay
 * direct, where the indirect kernel's padding to whole tiles would cost more
 * than its speed saves. The direct candidates set it so high that every
 * GEMM is direct.
 */
#define INDIRECT_FROM 128
#define NEVER_INDIRECT 65536

static const int lengths[LENGTHS] = {256, 2048};

/*
 * The indirect kernel's tiles, most promising first: MWG NWG KWG MDIMC NDIMC
 * VWM VWN. On a PoCL CPU device (2 cores, AVX2) small work-groups with
 * register tiles of 16 by 8 or 8 by 8 and no local memory (SA=SB=0, so no
 * barriers) were fastest. A candidate PoCL has not compiled before costs a
 * minute there, so the order decides what a short budget finds.
 */
static const int indirect[][7] = {
    {128, 64, 16, 8, 8, 8, 8}, {64, 32, 16, 4, 4, 8, 4},   {64, 64, 16, 8, 4, 8, 8},
    {128, 32, 16, 8, 4, 8, 8}, {128, 64, 16, 16, 8, 8, 8}, {64, 32, 32, 4, 4, 8, 4},
    {128, 64, 32, 8, 8, 8, 8}, {64, 64, 16, 8, 8, 8, 8},   {64, 32, 16, 8, 4, 8, 8},
    {64, 64, 16, 4, 4, 8, 8},  {32, 32, 16, 4, 4, 4, 4},   {64, 64, 16, 8, 8, 4, 4},
    {32, 64, 16, 4, 4, 4, 8},  {32, 32, 16, 2, 2, 8, 8},   {64, 16, 16, 4, 2, 8, 8},
    {64, 64, 8, 8, 8, 8, 8},
};

/* The direct kernel's: WGD MDIMCD NDIMCD VWMD VWND. It always stages tiles
 * in local memory, so PoCL runs it with barriers. */
static const int direct[][5] = {{64, 8, 8, 8, 8}, {32, 4, 4, 8, 8}, {16, 2, 2, 8, 8}};

typedef enum state { UNTRIED, MEASURED, DISCARDED, STOPPED } state;

typedef struct naive_candidate {
    char params[CLATTN_GEMM_TUNING_SIZE]; /* "" for CLBlast's own */
    char name[64];
    state state;
    double gflops[MAX_SHAPES], score, cost_s;
} naive_candidate;

/* One GEMM of the naive variant, on the matrices of its second head, so
 * that every operand starts at an offset as it does in a plan. */
typedef struct gemm_shape {
    const char *what; /* "QK" or "PV" */
    int len;
    CLBlastTranspose tb;
    size_t m, n, k, lda, ldb, ldc, a_off, b_off, c_off;
    cl_mem a, b, c;
} gemm_shape;

typedef struct naive_search {
    const tune_options *o;
    clattn_context *ctx, *plain;
    naive_candidate c[MAX_CANDIDATES];
    int count, done, discarded, best, own, current;
    problem check[TUNE_CHECKS];
    workload check_buf[TUNE_CHECKS];
    gemm_shape shapes[MAX_SHAPES];
    int n_shapes;
    cl_mem scores[LENGTHS], ins[LENGTHS], outs[LENGTHS];
    double fastest_s[MAX_SHAPES];
    double start, deadline;
} naive_search;

static const char label[] = "naive GEMMs";

static void add(naive_search *s, const char *name, const char *params)
{
    naive_candidate *c = &s->c[s->count++];

    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->params, sizeof c->params, "%s", params);
}

static void add_indirect(naive_search *s, const int *t, int from)
{
    char name[64], params[CLATTN_GEMM_TUNING_SIZE];

    snprintf(name, sizeof name, "xgemm %dx%dx%d %dx%d v%dx%d", t[0], t[1], t[2], t[3],
             t[4], t[5], t[6]);
    if (from != INDIRECT_FROM)
        snprintf(name + strlen(name), sizeof name - strlen(name), " from %d", from);
    snprintf(params, sizeof params,
             "Xgemm:GEMMK=0,KREG=1,KWG=%d,KWI=2,MDIMA=%d,MDIMC=%d,MWG=%d,NDIMB=%d,"
             "NDIMC=%d,NWG=%d,SA=0,SB=0,STRM=0,STRN=0,VWM=%d,VWN=%d;"
             "GemmRoutine:XGEMM_MIN_INDIRECT_SIZE=%d",
             t[2], t[3], t[3], t[0], t[4], t[4], t[1], t[5], t[6], from);
    add(s, name, params);
}

static void add_direct(naive_search *s, const int *t)
{
    char name[64], params[CLATTN_GEMM_TUNING_SIZE];

    snprintf(name, sizeof name, "direct %d %dx%d v%dx%d", t[0], t[1], t[2], t[3], t[4]);
    snprintf(params, sizeof params,
             "XgemmDirect:KWID=2,MDIMAD=%d,MDIMCD=%d,NDIMBD=%d,NDIMCD=%d,PADA=1,PADB=1,"
             "VWMD=%d,VWND=%d,WGD=%d;GemmRoutine:XGEMM_MIN_INDIRECT_SIZE=%d",
             t[1], t[1], t[2], t[2], t[3], t[4], t[0], NEVER_INDIRECT);
    add(s, name, params);
}

/* CLBlast's own first, then the database's set, then four indirect
 * candidates to each direct one: on PoCL the direct kernel's transposed B
 * loads made the scores' GEMM slower than CLBlast's own. */
static void make_space(naive_search *s, const char *current)
{
    const int n_ind = (int)(sizeof indirect / sizeof indirect[0]);
    const int n_dir = (int)(sizeof direct / sizeof direct[0]);

    s->count = 0;
    add(s, "CLBlast's own", "");
    s->own = 0;
    s->current = -1;
    if (current[0] != '\0') {
        s->current = s->count;
        add(s, "database", current);
    }
    for (int i = 0, j = 0; i < n_ind || j < n_dir;) {
        for (int k = 0; k < 4 && i < n_ind; k++)
            add_indirect(s, indirect[i++], INDIRECT_FROM);
        if (j < n_dir)
            add_direct(s, direct[j++]);
    }
}

static int over_budget(const naive_search *s)
{
    return tune_now() >= s->deadline;
}

/* Whether another candidate is expected to finish in the budget: each
 * costs a CLBlast compile, so one started near the end would overrun it. */
static int fits(const naive_search *s)
{
    double sum = 0.0;
    int n = 0;

    for (int i = 0; i < s->count; i++) {
        if (s->c[i].state == MEASURED || s->c[i].state == DISCARDED) {
            sum += s->c[i].cost_s;
            n++;
        }
    }
    return s->deadline - tune_now() >= (n > 0 ? sum / n : 0.0);
}

static void best_text(const naive_search *s, char *text, size_t size)
{
    if (s->best < 0)
        snprintf(text, size, "none yet");
    else
        snprintf(text, size, "%s %.1f GFLOP/s", s->c[s->best].name, s->c[s->best].score);
}

static void show_progress(const naive_search *s, const naive_candidate *c)
{
    char best[128];
    double left = s->deadline - tune_now();

    best_text(s, best, sizeof best);
    if (c->state == MEASURED)
        fprintf(stderr,
                "clattn: tune: %s: %d/%d: %s %.1f GFLOP/s in %.1f s; best %s; %.0f s "
                "left\n",
                label, s->done, s->count, c->name, c->score, c->cost_s, best,
                left > 0 ? left : 0.0);
    else
        fprintf(stderr, "clattn: tune: %s: %d/%d: %s %s; best %s; %.0f s left\n", label,
                s->done, s->count, c->name,
                c->state == DISCARDED ? "discarded" : "stopped by the budget", best,
                left > 0 ? left : 0.0);
    fflush(stderr);
}

static void discard(naive_search *s, naive_candidate *c, const char *why)
{
    c->state = DISCARDED;
    s->discarded++;
    fprintf(stderr, "clattn: tune: %s: discarded %s: %s\n", label, c->name, why);
}

/* Passes the candidate to CLBlast; CLBlast's own needs nothing. */
static int apply(naive_search *s, naive_candidate *c)
{
    char why[512];
    clattn_status status;

    if (c->params[0] == '\0')
        return 0;
    status = clattn_gemm_tuning_apply(s->ctx, c->params);
    if (status == CLATTN_OK)
        return 0;
    tune_library_why(s->ctx, "CLBlast override failed", status, why, sizeof why);
    discard(s, c, why);
    return -1;
}

/* Naive plans on the check problems, made on a context with no database so
 * that plan creation leaves the candidate in place. */
static int check(naive_search *s, naive_candidate *c)
{
    char why[512];

    for (int i = 0; i < TUNE_CHECKS; i++) {
        clattn_plan *plan = NULL;
        clattn_status status = clattn_plan_create(&plan, s->plain, &s->check[i].desc);
        int rc;

        if (status != CLATTN_OK) {
            tune_library_why(s->plain, "plan creation failed", status, why, sizeof why);
            discard(s, c, why);
            return -1;
        }
        rc = tune_check_plan(s->plain, plan, &s->check[i], &s->check_buf[i], 0, why,
                             sizeof why);
        clattn_plan_destroy(plan);
        if (rc != 0) {
            discard(s, c, why);
            return -1;
        }
    }
    return 0;
}

/*
 * One GEMM, timed from its enqueue to the end of the queue. CLBlast's
 * indirect path runs padding and copy kernels around the GEMM and returns
 * only the last one's event, so a profiling event would miss them.
 */
static int time_gemm(naive_search *s, const gemm_shape *g, double *seconds, char *why,
                     size_t size)
{
    cl_command_queue queue = clattn_context_queue(s->ctx);
    cl_event event = NULL;
    double start = tune_now();
    CLBlastStatusCode code =
        CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, g->tb, g->m, g->n, g->k,
                     1.0f, g->a, g->a_off, g->lda, g->b, g->b_off, g->ldb, 0.0f, g->c,
                     g->c_off, g->ldc, &queue, &event);

    if (code != CLBlastSuccess) {
        snprintf(why, size, "CLBlastSgemm of %s at L=%d failed with status %d", g->what,
                 g->len, (int)code);
        return -1;
    }
    clReleaseEvent(event);
    if (clFinish(queue) != CL_SUCCESS) {
        snprintf(why, size, "clFinish after the GEMM of %s at L=%d failed", g->what,
                 g->len);
        return -1;
    }
    *seconds = tune_now() - start;
    return 0;
}

/* The median of REPEAT runs after a warm-up, or the warm-up alone when it
 * shows the candidate cannot win. Returns 0, -1 (why filled in) or 1 when
 * the budget ran out on the way. */
static int time_shape(naive_search *s, int j, double *seconds, char *why, size_t size)
{
    double times[REPEAT];

    if (time_gemm(s, &s->shapes[j], seconds, why, size) != 0)
        return -1;
    if (s->fastest_s[j] > 0 && *seconds > PRUNE_FACTOR * s->fastest_s[j])
        return 0;
    for (int n = 0; n < REPEAT; n++) {
        if (over_budget(s) && s->best >= 0)
            return 1;
        if (time_gemm(s, &s->shapes[j], &times[n], why, size) != 0)
            return -1;
    }
    *seconds = cli_median(times, REPEAT);
    return 0;
}

/* Times the candidate on every shape; its rates change only when all were
 * timed. Returns 0, or -1 when it was discarded or stopped. */
static int time_candidate(naive_search *s, naive_candidate *c, double *seconds)
{
    double gflops[MAX_SHAPES];
    char why[512];

    for (int j = 0; j < s->n_shapes; j++) {
        const gemm_shape *g = &s->shapes[j];
        int rc = time_shape(s, j, &seconds[j], why, sizeof why);

        if (rc < 0) {
            discard(s, c, why);
            return -1;
        }
        if (rc > 0) {
            c->state = STOPPED;
            return -1;
        }
        gflops[j] = 2.0 * (double)g->m * (double)g->n * (double)g->k / seconds[j] / 1e9;
    }
    memcpy(c->gflops, gflops, sizeof(double) * (size_t)s->n_shapes);
    return 0;
}

static void record(naive_search *s, naive_candidate *c, const double *seconds)
{
    double log_sum = 0.0;

    for (int j = 0; j < s->n_shapes; j++) {
        log_sum += log(c->gflops[j]);
        if (s->fastest_s[j] <= 0 || seconds[j] < s->fastest_s[j])
            s->fastest_s[j] = seconds[j];
    }
    c->score = exp(log_sum / s->n_shapes);
    c->state = MEASURED;
    if (s->best < 0 || c->score > s->c[s->best].score)
        s->best = (int)(c - s->c);
}

static void evaluate(naive_search *s, naive_candidate *c)
{
    double start = tune_now(), seconds[MAX_SHAPES];

    if (apply(s, c) == 0 && check(s, c) == 0 && time_candidate(s, c, seconds) == 0)
        record(s, c, seconds);
    c->cost_s = tune_now() - start;
    if (c->state != STOPPED)
        s->done++;
    show_progress(s, c);
}

/* The best measured candidates other than CLBlast's own, best first. */
static int finalists(const naive_search *s, int *out)
{
    int n = 0;

    for (int k = 0; k < FINALISTS; k++) {
        int top = -1;

        for (int i = 0; i < s->count; i++) {
            int taken = i == s->own;

            for (int j = 0; j < n; j++)
                taken |= out[j] == i;
            if (!taken && s->c[i].state == MEASURED &&
                (top < 0 || s->c[i].score > s->c[top].score))
                top = i;
        }
        if (top >= 0)
            out[n++] = top;
    }
    return n;
}

/*
 * The finalists again, side by side in alternating order, each keeping its
 * best score: load on a shared machine only ever slows a run down. CLBlast's
 * own cannot take part, since no override can bring it back.
 */
static void final_round(naive_search *s)
{
    int pick[FINALISTS], n = finalists(s, pick);
    double seconds[MAX_SHAPES];

    if (n < 2)
        return;
    for (int round = 0; round < 2 && !over_budget(s); round++) {
        for (int k = 0; k < n && !over_budget(s); k++) {
            naive_candidate *c = &s->c[pick[round ? n - 1 - k : k]];
            double before = c->score;

            if (c->state != MEASURED || apply(s, c) != 0)
                continue;
            if (time_candidate(s, c, seconds) != 0) {
                if (c->state == STOPPED)
                    c->state = MEASURED;
                continue;
            }
            record(s, c, seconds);
            c->score = c->score > before ? c->score : before;
        }
    }
    s->best = -1;
    for (int i = 0; i < s->count; i++) {
        if (s->c[i].state == MEASURED &&
            (s->best < 0 || s->c[i].score > s->c[s->best].score))
            s->best = i;
    }
}

/* The best indirect candidate with the direct kernel's threshold moved
 * either way, when the space is done and budget is left. */
static void refine(naive_search *s)
{
    const int n_ind = (int)(sizeof indirect / sizeof indirect[0]);
    const int froms[2] = {INDIRECT_FROM / 2, INDIRECT_FROM * 2};
    int b = s->best, base = s->count;

    if (b < 0 || strncmp(s->c[b].name, "xgemm ", 6) != 0 ||
        strstr(s->c[b].name, " from "))
        return;
    for (int i = 0; i < n_ind; i++) {
        char name[64];

        snprintf(name, sizeof name, "xgemm %dx%dx%d %dx%d v%dx%d", indirect[i][0],
                 indirect[i][1], indirect[i][2], indirect[i][3], indirect[i][4],
                 indirect[i][5], indirect[i][6]);
        for (int f = 0; f < 2 && !strcmp(name, s->c[b].name); f++) {
            if (s->count < MAX_CANDIDATES)
                add_indirect(s, indirect[i], froms[f]);
        }
    }
    for (int i = base; i < s->count && fits(s); i++)
        evaluate(s, &s->c[i]);
}

static void run_search(naive_search *s)
{
    fprintf(stderr,
            "clattn: tune: %s: %d candidates, timed on QK and PV at L=%d and %d, each "
            "after a CLBlast compile of 10 s or more; %.0f s of budget\n",
            label, s->count, lengths[0], lengths[1], s->deadline - tune_now());
    for (int i = 0; i < s->count; i++) {
        /* CLBlast's own goes first whatever the budget, as the reference. */
        if (i > 0 && !fits(s))
            break;
        evaluate(s, &s->c[i]);
    }
    if (fits(s))
        refine(s);
    final_round(s);
}

static void print_candidate(const naive_search *s, const char *what,
                            const naive_candidate *c, double best)
{
    printf("  %-14s %-28s ", what, c->name);
    if (c->state != MEASURED) {
        printf("%s\n", c->state == DISCARDED ? "discarded" : "not measured");
        return;
    }
    printf("%7.1f GFLOP/s (", c->score);
    for (int j = 0; j < s->n_shapes; j++)
        printf("%s%s %d %.1f", j ? ", " : "", s->shapes[j].what, s->shapes[j].len,
               c->gflops[j]);
    printf(")");
    if (best > 0 && c->score > 0 && c != &s->c[s->best])
        printf(", best is %.2fx", best / c->score);
    putchar('\n');
}

static void print_summary(const naive_search *s)
{
    const naive_candidate *best = &s->c[s->best];

    printf("%s (CLBlast %d.%d.%d): %s, %.0f s\n", label, CLBLAST_VERSION_MAJOR,
           CLBLAST_VERSION_MINOR, CLBLAST_VERSION_PATCH, best->name,
           tune_now() - s->start);
    print_candidate(s, "best", best, 0.0);
    if (s->best != s->own)
        print_candidate(s, "CLBlast's own", &s->c[s->own], best->score);
    if (s->current >= 0 && s->current != s->best)
        print_candidate(s, "database", &s->c[s->current], best->score);
    printf("  %d of %d candidates measured, %d discarded%s\n", s->done - s->discarded,
           s->count, s->discarded, s->done < s->count ? ", the others not tried" : "");
    if (s->best != s->own)
        printf("  parameters %s\n", best->params);
}

static int save_best(naive_search *s)
{
    const naive_candidate *best = &s->c[s->best], *own = &s->c[s->own];
    clattn_status status;

    if (own->state == MEASURED && best->score < SAVE_MARGIN * own->score) {
        printf("  CLBlast's own parameters are as fast; nothing saved\n");
        return 0;
    }
    status = clattn_gemm_tuning_save(s->ctx, best->params, best->score);
    if (status != CLATTN_OK)
        return cli_library_error(status, s->ctx);
    printf("  saved to %s\n", clattn_tuning_file(s->ctx));
    fflush(stdout);
    return 0;
}

static void release(naive_search *s)
{
    for (int i = 0; i < TUNE_CHECKS; i++) {
        workload_release(&s->check_buf[i]);
        problem_free(&s->check[i]);
    }
    for (int i = 0; i < LENGTHS; i++) {
        if (s->scores[i])
            clReleaseMemObject(s->scores[i]);
        if (s->ins[i])
            clReleaseMemObject(s->ins[i]);
        if (s->outs[i])
            clReleaseMemObject(s->outs[i]);
    }
    clattn_context_destroy(s->plain);
}

/* The configuration's check problems: a GQA prefill whose GEMMs are large
 * enough for the indirect kernel, at a length no tile divides, and a
 * decode row that stays on the direct kernel. */
static int prepare_checks(naive_search *s, uint64_t seed)
{
    const tune_options *o = s->o;

    for (int i = 0; i < TUNE_CHECKS; i++) {
        clattn_desc d;

        clattn_desc_init(&d);
        d.variant = CLATTN_VARIANT_NAIVE;
        d.dtype = o->dtypes[0];
        d.head_dim = o->head_dims[0];
        d.v_head_dim = o->v_head_dim ? o->v_head_dim : d.head_dim;
        d.q_heads = 4;
        d.kv_heads = 2;
        d.q_len = i == 0 ? 333 : 1;
        d.kv_len = 333;
        d.causal = 1;
        if (problem_init(&s->check[i], &d, seed + (uint64_t)i) != 0)
            return cli_error("tune: out of host memory for the reference");
        if (workload_problem(s->ctx, "tune", &s->check[i], &s->check_buf[i]) != 0)
            return CLI_FAILED;
    }
    return 0;
}

static int make_buffer(naive_search *s, size_t floats, cl_mem *mem)
{
    const float fill = 0.01f;
    cl_int err;

    *mem = clCreateBuffer(clattn_context_cl_context(s->ctx), CL_MEM_READ_WRITE,
                          floats * sizeof(float), NULL, &err);
    if (err == CL_SUCCESS)
        err = clEnqueueFillBuffer(clattn_context_queue(s->ctx), *mem, &fill, sizeof fill,
                                  0, floats * sizeof(float), 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return cli_error("tune: cannot make a %zu-byte buffer for the timed GEMMs (%d)",
                         floats * sizeof(float), (int)err);
    return 0;
}

/* The scores of two heads of L by L, and two heads of Q, K, V and O at the
 * largest head size; shapes read and write the second head. */
static int prepare_shapes(naive_search *s)
{
    const tune_options *o = s->o;
    size_t widest = (size_t)o->v_head_dim;

    for (int h = 0; h < o->n_head_dims; h++)
        widest = (size_t)o->head_dims[h] > widest ? (size_t)o->head_dims[h] : widest;
    for (int i = 0; i < LENGTHS; i++) {
        const size_t len = (size_t)lengths[i];

        if (make_buffer(s, 2 * len * len, &s->scores[i]) != 0 ||
            make_buffer(s, 2 * len * widest, &s->ins[i]) != 0 ||
            make_buffer(s, 2 * len * widest, &s->outs[i]) != 0)
            return CLI_FAILED;
        for (int h = 0; h < o->n_head_dims; h++) {
            const size_t d = (size_t)o->head_dims[h];
            const size_t dv = o->v_head_dim ? (size_t)o->v_head_dim : d;
            gemm_shape *qk = &s->shapes[s->n_shapes++], *pv = &s->shapes[s->n_shapes++];

            *qk = (gemm_shape){.what = "QK",
                               .len = lengths[i],
                               .tb = CLBlastTransposeYes,
                               .m = len,
                               .n = len,
                               .k = d,
                               .lda = d,
                               .ldb = d,
                               .ldc = len,
                               .a_off = len * d,
                               .b_off = len * d,
                               .c_off = len * len,
                               .a = s->ins[i],
                               .b = s->ins[i],
                               .c = s->scores[i]};
            *pv = (gemm_shape){.what = "PV",
                               .len = lengths[i],
                               .tb = CLBlastTransposeNo,
                               .m = len,
                               .n = dv,
                               .k = len,
                               .lda = len,
                               .ldb = dv,
                               .ldc = dv,
                               .a_off = len * len,
                               .b_off = len * dv,
                               .c_off = len * dv,
                               .a = s->scores[i],
                               .b = s->ins[i],
                               .c = s->outs[i]};
        }
    }
    return clFinish(clattn_context_queue(s->ctx)) == CL_SUCCESS
               ? 0
               : cli_error("tune: filling the GEMMs' buffers failed");
}

/* A second handle on the device whose database is empty. */
static int open_plain(clattn_context *ctx, clattn_context **plain)
{
    clattn_context_options options;
    clattn_status status;

    clattn_context_options_init(&options);
    options.tuning_file = "/dev/null";
    status = clattn_context_wrap(plain, clattn_context_cl_context(ctx),
                                 clattn_context_device(ctx), clattn_context_queue(ctx),
                                 &options);
    return status == CLATTN_OK ? 0 : cli_library_error(status, NULL);
}

static int current_set(clattn_context *ctx, char *params)
{
    clattn_status status =
        clattn_gemm_tuning_lookup(ctx, params, CLATTN_GEMM_TUNING_SIZE, NULL);

    return status == CLATTN_OK ? 0 : cli_library_error(status, ctx);
}

int tune_naive(const tune_options *o, clattn_context *ctx, double deadline)
{
    naive_search *s = calloc(1, sizeof *s);
    char current[CLATTN_GEMM_TUNING_SIZE];
    int rc = CLI_FAILED;

    if (s == NULL)
        return cli_error("tune: out of host memory");
    s->o = o;
    s->ctx = ctx;
    s->best = -1;
    s->start = tune_now();
    s->deadline = deadline;
    if (current_set(ctx, current) == 0 && open_plain(ctx, &s->plain) == 0 &&
        prepare_checks(s, problem_seed_from_env()) == 0 && prepare_shapes(s) == 0) {
        make_space(s, current);
        run_search(s);
        if (s->best >= 0) {
            print_summary(s);
            rc = save_best(s);
        } else {
            cli_error("tune: %s: no candidate passed the checks; nothing saved", label);
        }
    }
    release(s);
    free(s);
    return rc;
}

int tune_naive_dry_run(const tune_options *o, clattn_context *ctx)
{
    naive_search *s = calloc(1, sizeof *s);
    char current[CLATTN_GEMM_TUNING_SIZE];

    (void)o;
    if (s == NULL)
        return cli_error("tune: out of host memory");
    if (current_set(ctx, current) != 0) {
        free(s);
        return CLI_FAILED;
    }
    make_space(s, current);
    printf("%s: now %s, %d candidates\n", label,
           current[0] ? "database" : "CLBlast's own", s->count);
    for (int i = 0; i < s->count; i++)
        printf("  %s\n", s->c[i].name);
    if (current[0])
        printf("database: %s\n", current);
    free(s);
    return 0;
}
