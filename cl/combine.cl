/*
 * Merges the partial results of a split run (see part_row in the prelude):
 * one work-item per row, rescaling each share to the largest running
 * maximum before summing, then normalizing once.
 */
__kernel void attn_combine(__global const float *part, __global store_t *o,
                           __global float *lse, int q_len, int kv_heads, int group,
                           int splits, ulong o_sb, ulong o_sh, int o_ss)
{
    const int r = get_global_id(0), bkv = get_global_id(1);

    if (r >= group * q_len)
        return;

    const int b = bkv / kv_heads, kvh = bkv % kv_heads;
    const int hq = kvh * group + r / q_len, qi = r % q_len;
    __global const float *first = part_row((__global float *)part, bkv, group * q_len, r,
                                           splits, 0);
    __global store_t *op = o + b * o_sb + hq * o_sh + (ulong)qi * o_ss;
    float mx = -INFINITY, sum = 0.0f;

    for (int sp = 0; sp < splits; sp++)
        mx = fmax(mx, first[sp * (DV + 2) + DV]);

    /* Shares that saw no key hold a maximum of -inf and a sum of 0. */
    const float base = mx == -INFINITY ? 0.0f : mx;

    for (int sp = 0; sp < splits; sp++) {
        __global const float *pp = first + sp * (DV + 2);

        sum += pp[DV + 1] * exp2(pp[DV] - base);
    }

    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;

    for (int d = 0; d < DV; d++) {
        float x = 0.0f;

        for (int sp = 0; sp < splits; sp++) {
            __global const float *pp = first + sp * (DV + 2);

            x = fma(pp[d], exp2(pp[DV] - base), x);
        }
        STORE(x * inv, op, d);
    }
#if WANT_LSE
    lse[((ulong)b * kv_heads * group + hq) * q_len + qi] =
        sum > 0.0f ? (mx + log2(sum)) * LN2 : -INFINITY;
#endif
}
