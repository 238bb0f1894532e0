/*
 * Accuracy of the linear variant against the float64 reference of linear
 * attention. Built once per kernel shape (TEST_SHAPE). Causal runs go in
 * chunks of keys, so lengths fall on both sides of chunk edges, and the
 * lengths differ so that i' = i + kv_len - q_len is not a chunk multiple.
 * The CPU kernel gives each key/value head one work-item when there are at
 * least four per compute unit, and splits a head's columns among several
 * when there are fewer (most cases here): both are covered.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"

typedef struct test_case {
    int batch, q_heads, kv_heads, q_len, kv_len, head_dim, v_head_dim;
    clattn_dtype dtype;
    clattn_layout layout;
    clattn_feature_map feature_map;
    float scale;
    int causal;
    int block_q, block_k;
} test_case;

static void run_case(void **state)
{
    const test_case *c = *state;
    clattn_desc d;

    clattn_desc_init(&d);
    d.batch = c->batch ? c->batch : d.batch;
    d.q_heads = c->q_heads ? c->q_heads : d.q_heads;
    d.kv_heads = c->kv_heads;
    d.q_len = c->q_len;
    d.kv_len = c->kv_len;
    d.head_dim = c->head_dim;
    d.v_head_dim = c->v_head_dim;
    d.dtype = c->dtype;
    d.layout = c->layout;
    d.feature_map = c->feature_map;
    d.scale = c->scale;
    d.causal = c->causal;
    d.block_q = c->block_q;
    d.block_k = c->block_k;
    d.variant = CLATTN_VARIANT_LINEAR;
    d.kernel_shape = TEST_SHAPE;

    harness_check(harness_ctx, &d);
}

/* clang-format off */
#define CASE(name, ...) {#name, run_case, NULL, NULL, &(test_case){__VA_ARGS__}}
/* clang-format on */
#define RELU .feature_map = CLATTN_FEATURE_RELU

static const struct CMUnitTest feature_maps[] = {
    CASE(elu1, .q_len = 100, .head_dim = 64),
    CASE(elu1_causal, .q_len = 100, .head_dim = 64, .causal = 1),
    CASE(relu, .q_len = 100, .head_dim = 64, RELU),
    CASE(relu_causal, .q_len = 100, .head_dim = 64, RELU, .causal = 1),
    /* With one dimension, relu zeroes about half the queries and keys: those
     * rows have no weight at all and must come out exactly zero. */
    CASE(relu_dim1_causal, .q_len = 200, .head_dim = 1, RELU, .causal = 1),
    /* Linear attention has no softmax scale: setting one changes nothing. */
    CASE(scale_is_ignored, .q_len = 70, .head_dim = 64, .scale = 3.0f, .causal = 1),
};

static const struct CMUnitTest odd_lengths[] = {
    CASE(len1, .q_len = 1, .head_dim = 64, .causal = 1),
    CASE(len7_relu, .q_len = 7, .head_dim = 64, RELU),
    CASE(len33_causal, .q_len = 33, .head_dim = 64, .causal = 1),
    CASE(len63_causal_relu, .q_len = 63, .head_dim = 64, .causal = 1, RELU),
    CASE(len65_causal, .q_len = 65, .head_dim = 64, .causal = 1),
    CASE(len100_bshd, .q_len = 100, .head_dim = 64, .layout = CLATTN_LAYOUT_BSHD),
    CASE(len128_causal, .q_len = 128, .head_dim = 64, .causal = 1),
    CASE(len257_causal_relu, .q_len = 257, .head_dim = 64, .causal = 1, RELU),
    CASE(len1000_causal, .q_heads = 2, .q_len = 1000, .head_dim = 64, .causal = 1),
};

