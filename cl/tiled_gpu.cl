/*
 * Flash attention shaped for GPUs: a work-group of BQ work-items, each owning
 * one query row, walks the band of keys in tiles of BK keys that the whole
 * group stages in local memory. Rows are numbered per key/value head as in
 * tiled_cpu.cl, so query heads that share K and V share the tiles too.
 *
 * Build options, beside the prelude's: BQ (work-group size) and BK (keys
 * per tile).
 */
#ifndef BQ
#define BQ 64
#endif
#ifndef BK
#define BK 32
#endif

__kernel __attribute__((reqd_work_group_size(BQ, 1, 1)))
void attn_tiled_gpu(__global const store_t *q, __global const store_t *k,
                    __global const store_t *v, __global store_t *o, __global float *lse,
                    int q_len, int kv_len, int kv_heads, int group, int per_head,
                    int left, int right, float scale_log2, ulong q_sb, ulong q_sh,
                    int q_ss, ulong k_sb, ulong k_sh, int k_ss, ulong v_sb, ulong v_sh,
                    int v_ss, ulong o_sb, ulong o_sh, int o_ss, int splits,
                    __global float *part)
{
    __local float kt[BK * D];
    __local float vt[BK * DV];

    const int lid = get_local_id(0);
    const int b = get_global_id(1) / kv_heads;
    const int kvh = get_global_id(1) % kv_heads;
    const int shift = kv_len - q_len;

    /* Every work-item, active or not, agrees on the group's band, so all of
     * them reach the same barriers. */
#if SPLIT
    const int blk = get_group_id(0) / splits, sp = get_group_id(0) % splits;
#else
    const int blk = get_group_id(0);
#endif
    const int2 span = block_rows(blk, BQ, q_len, group * q_len, per_head);
    const int r0 = span.x, r_last = span.y;
    const int r = r0 + lid;
    const int active = r <= r_last;
    const int same_head = r0 / q_len == r_last / q_len;
    const int qmin = same_head ? r0 % q_len : 0;
    const int qmax = same_head ? r_last % q_len : q_len - 1;
#if SPLIT
    /* This group's share of the band; attn_combine merges the shares. */
    const int2 keys = band_share(band_lo(qmin, shift, left),
                                 band_hi(qmax, shift, right, kv_len), splits, sp);
    const int jlo = keys.x, jhi = keys.y;
#else
    const int jlo = band_lo(qmin, shift, left);
    const int jhi = band_hi(qmax, shift, right, kv_len);
#endif

    const int rr = min(r, r_last);
    const int hq = kvh * group + rr / q_len, qi = rr % q_len;
    const int lo = qi + shift - left, hi = qi + shift + right;

    __global const store_t *kb = k + b * k_sb + kvh * k_sh;
    __global const store_t *vb = v + b * v_sb + kvh * v_sh;
    __global const store_t *qp = q + b * q_sb + hq * q_sh + (ulong)qi * q_ss;

    float qr[D], acc[DV], sc[BK];
    float m = -INFINITY, l = 0.0f;

    for (int d = 0; d < D; d++)
        qr[d] = LOAD(qp, d) * scale_log2;
    for (int d = 0; d < DV; d++)
        acc[d] = 0.0f;

    for (int j0 = jlo; j0 <= jhi; j0 += BK) {
        const int n = min(BK, jhi - j0 + 1);

        barrier(CLK_LOCAL_MEM_FENCE);
        for (int i = lid; i < n * D; i += BQ)
            kt[i] = LOAD(kb + (ulong)(j0 + i / D) * k_ss, i % D);
        for (int i = lid; i < n * DV; i += BQ)
            vt[i] = LOAD(vb + (ulong)(j0 + i / DV) * v_ss, i % DV);
        barrier(CLK_LOCAL_MEM_FENCE);

        if (!active)
            continue;

        float mx = m, base, alpha;

        for (int c = 0; c < n; c++) {
            float x = 0.0f;

            for (int d = 0; d < D; d++)
                x = fma(qr[d], kt[c * D + d], x);
#if MASKED
            if (j0 + c < lo || j0 + c > hi)
                x = -INFINITY;
#endif
            sc[c] = x;
            mx = fmax(mx, x);
        }
        base = mx == -INFINITY ? 0.0f : mx;
        alpha = exp2(m - base);
        m = mx;
        l *= alpha;
        for (int c = 0; c < n; c++) {
            sc[c] = exp2(sc[c] - base);
            l += sc[c];
        }
        for (int d = 0; d < DV; d++) {
            float a = acc[d] * alpha;

            for (int c = 0; c < n; c++)
                a = fma(sc[c], vt[c * DV + d], a);
            acc[d] = a;
        }
    }

    if (!active)
        return;

#if SPLIT
    __global float *pp = part_row(part, get_global_id(1), group * q_len, r, splits, sp);

    for (int d = 0; d < DV; d++)
        pp[d] = acc[d];
    pp[DV] = m;
    pp[DV + 1] = l;
    return;
#endif

    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    __global store_t *op = o + b * o_sb + hq * o_sh + (ulong)qi * o_ss;

    for (int d = 0; d < DV; d++)
        STORE(acc[d] * inv, op, d);
#if WANT_LSE
    lse[((ulong)b * kv_heads * group + hq) * q_len + qi] =
        l > 0.0f ? (m + log2(l)) * LN2 : -INFINITY;
#endif
}
