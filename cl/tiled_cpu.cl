/*
 * Flash attention shaped for CPU devices: work-group size 1, one work-item
 * per block of 8 * BQV query rows.
 *
 * The rows of a block run along the lanes of float8 vectors: the block's
 * queries are transposed once into registers, keys and values are broadcast,
 * and the online softmax is plain vertical arithmetic with no horizontal
 * reduction. Scores are register-blocked four keys at a time so each vector
 * load feeds several FMAs.
 *
 * Rows are numbered per key/value head: row r of head kvh is query
 * r % q_len of query head kvh * group + r / q_len. Folding the query heads
 * that share a key/value head into one row space lets a block reuse every
 * key it loads across those heads, which is what keeps decode (q_len = 1)
 * from reading K and V once per query head.
 *
 * Build options, beside the prelude's: BQV (float8 vectors of rows per
 * work-item) and BK (keys per tile, a multiple of 4).
 */
#ifndef BQV
#define BQV 2
#endif
#ifndef BK
#define BK 32
#endif

#define ROWS (8 * BQV)

/*
 * The hot loops broadcast single elements of K and V. With fp16 storage each
 * would go through vload_half, which PoCL converts in scalar code, so the
 * tile's rows are first widened to float with vector conversions into
 * private memory (tile_t points there); fp32 tiles are read in place.
 */
#if DTYPE_F16
typedef const float *tile_t;
#else
typedef __global const float *tile_t;
#endif

/* Rows [0, count) of a tile, from src with stride ss, packed into dst. */
inline void widen_rows(float *dst, __global const store_t *src, int ss, int len,
                       int count)
{
    for (int c = 0; c < count; c++) {
        __global const store_t *row = src + (ulong)c * ss;
        int e = 0;

        for (; e + 8 <= len; e += 8)
            vstore8(LOAD8(row, e), 0, dst + c * len + e);
        for (; e < len; e++)
            dst[c * len + e] = LOAD(row, e);
    }
}