static const struct CMUnitTest lengths_differ[] = {
    CASE(cross_q7_kv100, .q_len = 7, .kv_len = 100, .head_dim = 64),
    CASE(cross_q100_kv7_relu, .q_len = 100, .kv_len = 7, .head_dim = 64, RELU),
    CASE(causal_q33_kv100, .q_len = 33, .kv_len = 100, .head_dim = 64, .causal = 1),
    /* The first 67 rows see no key at all. */
    CASE(causal_q100_kv33, .q_len = 100, .kv_len = 33, .head_dim = 64, .causal = 1),
    CASE(causal_q100_kv170_relu, .q_len = 100, .kv_len = 170, .head_dim = 64, .causal = 1,
         RELU),
    CASE(causal_q300_kv130_bshd, .q_len = 300, .kv_len = 130, .head_dim = 64, .causal = 1,
         .layout = CLATTN_LAYOUT_BSHD),
    CASE(decode_gqa_q1_kv5000, .q_heads = 8, .kv_heads = 2, .q_len = 1, .kv_len = 5000,
         .head_dim = 128, .causal = 1),
    CASE(decode_q1_kv1000_relu, .q_len = 1, .kv_len = 1000, .head_dim = 64, .causal = 1,
         RELU),
    CASE(decode_q1_kv777_noncausal, .q_len = 1, .kv_len = 777, .head_dim = 64),
};

static const struct CMUnitTest head_sizes[] = {
    CASE(dim32_vdim64, .q_len = 90, .head_dim = 32, .v_head_dim = 64, .causal = 1),
    CASE(dim40_vdim24_relu, .q_len = 70, .head_dim = 40, .v_head_dim = 24, RELU),
    CASE(dim64_vdim32_causal, .q_len = 100, .head_dim = 64, .v_head_dim = 32,
         .causal = 1),
    CASE(dim80, .q_len = 50, .head_dim = 80, .causal = 1),
    CASE(dim128_vdim64_relu, .q_len = 129, .head_dim = 128, .v_head_dim = 64, .causal = 1,
         RELU),
    CASE(dim256_vdim128, .q_len = 80, .head_dim = 256, .v_head_dim = 128, .causal = 1),
    CASE(dim256_vdim256, .q_len = 40, .head_dim = 256),
};

static const struct CMUnitTest heads_and_batch[] = {
    CASE(gqa_8_over_2_causal, .q_heads = 8, .kv_heads = 2, .q_len = 100, .head_dim = 64,
         .causal = 1),
    CASE(mqa_4_over_1_relu, .q_heads = 4, .kv_heads = 1, .q_len = 77, .head_dim = 64,
         RELU),
    CASE(batch3_bshd_causal, .batch = 3, .q_heads = 2, .q_len = 50, .head_dim = 64,
         .layout = CLATTN_LAYOUT_BSHD, .causal = 1),
    CASE(batch2_gqa_bshd_cross, .batch = 2, .q_heads = 4, .kv_heads = 2, .q_len = 60,
         .kv_len = 90, .head_dim = 64, .layout = CLATTN_LAYOUT_BSHD),
};

static const struct CMUnitTest storage[] = {
    CASE(f16_len100, .q_len = 100, .head_dim = 64, .dtype = CLATTN_F16),
    CASE(f16_gqa_bshd_causal, .batch = 2, .q_heads = 4, .kv_heads = 2, .q_len = 90,
         .kv_len = 120, .head_dim = 128, .v_head_dim = 64, .dtype = CLATTN_F16,
         .layout = CLATTN_LAYOUT_BSHD, .causal = 1),
    CASE(f16_relu_causal_q130_kv70, .q_len = 130, .kv_len = 70, .head_dim = 64,
         .dtype = CLATTN_F16, .causal = 1, RELU),
};

/* Sixteen key/value heads: one work-item per head in the CPU kernel, on
 * devices of up to four compute units. */
static const struct CMUnitTest many_heads[] = {
    CASE(heads16_causal, .batch = 2, .q_heads = 8, .kv_heads = 8, .q_len = 150,
         .head_dim = 64, .causal = 1),
    CASE(heads16_q90_kv200_causal_bshd, .batch = 2, .q_heads = 8, .kv_heads = 8,
         .q_len = 90, .kv_len = 200, .head_dim = 64, .causal = 1,
         .layout = CLATTN_LAYOUT_BSHD),
    CASE(heads16_q200_kv90_causal_relu, .batch = 2, .q_heads = 8, .kv_heads = 8,
         .q_len = 200, .kv_len = 90, .head_dim = 64, .causal = 1, RELU),
    CASE(heads16_noncausal_q70_kv130, .batch = 2, .q_heads = 8, .kv_heads = 8,
         .q_len = 70, .kv_len = 130, .head_dim = 64),
    CASE(heads16_gqa_dim128_causal, .batch = 2, .q_heads = 32, .kv_heads = 8,
         .q_len = 130, .head_dim = 128, .causal = 1),
    CASE(heads16_dim40_vdim24_causal, .batch = 2, .q_heads = 8, .kv_heads = 8,
         .q_len = 77, .head_dim = 40, .v_head_dim = 24, .causal = 1),
    CASE(heads16_f16_causal, .batch = 2, .q_heads = 8, .kv_heads = 8, .q_len = 100,
         .head_dim = 64, .dtype = CLATTN_F16, .causal = 1),
};

