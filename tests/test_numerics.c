/*
 * Accuracy against the float64 reference. This file is built once per
 * variant and kernel shape (TEST_VARIANT, TEST_SHAPE), so every case runs on
 * each of them. The cases reuse a small set of head sizes, dtypes and masks,
 * because each distinct set of compile-time options costs a program build.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"

typedef struct test_case {
    int batch, q_heads, kv_heads, q_len, kv_len, head_dim, v_head_dim;
    clattn_dtype dtype;
    clattn_layout layout;
    float scale;
    int causal;
    /* Without windowed the window stays unbounded on both sides. */
    int windowed, window_left, window_right;
    int want_lse, block_q, block_k;
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
    d.scale = c->scale;
    d.causal = c->causal;
    if (c->windowed) {
        d.window_left = c->window_left;
        d.window_right = c->window_right;
    }
    d.want_lse = c->want_lse;
    d.block_q = c->block_q;
    d.block_k = c->block_k;
    d.variant = TEST_VARIANT;
    d.kernel_shape = TEST_SHAPE;

    harness_check(harness_ctx, &d);
}

/* clang-format off */
#define CASE(name, ...) {#name, run_case, NULL, NULL, &(test_case){__VA_ARGS__}}
/* clang-format on */
#define WINDOW(left, right) .windowed = 1, .window_left = (left), .window_right = (right)

static const struct CMUnitTest odd_lengths[] = {
    CASE(single_row, .q_len = 1, .head_dim = 64),
    CASE(len7_dim32, .q_len = 7, .head_dim = 32, .want_lse = 1),
    CASE(len33_causal, .q_len = 33, .head_dim = 64, .causal = 1),
    CASE(len100_bshd, .q_len = 100, .head_dim = 64, .layout = CLATTN_LAYOUT_BSHD,
         .want_lse = 1),
    CASE(len257_two_heads, .q_heads = 2, .q_len = 257, .head_dim = 64),
};

static const struct CMUnitTest lengths_differ[] = {
    CASE(cross_q7_kv100, .q_len = 7, .kv_len = 100, .head_dim = 64, .want_lse = 1),
    CASE(cross_q100_kv7, .q_len = 100, .kv_len = 7, .head_dim = 64),
    CASE(causal_q33_kv100, .q_len = 33, .kv_len = 100, .head_dim = 64, .causal = 1,
         .want_lse = 1),
    /* The first 67 rows see no key at all. */
    CASE(causal_q100_kv33, .q_len = 100, .kv_len = 33, .head_dim = 64, .causal = 1,
         .want_lse = 1),
    CASE(decode_gqa_q1_kv1000, .q_heads = 8, .kv_heads = 2, .q_len = 1, .kv_len = 1000,
         .head_dim = 128, .causal = 1, .want_lse = 1),
};

static const struct CMUnitTest head_sizes[] = {
    CASE(dim40, .q_len = 65, .head_dim = 40),
    CASE(dim80_causal, .q_len = 50, .head_dim = 80, .causal = 1),
    CASE(dim96_lse, .q_len = 70, .head_dim = 96, .want_lse = 1),
    CASE(dim128, .q_len = 129, .head_dim = 128),
    CASE(dim256_causal_lse, .q_len = 40, .head_dim = 256, .causal = 1, .want_lse = 1),
    CASE(vdim32_under_dim64, .q_len = 60, .head_dim = 64, .v_head_dim = 32),
    CASE(vdim128_over_dim32, .q_len = 45, .head_dim = 32, .v_head_dim = 128, .causal = 1,
         .want_lse = 1),
};

static const struct CMUnitTest heads_and_batch[] = {
    CASE(gqa_8_over_2, .q_heads = 8, .kv_heads = 2, .q_len = 100, .head_dim = 64,
         .causal = 1),
    CASE(mqa_4_over_1, .q_heads = 4, .kv_heads = 1, .q_len = 77, .head_dim = 64,
         .want_lse = 1),
    CASE(batch3_bshd, .batch = 3, .q_heads = 2, .q_len = 50, .head_dim = 64,
         .layout = CLATTN_LAYOUT_BSHD, .causal = 1, .want_lse = 1),
};