__kernel void attn_tiled_cpu(__global const store_t *q, __global const store_t *k,
                             __global const store_t *v, __global store_t *o,
                             __global float *lse, int q_len, int kv_len, int kv_heads,
                             int group, int per_head, int left, int right,
                             float scale_log2,
                             ulong q_sb, ulong q_sh, int q_ss, ulong k_sb, ulong k_sh,
                             int k_ss, ulong v_sb, ulong v_sh, int v_ss, ulong o_sb,
                             ulong o_sh, int o_ss, int splits, __global float *part)
{
#if SPLIT
    const int blk = get_global_id(0) / splits, sp = get_global_id(0) % splits;
#else
    const int blk = get_global_id(0);
#endif
    const int2 span = block_rows(blk, ROWS, q_len, group * q_len, per_head);
    const int r0 = span.x, r_last = span.y;
    const int b = get_global_id(1) / kv_heads;
    const int kvh = get_global_id(1) % kv_heads;
    const int shift = kv_len - q_len;

    float8 qt[D * BQV];   /* qt[d * BQV + v], lanes along rows */
    float8 acc[DV * BQV]; /* acc[d * BQV + v], unnormalized output */
    float8 s[BK * BQV];   /* scores, then probabilities, of one tile */
    float8 m[BQV], l[BQV], alpha[BQV];
    int8 lo[BQV], hi[BQV];
#if DTYPE_F16
    float kst[BK * D], vst[BK * DV]; /* the tile's K and V rows, widened */
#endif

    if (r0 > r_last)
        return;

    /* The band of keys the whole block needs. Rows spanning two heads make
     * the block's query positions cover everything in between. */
    const int same_head = r0 / q_len == r_last / q_len;
    const int qmin = same_head ? r0 % q_len : 0;
    const int qmax = same_head ? r_last % q_len : q_len - 1;
#if SPLIT
    /* This work-item's share of the band; the partial results meet again in
     * attn_combine. */
    const int2 keys = band_share(band_lo(qmin, shift, left),
                                 band_hi(qmax, shift, right, kv_len), splits, sp);
    const int jlo = keys.x, jhi = keys.y;
#else
    const int jlo = band_lo(qmin, shift, left);
    const int jhi = band_hi(qmax, shift, right, kv_len);
#endif
    const int lo_max = qmax + shift - left;
    const int hi_min = qmin + shift + right;

    __global const store_t *kb = k + b * k_sb + kvh * k_sh;
    __global const store_t *vb = v + b * v_sb + kvh * v_sh;

    #pragma unroll
    for (int vi = 0; vi < BQV; vi++) {
        __global const store_t *qp[8];
        float *qf = (float *)&qt[vi];
        int *lop = (int *)&lo[vi], *hip = (int *)&hi[vi];

        for (int lane = 0; lane < 8; lane++) {
            const int r = min(r0 + vi * 8 + lane, r_last);
            const int hq = kvh * group + r / q_len, qi = r % q_len;

            qp[lane] = q + b * q_sb + hq * q_sh + (ulong)qi * q_ss;
            lop[lane] = qi + shift - left;
            hip[lane] = qi + shift + right;
        }
        /* Eight rows by eight dimensions at a time, turned so that rows run
         * along the lanes; a window's blocks walk few tiles, and element by
         * element this took a noticeable share of them. */
        int d0 = 0;

        for (; d0 + 8 <= D; d0 += 8) {
            float8 x[8];

            #pragma unroll
            for (int lane = 0; lane < 8; lane++)
                x[lane] = LOAD8(qp[lane], d0);
            transpose8(x);
            #pragma unroll
            for (int e = 0; e < 8; e++)
                qt[(d0 + e) * BQV + vi] = x[e] * scale_log2;
        }
        for (int lane = 0; lane < 8; lane++) {
            for (int d = d0; d < D; d++)
                qf[d * BQV * 8 + lane] = LOAD(qp[lane], d) * scale_log2;
        }
        m[vi] = (float8)(-INFINITY);
        l[vi] = (float8)(0.0f);
    }
    for (int i = 0; i < DV * BQV; i++)
        acc[i] = (float8)(0.0f);

    for (int j0 = jlo; j0 <= jhi; j0 += BK) {
        const int n = min(BK, jhi - j0 + 1);
        const int nc = (n + 3) & ~3;
#if DTYPE_F16
        const tile_t kt = kst, vt = vst;
        const int kts = D, vts = DV;

        widen_rows(kst, kb + (ulong)j0 * k_ss, k_ss, D, n);
        widen_rows(vst, vb + (ulong)j0 * v_ss, v_ss, DV, n);
#else
        const tile_t kt = kb + (ulong)j0 * k_ss, vt = vb + (ulong)j0 * v_ss;
        const int kts = k_ss, vts = v_ss;
#endif

        for (int c = 0; c < nc; c += 4) {
            /* Keys past n repeat the last one; the mask drops them. */
            const tile_t k0 = kt + (ulong)min(c, n - 1) * kts;
            const tile_t k1 = kt + (ulong)min(c + 1, n - 1) * kts;
            const tile_t k2 = kt + (ulong)min(c + 2, n - 1) * kts;
            const tile_t k3 = kt + (ulong)min(c + 3, n - 1) * kts;
            float8 a0[BQV], a1[BQV], a2[BQV], a3[BQV];

            #pragma unroll
            for (int vi = 0; vi < BQV; vi++)
                a0[vi] = a1[vi] = a2[vi] = a3[vi] = (float8)(0.0f);
            for (int d = 0; d < D; d++) {
                const float8 x0 = (float8)(k0[d]), x1 = (float8)(k1[d]);
                const float8 x2 = (float8)(k2[d]), x3 = (float8)(k3[d]);

                #pragma unroll
                for (int vi = 0; vi < BQV; vi++) {
                    const float8 qv = qt[d * BQV + vi];

                    a0[vi] = fma(qv, x0, a0[vi]);
                    a1[vi] = fma(qv, x1, a1[vi]);
                    a2[vi] = fma(qv, x2, a2[vi]);
                    a3[vi] = fma(qv, x3, a3[vi]);
                }
            }
            #pragma unroll
            for (int vi = 0; vi < BQV; vi++) {
                s[c * BQV + vi] = a0[vi];
                s[(c + 1) * BQV + vi] = a1[vi];
                s[(c + 2) * BQV + vi] = a2[vi];
                s[(c + 3) * BQV + vi] = a3[vi];
            }
        }

        /* Only tiles on the band's edges, or short ones, need masking. */
#if MASKED
        const int edge = n < nc || j0 < lo_max || j0 + n - 1 > hi_min;
#else
        const int edge = n < nc;
#endif
        if (edge) {
            for (int c = 0; c < nc; c++) {
                const int8 j = (int8)(j0 + c);
                const int8 inside = (int8)(c < n ? -1 : 0);

                #pragma unroll
                for (int vi = 0; vi < BQV; vi++) {
                    int8 keep = inside & (j >= lo[vi]) & (j <= hi[vi]);

                    s[c * BQV + vi] = select((float8)(-INFINITY), s[c * BQV + vi], keep);
                }
            }
        }

        /* Online softmax, once per tile. A row that has seen no key yet keeps
         * a maximum of -inf; exponents are then taken against 0 so that no
         * -inf - -inf appears. */
        #pragma unroll
        for (int vi = 0; vi < BQV; vi++) {
            float8 mx = m[vi], sum = (float8)(0.0f), base;

            for (int c = 0; c < nc; c++)
                mx = fmax(mx, s[c * BQV + vi]);
            base = select(mx, (float8)(0.0f), isequal(mx, (float8)(-INFINITY)));
            alpha[vi] = exp2(m[vi] - base);
            m[vi] = mx;
            for (int c = 0; c < nc; c++) {
                const float8 p = exp2(s[c * BQV + vi] - base);

                s[c * BQV + vi] = p;
                sum += p;
            }
            l[vi] = l[vi] * alpha[vi] + sum;
        }

        /* acc = acc * alpha + P V, four output columns at a time. */
        int d = 0;
        for (; d + 4 <= DV; d += 4) {
            float8 o0[BQV], o1[BQV], o2[BQV], o3[BQV];

            #pragma unroll
            for (int vi = 0; vi < BQV; vi++) {
                o0[vi] = acc[d * BQV + vi] * alpha[vi];
                o1[vi] = acc[(d + 1) * BQV + vi] * alpha[vi];
                o2[vi] = acc[(d + 2) * BQV + vi] * alpha[vi];
                o3[vi] = acc[(d + 3) * BQV + vi] * alpha[vi];
            }
            for (int c = 0; c < n; c++) {
                const tile_t vr = vt + (ulong)c * vts + d;
                const float8 x0 = (float8)(vr[0]), x1 = (float8)(vr[1]);
                const float8 x2 = (float8)(vr[2]), x3 = (float8)(vr[3]);

                #pragma unroll
                for (int vi = 0; vi < BQV; vi++) {
                    const float8 p = s[c * BQV + vi];

                    o0[vi] = fma(p, x0, o0[vi]);
                    o1[vi] = fma(p, x1, o1[vi]);
                    o2[vi] = fma(p, x2, o2[vi]);
                    o3[vi] = fma(p, x3, o3[vi]);
                }
            }
            #pragma unroll
            for (int vi = 0; vi < BQV; vi++) {
                acc[d * BQV + vi] = o0[vi];
                acc[(d + 1) * BQV + vi] = o1[vi];
                acc[(d + 2) * BQV + vi] = o2[vi];
                acc[(d + 3) * BQV + vi] = o3[vi];
            }
        }
        for (; d < DV; d++) {
            #pragma unroll
            for (int vi = 0; vi < BQV; vi++) {
                float8 a = acc[d * BQV + vi] * alpha[vi];

                for (int c = 0; c < n; c++)
                    a = fma(s[c * BQV + vi], (float8)(vt[(ulong)c * vts + d]), a);
                acc[d * BQV + vi] = a;
            }
        }
    }

    /* Normalize once, and write each row back where it came from. */
    #pragma unroll
    for (int vi = 0; vi < BQV; vi++) {
        const float *lf = (const float *)&l[vi];
#if !SPLIT
        __global store_t *op[8];
        int d0 = 0;

        for (int lane = 0; lane < 8; lane++) {
            const int r = min(r0 + vi * 8 + lane, r_last);
            const int hq = kvh * group + r / q_len, qi = r % q_len;

            op[lane] = o + b * o_sb + hq * o_sh + (ulong)qi * o_ss;
        }
        /* A whole vector of rows goes out eight columns at a time, turned
         * back so that each row's columns are consecutive. */
        if (r0 + vi * 8 + 7 <= r_last) {
            const float8 inv = select((float8)(0.0f), 1.0f / l[vi], l[vi] > 0.0f);

            for (; d0 + 8 <= DV; d0 += 8) {
                float8 x[8];

                #pragma unroll
                for (int e = 0; e < 8; e++)
                    x[e] = acc[(d0 + e) * BQV + vi] * inv;
                transpose8(x);
                #pragma unroll
                for (int lane = 0; lane < 8; lane++)
                    STORE8(x[lane], op[lane], d0);
            }
        }
#endif
        for (int lane = 0; lane < 8; lane++) {
            const int r = r0 + vi * 8 + lane;

            if (r > r_last)
                break;

#if SPLIT
            __global float *pp =
                part_row(part, get_global_id(1), group * q_len, r, splits, sp);

            for (int dd = 0; dd < DV; dd++)
                pp[dd] = ((const float *)&acc[dd * BQV + vi])[lane];
            pp[DV] = ((const float *)&m[vi])[lane];
            pp[DV + 1] = lf[lane];
#else
            const float sum = lf[lane];
            const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;

            for (int dd = d0; dd < DV; dd++)
                STORE(((const float *)&acc[dd * BQV + vi])[lane] * inv, op[lane], dd);
#endif
#if WANT_LSE && !SPLIT
            const int hq = kvh * group + r / q_len, qi = r % q_len;
            const float mx = ((const float *)&m[vi])[lane];

            lse[((ulong)b * kv_heads * group + hq) * q_len + qi] =
                sum > 0.0f ? (mx + log2(sum)) * LN2 : -INFINITY;
#endif
        }
    }
}