/* Chunks and row blocks other than the default 64 keys and 16 rows: chunk
 * edges and block edges fall elsewhere, and blocks of rows end inside a
 * chunk. */
static const struct CMUnitTest tiles[] = {
    CASE(chunk32_q100_kv170_causal, .q_len = 100, .kv_len = 170, .head_dim = 64,
         .causal = 1, .block_k = 32),
    CASE(chunk8_q45_causal, .q_len = 45, .head_dim = 64, .causal = 1, .block_k = 8),
    CASE(chunk128_q300_causal, .q_len = 300, .head_dim = 64, .causal = 1, .block_k = 128),
    CASE(chunk256_q600_kv520_causal, .q_len = 600, .kv_len = 520, .head_dim = 32,
         .causal = 1, .block_k = 256),
    CASE(chunk128_dim256_causal, .q_len = 200, .head_dim = 256, .causal = 1,
         .block_k = 128),
    CASE(chunk40_heads16_causal, .batch = 2, .q_heads = 8, .kv_heads = 8, .q_len = 130,
         .head_dim = 64, .causal = 1, .block_k = 40),
    CASE(rows8_q100_causal, .q_len = 100, .head_dim = 64, .causal = 1, .block_q = 8),
    CASE(rows24_q100_kv77_causal, .q_len = 100, .kv_len = 77, .head_dim = 64, .causal = 1,
         .block_q = 24),
    CASE(rows32_chunk32_q150_causal, .q_len = 150, .head_dim = 64, .causal = 1,
         .block_q = 32, .block_k = 32),
    CASE(rows32_noncausal_q70, .q_len = 70, .head_dim = 64, .block_q = 32),
    CASE(rows24_heads16_q61_causal, .batch = 2, .q_heads = 8, .kv_heads = 8, .q_len = 61,
         .head_dim = 64, .causal = 1, .block_q = 24),
};

/* The CPU kernel keeps phi of a chunk's keys in private memory: chunks of
 * more than 32768 floats are refused up front, with a message. */
static void cpu_chunk_limit(void **state)
{
    clattn_plan *plan = NULL;
    clattn_desc d;

    (void)state;
    clattn_desc_init(&d);
    d.q_len = d.kv_len = 1000;
    d.head_dim = 256;
    d.variant = CLATTN_VARIANT_LINEAR;
    d.kernel_shape = TEST_SHAPE;
    d.causal = 1;
    d.block_k = 256;
    if (TEST_SHAPE != CLATTN_SHAPE_CPU) {
        EXPECT_OK(harness_ctx, clattn_plan_create(&plan, harness_ctx, &d));
        clattn_plan_destroy(plan);
        return;
    }
    EXPECT_STATUS(harness_ctx, clattn_plan_create(&plan, harness_ctx, &d),
                  CLATTN_INVALID_ARGUMENT);
    assert_null(plan);
}

static const struct CMUnitTest limits[] = {
    cmocka_unit_test(cpu_chunk_limit),
};

/* 256 chunks of keys: the running state must not drift in fp32. */
static const struct CMUnitTest large[] = {
    CASE(len16384_causal, .q_len = 16384, .head_dim = 64, .causal = 1),
    CASE(len16384, .q_len = 16384, .head_dim = 64),
    CASE(len4096_causal_relu_gqa, .q_heads = 4, .kv_heads = 2, .q_len = 4096,
         .head_dim = 64, .causal = 1, RELU),
};

#define GROUP(tests)                                                                     \
    _cmocka_run_group_tests(#tests, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL)

int main(void)
{
    int failed = 0;

    if (harness_setup(NULL) != 0)
        return 1;

    failed += GROUP(feature_maps);
    failed += GROUP(odd_lengths);
    failed += GROUP(lengths_differ);
    failed += GROUP(head_sizes);
    failed += GROUP(heads_and_batch);
    failed += GROUP(storage);
    failed += GROUP(many_heads);
    failed += GROUP(tiles);
    failed += GROUP(limits);
    failed += GROUP(large);

    harness_teardown(NULL);
    return failed != 0;
}