static const struct CMUnitTest storage_and_scale[] = {
    CASE(f16_len100, .q_len = 100, .head_dim = 64, .dtype = CLATTN_F16),
    CASE(f16_gqa_bshd_causal, .batch = 2, .q_heads = 4, .kv_heads = 2, .q_len = 90,
         .kv_len = 120, .head_dim = 128, .dtype = CLATTN_F16,
         .layout = CLATTN_LAYOUT_BSHD, .causal = 1, .want_lse = 1),
    CASE(f16_dim40_vdim24_window, .q_len = 33, .head_dim = 40, .v_head_dim = 24,
         .dtype = CLATTN_F16, WINDOW(5, 2)),
    /* Rows of K and V that are not whole vectors of eight. */
    CASE(f16_dim36_vdim20_causal, .q_heads = 2, .q_len = 45, .head_dim = 36,
         .v_head_dim = 20, .dtype = CLATTN_F16, .causal = 1),
    /* Scores reach the hundreds: exp overflows without the max subtracted. */
    CASE(scale_large, .q_len = 100, .head_dim = 64, .scale = 2.0f),
    CASE(scale_small, .q_len = 100, .head_dim = 64, .scale = 0.01f),
};

static const struct CMUnitTest windows[] = {
    CASE(window_left16, .q_len = 100, .head_dim = 64, WINDOW(16, -1)),
    CASE(window_right8, .q_len = 100, .head_dim = 64, WINDOW(-1, 8)),
    CASE(window_8_8_lse, .q_len = 100, .head_dim = 64, WINDOW(8, 8), .want_lse = 1),
    CASE(window_0_0, .q_len = 50, .head_dim = 64, WINDOW(0, 0)),
    CASE(window_causal_caps_right, .q_len = 100, .head_dim = 64, .causal = 1,
         WINDOW(16, 5)),
    CASE(window_causal_unbounded_left, .q_len = 70, .head_dim = 64, .causal = 1,
         WINDOW(-1, 3), .want_lse = 1),
    CASE(window_cross_q50_kv120, .q_len = 50, .kv_len = 120, .head_dim = 64,
         WINDOW(10, 3), .want_lse = 1),
    /* Rows with i' = i - 80 < 0 see no key. */
    CASE(window_empty_rows, .q_len = 100, .kv_len = 20, .head_dim = 64, WINDOW(0, 0),
         .want_lse = 1),
    CASE(window_wider_than_lengths, .q_len = 60, .head_dim = 64, WINDOW(1000, 1000)),
    CASE(window_decode_mqa, .q_heads = 4, .kv_heads = 1, .q_len = 1, .kv_len = 500,
         .head_dim = 128, .causal = 1, WINDOW(64, -1), .want_lse = 1),
};

/*
 * Bands for the window variant, which visits only the keys inside them, and
 * for the naive variant, whose GEMMs cover only the keys a block of rows
 * sees, so the band's edges must fall right wherever they cut a tile or a
 * block: narrow and wide, lopsided, off the diagonal when the lengths
 * differ, and empty.
 */
