/*
 * NaN and Inf in the inputs, and logits of +-1.6e4, for the naive variant
 * and both shapes of the tiled variant: every output element is compared
 * with a float64 reference computed here from the exact inputs, NaN for NaN
 * and Inf for Inf. For linear attention, where NaN goes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define LQ 40
#define LK 50
#define D 16
#define UNWRITTEN 12345.0f

typedef struct inputs {
    clattn_desc desc;
    float q[LQ * D], k[LK * D], v[LK * D];
} inputs;

static void make_inputs(inputs *in, clattn_variant variant, clattn_kernel_shape shape,
                        int causal)
{
    problem p;

    clattn_desc_init(&in->desc);
    in->desc.q_len = LQ;
    in->desc.kv_len = LK;
    in->desc.head_dim = D;
    in->desc.causal = causal;
    in->desc.variant = variant;
    in->desc.kernel_shape = shape;
    assert_int_equal(problem_init(&p, &in->desc, harness_seed), 0);
    memcpy(in->q, p.qf, sizeof(in->q));
    memcpy(in->k, p.kf, sizeof(in->k));
    memcpy(in->v, p.vf, sizeof(in->v));
    problem_free(&p);
}

/* Output row i in float64, the way the header defines it. */
static void reference_row(const inputs *in, int i, double *out)
{
    const double scale = in->desc.scale ? in->desc.scale : 1.0 / sqrt(D);
    int last = in->desc.causal ? i + LK - LQ : LK - 1;
    double s[LK], max = -INFINITY, sum = 0.0;

    memset(out, 0, D * sizeof(*out));
    for (int j = 0; j <= last; j++) {
        s[j] = 0.0;
        for (int c = 0; c < D; c++)
            s[j] += (double)in->q[i * D + c] * in->k[j * D + c];
        s[j] *= scale;
        max = fmax(max, s[j]);
    }
    for (int j = 0; j <= last; j++) {
        double w = exp(s[j] - max);

        sum += w;
        for (int c = 0; c < D; c++)
            out[c] += w * in->v[j * D + c];
    }
    for (int c = 0; c < D && last >= 0; c++)
        out[c] /= sum;
}

static int element_ok(float got, double want, double row_norm)
{
    if (isnan(want))
        return isnan(got);
    if (isinf(want))
        return got == want;
    return fabs(got - want) <= 1e-4 * row_norm + 1e-30;
}

/* Runs the inputs into o, which starts out holding UNWRITTEN. */
static void run_inputs(const inputs *in, float *o)
{
    clattn_plan *plan = NULL;

    for (int i = 0; i < LQ * D; i++)
        o[i] = UNWRITTEN;
    EXPECT_OK(harness_ctx, clattn_plan_create(&plan, harness_ctx, &in->desc));
    EXPECT_OK(harness_ctx, clattn_plan_run_host(plan, in->q, in->k, in->v, o, NULL));
    clattn_plan_destroy(plan);
}

/* Runs the inputs and compares every element; returns the NaN rows seen. */
static int run_and_compare(const inputs *in)
{
    float o[LQ * D];
    double want[D];
    int nan_rows = 0;

    run_inputs(in, o);

    for (int i = 0; i < LQ; i++) {
        double norm = 0.0;

        reference_row(in, i, want);
        for (int c = 0; c < D; c++)
            norm += isfinite(want[c]) ? want[c] * want[c] : 0.0;
        norm = sqrt(norm);
        nan_rows += isnan(want[0]);
        for (int c = 0; c < D; c++) {
            if (element_ok(o[i * D + c], want[c], norm))
                continue;
            print_error("row %d column %d: got %g, want %g\n", i, c, o[i * D + c],
                        want[c]);
            fail();
        }
    }
    return nan_rows;
}

typedef struct config {
    clattn_variant variant;
    clattn_kernel_shape shape;
} config;

static const config configs[] = {
    {CLATTN_VARIANT_NAIVE, CLATTN_SHAPE_AUTO},
    {CLATTN_VARIANT_TILED, CLATTN_SHAPE_CPU},
    {CLATTN_VARIANT_TILED, CLATTN_SHAPE_GPU},
};

#define FOR_EACH_CONFIG(c)                                                               \
    for (const config *c = configs; c < configs + sizeof(configs) / sizeof(*c); c++)

/* A NaN in row 5 of Q makes exactly that output row NaN. */
static void nan_in_q(void **state)
{
    (void)state;
    FOR_EACH_CONFIG(c)
    {
        inputs in;

        make_inputs(&in, c->variant, c->shape, 0);
        in.q[5 * D + 3] = NAN;
        assert_int_equal(run_and_compare(&in), 1);
    }
}