static const struct CMUnitTest window_bands[] = {
    CASE(band_1_1_len77_lse, .q_len = 77, .head_dim = 64, WINDOW(1, 1), .want_lse = 1),
    CASE(band_1_0_len1, .q_len = 1, .head_dim = 64, WINDOW(1, 0)),
    CASE(band_0_1_len7, .q_len = 7, .head_dim = 64, WINDOW(0, 1), .want_lse = 1),
    CASE(band_3_20_len257, .q_len = 257, .head_dim = 64, WINDOW(3, 20)),
    CASE(band_20_3_len100_bshd, .q_len = 100, .head_dim = 64, WINDOW(20, 3),
         .layout = CLATTN_LAYOUT_BSHD, .want_lse = 1),
    CASE(band_left_only_wider, .q_len = 33, .head_dim = 64, WINDOW(5000, -1)),
    CASE(band_right_only_wider_lse, .q_len = 33, .head_dim = 64, WINDOW(-1, 5000),
         .want_lse = 1),
    /* Mistral: causal with the W = 32 latest keys, the row's own included. */
    CASE(mistral_causal_31, .q_heads = 2, .q_len = 300, .head_dim = 64, .causal = 1,
         WINDOW(31, -1), .want_lse = 1),
    CASE(longformer_32_32_bshd, .batch = 2, .q_heads = 2, .q_len = 300, .head_dim = 64,
         .layout = CLATTN_LAYOUT_BSHD, WINDOW(32, 32)),
    CASE(cross_q50_kv300, .q_len = 50, .kv_len = 300, .head_dim = 64, WINDOW(16, 4),
         .want_lse = 1),
    CASE(cross_causal_q77_kv300, .q_len = 77, .kv_len = 300, .head_dim = 64, .causal = 1,
         WINDOW(40, 9), .want_lse = 1),
    /* Rows with i' + 5 < 0 see no key; the last rows see the whole band. */
    CASE(cross_q300_kv50_empty_rows, .q_len = 300, .kv_len = 50, .head_dim = 64,
         WINDOW(8, 5), .want_lse = 1),
    CASE(decode_gqa_q1_kv1000, .q_heads = 8, .kv_heads = 2, .q_len = 1, .kv_len = 1000,
         .head_dim = 128, .causal = 1, WINDOW(127, -1), .want_lse = 1),
    CASE(decode_q1_kv1000_wide_right, .q_len = 1, .kv_len = 1000, .head_dim = 64,
         WINDOW(63, 63)),
    CASE(gqa_8_over_2_bshd, .q_heads = 8, .kv_heads = 2, .q_len = 100, .head_dim = 64,
         .layout = CLATTN_LAYOUT_BSHD, WINDOW(16, 16), .want_lse = 1),
    CASE(mqa_4_over_1_causal, .q_heads = 4, .kv_heads = 1, .q_len = 130, .head_dim = 64,
         .causal = 1, WINDOW(10, 0)),
    CASE(f16_bshd_band, .batch = 2, .q_heads = 2, .q_len = 150, .head_dim = 64,
         .dtype = CLATTN_F16, .layout = CLATTN_LAYOUT_BSHD, WINDOW(24, 8), .want_lse = 1),
    CASE(f16_causal_cross, .q_len = 90, .kv_len = 120, .head_dim = 128,
         .dtype = CLATTN_F16, .causal = 1, WINDOW(17, -1)),
    CASE(vdim32_band, .q_len = 100, .head_dim = 64, .v_head_dim = 32, WINDOW(9, 2)),
    CASE(len2048_w64_causal_lse, .q_heads = 2, .q_len = 2048, .head_dim = 64, .causal = 1,
         WINDOW(63, 0), .want_lse = 1),
};

/*
 * Few rows per key/value head: on a CPU device these run the decode kernel,
 * which pads the rows to a power of two, sums 8 / rows keys per step, and
 * splits the keys among work-items when there are few heads.
 */
static const struct CMUnitTest decode[] = {
    CASE(decode_f16_gqa4_causal_lse, .q_heads = 8, .kv_heads = 2, .q_len = 1,
         .kv_len = 777, .head_dim = 128, .dtype = CLATTN_F16, .causal = 1, .want_lse = 1),
    CASE(decode_gqa3_dim40, .q_heads = 6, .kv_heads = 2, .q_len = 1, .kv_len = 301,
         .head_dim = 40, .want_lse = 1),
    CASE(decode_split_gqa2_dim80, .q_heads = 2, .kv_heads = 1, .q_len = 1, .kv_len = 5000,
         .head_dim = 80, .want_lse = 1),
    CASE(decode_split_f16_window, .q_heads = 4, .kv_heads = 1, .q_len = 1, .kv_len = 3000,
         .head_dim = 64, .dtype = CLATTN_F16, .causal = 1, WINDOW(2047, -1)),
    CASE(decode_q2_gqa4_bshd_causal, .q_heads = 8, .kv_heads = 2, .q_len = 2,
         .kv_len = 300, .head_dim = 64, .layout = CLATTN_LAYOUT_BSHD, .causal = 1,
         .want_lse = 1),
    /* Queries 0 and 1 of each head see no key. */
    CASE(decode_q4_kv2_empty_rows, .q_heads = 2, .kv_heads = 1, .q_len = 4, .kv_len = 2,
         .head_dim = 64, .causal = 1, .want_lse = 1),
    CASE(decode_mqa8_vdim24_band, .q_heads = 8, .kv_heads = 1, .q_len = 1, .kv_len = 200,
         .head_dim = 32, .v_head_dim = 24, WINDOW(50, 0)),
};

/*
 * Masks long enough that the naive variant splits each head's rows into
 * several blocks, each with GEMMs over its own columns only: lengths that
 * are no multiple of a block, bands off the diagonal, and rows that see no
 * key before the first block, which no GEMM writes.
 */
static const struct CMUnitTest row_blocks[] = {
    CASE(blocks_causal_q1000_lse, .q_len = 1000, .head_dim = 64, .causal = 1,
         .want_lse = 1),
    CASE(blocks_window_q700_kv1300, .q_len = 700, .kv_len = 1300, .head_dim = 64,
         WINDOW(100, 50)),
    /* The first 600 rows see no key; the blocks start at row 600. */
    CASE(blocks_causal_q1300_kv700_empty_rows, .q_len = 1300, .kv_len = 700,
         .head_dim = 64, .causal = 1, .want_lse = 1),
    /* Rows with i' = i - 500 < -20 see no key; bands 81 keys wide at most. */
    CASE(blocks_window_q900_kv400_empty_rows, .q_len = 900, .kv_len = 400,
         .head_dim = 64, WINDOW(60, 20), .want_lse = 1),
    CASE(blocks_gqa_bshd_causal_window, .q_heads = 4, .kv_heads = 2, .q_len = 600,
         .head_dim = 64, .layout = CLATTN_LAYOUT_BSHD, .causal = 1, WINDOW(200, -1)),
};

static const struct CMUnitTest tiles[] = {
    CASE(block_8_16, .q_len = 100, .head_dim = 64, .block_q = 8, .block_k = 16),
    CASE(block_8_16_causal_lse, .q_len = 100, .head_dim = 64, .causal = 1, .want_lse = 1,
         .block_q = 8, .block_k = 16),
    CASE(block_24_12_window_cross, .q_len = 77, .kv_len = 130, .head_dim = 32,
         WINDOW(20, 7), .block_q = 24, .block_k = 12),
};

static const struct CMUnitTest large[] = {
    CASE(len512_dim128_causal_lse, .q_heads = 8, .q_len = 512, .head_dim = 128,
         .causal = 1, .want_lse = 1),
    CASE(len1024_dim64, .q_heads = 4, .q_len = 1024, .head_dim = 64),
    /* Per-head offsets past 2^24 elements: CLBlast 1.5.3's strided-batch GEMM
     * went wrong there. */
    CASE(len4096_two_heads_causal, .q_heads = 2, .q_len = 4096, .head_dim = 64,
         .causal = 1),
};

#define GROUP(tests)                                                                     \
    _cmocka_run_group_tests(#tests, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL)

/*
 * Tuned CLBlast parameters for the naive variant's second pass, the same set
 * as test_tuning.c's, so that PoCL compiles it once for both. Its small
 * threshold sends every GEMM to the indirect kernel, whose padded operands
 * live in the plan's temporary buffer.
 */
#define TUNED_GEMM                                                                       \
    "Xgemm:GEMMK=0,KREG=1,KWG=16,KWI=2,MDIMA=8,MDIMC=8,MWG=64,NDIMB=8,NDIMC=8,NWG=64,"   \
    "SA=0,SB=0,STRM=0,STRN=0,VWM=8,VWN=8;GemmRoutine:XGEMM_MIN_INDIRECT_SIZE=16"

static int run_groups(void)
{
    int failed = 0;

    failed += GROUP(odd_lengths);
    failed += GROUP(lengths_differ);
    failed += GROUP(head_sizes);
    failed += GROUP(heads_and_batch);
    failed += GROUP(storage_and_scale);
    failed += GROUP(windows);
    failed += GROUP(window_bands);
    failed += GROUP(row_blocks);
    failed += GROUP(decode);
    failed += GROUP(tiles);
    failed += GROUP(large);
    return failed;
}

int main(void)
{
    int failed = 0;

    if (harness_setup(NULL) != 0)
        return 1;

    failed += run_groups();
    if (TEST_VARIANT == CLATTN_VARIANT_NAIVE) {
        clattn_status status = clattn_gemm_tuning_apply(harness_ctx, TUNED_GEMM);

        printf("again with CLBlast parameters %s: %s\n", TUNED_GEMM,
               clattn_status_name(status));
        failed += status != CLATTN_OK ? 1 : run_groups();
    }

    harness_teardown(NULL);
    return failed != 0;
}