/* A NaN in key 27 reaches the rows that see it, and only those: with a
 * causal mask, rows 17 and later. */
static void nan_in_k(void **state)
{
    (void)state;
    FOR_EACH_CONFIG(c)
    {
        inputs in;

        make_inputs(&in, c->variant, c->shape, 1);
        in.k[27 * D] = NAN;
        assert_int_equal(run_and_compare(&in), LQ - 17);
    }
}

/* A NaN or Inf in value 3, column 2, reaches column 2 of every row. */
static void nonfinite_in_v(void **state)
{
    (void)state;
    FOR_EACH_CONFIG(c)
    {
        inputs in;

        make_inputs(&in, c->variant, c->shape, 0);
        in.v[3 * D + 2] = NAN;
        run_and_compare(&in);
        in.v[3 * D + 2] = INFINITY;
        run_and_compare(&in);
    }
}

/* An infinite key element gives +Inf scores to some rows (which become NaN,
 * as Inf - Inf does in the reference) and -Inf to others (which give that
 * key no weight); an infinite query element does the same within its row. */
static void inf_in_q_and_k(void **state)
{
    (void)state;
    FOR_EACH_CONFIG(c)
    {
        inputs in;
        int nan_rows;

        make_inputs(&in, c->variant, c->shape, 0);
        in.k[9 * D + 1] = INFINITY;
        nan_rows = run_and_compare(&in);
        assert_true(nan_rows > 0 && nan_rows < LQ);
        in.k[9 * D + 1] = 0.0f;
        in.q[4 * D] = -INFINITY;
        run_and_compare(&in);
    }
}

/*
 * Scores between 14336 and 16384 in size, all of one sign, from entries in
 * {-1, 0, 1} and a power-of-two scale, so that they are exact in fp32: an
 * online softmax that did not subtract its running maximum would overflow,
 * or divide zero by zero.
 */
static void extreme_logits(void **state)
{
    (void)state;
    FOR_EACH_CONFIG(c)
    {
        for (int sign = -1; sign <= 1; sign += 2) {
            inputs in;

            make_inputs(&in, c->variant, c->shape, 1);
            in.desc.scale = 1024.0f;
            for (int i = 0; i < LQ * D; i++)
                in.q[i] = (float)sign;
            for (int i = 0; i < LK * D; i++)
                in.k[i] = (i * 7 + i / D) % 11 == 0 ? 0.0f : 1.0f;
            assert_int_equal(run_and_compare(&in), 0);
        }
    }
}

/* Rows of a linear run that came out NaN (every element of a row must be
 * NaN, or none); the others must be finite. */
static int linear_nan_rows(const inputs *in)
{
    float o[LQ * D];
    int nan_rows = 0;

    run_inputs(in, o);

    for (int i = 0; i < LQ; i++) {
        int nans = 0;

        for (int c = 0; c < D; c++) {
            nans += isnan(o[i * D + c]);
            if (!isnan(o[i * D + c]) && !(fabsf(o[i * D + c]) < UNWRITTEN)) {
                print_error("row %d column %d: %g\n", i, c, o[i * D + c]);
                fail();
            }
        }
        if (nans != 0 && nans != D) {
            print_error("row %d: %d of %d columns NaN\n", i, nans, D);
            fail();
        }
        nan_rows += nans == D;
    }
    return nan_rows;
}

/*
 * Linear attention: a NaN in a query, of either sign, spoils its own row;
 * one in a key spoils the rows whose prefix holds it (causal: rows 17 on,
 * with key positions shifted by LK - LQ = 10), or every row without a mask.
 */
static void linear_nan(void **state)
{
    static const clattn_kernel_shape shapes[] = {CLATTN_SHAPE_CPU, CLATTN_SHAPE_GPU};

    (void)state;
    for (int s = 0; s < 2; s++) {
        for (int causal = 0; causal <= 1; causal++) {
            inputs in;

            make_inputs(&in, CLATTN_VARIANT_LINEAR, shapes[s], causal);
            in.q[5 * D + 3] = NAN;
            in.q[8 * D + 1] = -NAN;
            assert_int_equal(linear_nan_rows(&in), 2);
            in.q[5 * D + 3] = in.q[8 * D + 1] = 0.0f;
            in.k[27 * D] = NAN;
            assert_int_equal(linear_nan_rows(&in), causal ? LQ - 17 : LQ);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nan_in_q),       cmocka_unit_test(nan_in_k),
        cmocka_unit_test(nonfinite_in_v), cmocka_unit_test(inf_in_q_and_k),
        cmocka_unit_test(extreme_logits), cmocka_unit_test(linear_nan),
    };

    return cmocka_run_group_tests(tests, harness_setup, harness_teardown);
}
