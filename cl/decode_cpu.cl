/*
 * Decode shaped for CPU devices: a few query rows per key/value head, one
 * work-item per head (or per share of its keys when the run is split).
 *
 * With one query per head, the rows of a key/value head are the query heads
 * of its group: four for a typical GQA model. Lanes along rows, as in
 * tiled_cpu.cl, would leave most of a float8 idle, so here lanes run along
 * the head dimension. Every K and V vector loaded from memory feeds one FMA
 * per row, and the rows' partial dot products are summed across lanes eight
 * at a time by a transposing reduction. Decode reads each key once, so what
 * matters is that the arithmetic keeps up with memory.
 *
 * Rows are numbered as in tiled_cpu.cl: row r of head kvh is query r % q_len
 * of query head kvh * group + r / q_len. The plan sends a problem here only
 * when a head has at most eight rows.
 *
 * Build options, beside the prelude's: RB (rows per work-item, 1, 2, 4 or 8,
 * at least the head's rows) and BK (keys per tile, a multiple of 8). D and DV
 * are multiples of 8.
 */
#ifndef RB
#define RB 4
#endif
#ifndef BK
#define BK 32
#endif

/* Keys per step of the score loop: eight accumulators of partial sums. */
#define KP (8 / RB)
#define DQ (D / 8)
#define DVQ (DV / 8)

/*
 * Lane i of the result is the sum of x[i]'s lanes. Pairs are summed inside
 * each 128-bit half first, then the halves, so every step is a shuffle that
 * stays within a half and an add.
 */
inline float8 pair_sums(float8 a, float8 b)
{
    return (float8)(a.s02, b.s02, a.s46, b.s46) + (float8)(a.s13, b.s13, a.s57, b.s57);
}

inline float8 transpose_sum(const float8 *x)
{
    const float8 lo = pair_sums(pair_sums(x[0], x[1]), pair_sums(x[2], x[3]));
    const float8 hi = pair_sums(pair_sums(x[4], x[5]), pair_sums(x[6], x[7]));

    return (float8)(lo.lo, hi.lo) + (float8)(lo.hi, hi.hi);
}

/* Lane i holds row i % RB: these combine the lanes of each row and leave
 * the result in all of them. */
inline float8 row_max(float8 x)
{
#if RB < 8
    x = fmax(x, x.s45670123);
#endif
#if RB < 4
    x = fmax(x, x.s23016745);
#endif
#if RB < 2
    x = fmax(x, x.s10325476);
#endif
    return x;
}

inline float8 row_sum(float8 x)
{
#if RB < 8
    x += x.s45670123;
#endif
#if RB < 4
    x += x.s23016745;
#endif
#if RB < 2
    x += x.s10325476;
#endif
    return x;
}

/*
 * Reads one element of every cache line of keys [first, first + count), K
 * and V, and drops it. The next tile's lines are then on their way from
 * memory while this tile computes: a head's keys are one long stream per
 * work-item, and the hardware prefetchers alone left decode at 0.40-0.54 of
 * the device's read rate, 0.53-0.62 with this (NOTES, 2026-12-04). The
 * prefetch() builtin measured no better than nothing on PoCL. The volatile
 * sink keeps the compiler from dropping the loads; they read bytes, since
 * converting halves would cost more than the loads.
 */
inline void touch_rows(__global const store_t *kb, __global const store_t *vb, int k_ss,
                       int v_ss, int first, int count)
{
    volatile uchar sink;

    for (int c = 0; c < count; c++) {
        const ulong j = (ulong)(first + c);
        __global const uchar *kr = (__global const uchar *)(kb + j * k_ss);
        __global const uchar *vr = (__global const uchar *)(vb + j * v_ss);

        for (int e = 0; e < D * (int)sizeof(store_t); e += 64)
            sink = kr[e];
        for (int e = 0; e < DV * (int)sizeof(store_t); e += 64)
            sink = vr[e];
    }
}

__kernel void attn_decode_cpu(__global const store_t *q, __global const store_t *k,
                              __global const store_t *v, __global store_t *o,
                              __global float *lse, int q_len, int kv_len, int kv_heads,
                              int group, int per_head, int left, int right,
                              float scale_log2, ulong q_sb, ulong q_sh, int q_ss,
                              ulong k_sb, ulong k_sh, int k_ss, ulong v_sb, ulong v_sh,
                              int v_ss, ulong o_sb, ulong o_sh, int o_ss, int splits,
                              __global float *part)
{
    const int b = get_global_id(1) / kv_heads;
    const int kvh = get_global_id(1) % kv_heads;
    const int rows = group * q_len;
    const int shift = kv_len - q_len;

    float8 qv[RB * DQ];       /* qv[r * DQ + dq], scaled by scale * log2(e) */
    float8 acc[RB * DVQ];     /* acc[r * DVQ + dq], unnormalized output */
    float8 sv[BK / KP];       /* scores, then probabilities: key c, row r at
                                 float c * RB + r */
    float8 m = (float8)(-INFINITY), l = (float8)(0.0f);
    int8 lo, hi;              /* each lane's row's band */
    const int8 lane_key = (int8)(0, 1, 2, 3, 4, 5, 6, 7) / RB;

#if SPLIT
    const int sp = get_global_id(0);
    const int2 keys =
        band_share(band_lo(0, shift, left), band_hi(q_len - 1, shift, right, kv_len),
                   splits, sp);
    const int jlo = keys.x, jhi = keys.y;
#else
    const int jlo = band_lo(0, shift, left);
    const int jhi = band_hi(q_len - 1, shift, right, kv_len);
#endif
    /* Tiles between these bounds are inside every row's band. */
    const int lo_max = q_len - 1 + shift - left;
    const int hi_min = shift + right;

    __global const store_t *kb = k + b * k_sb + kvh * k_sh;
    __global const store_t *vb = v + b * v_sb + kvh * v_sh;

    /* Rows past the head's last repeat it; they are never written. */
    for (int r = 0; r < RB; r++) {
        const int rr = min(r, rows - 1);
        const int hq = kvh * group + rr / q_len, qi = rr % q_len;
        __global const store_t *qp = q + b * q_sb + hq * q_sh + (ulong)qi * q_ss;
        int *lop = (int *)&lo, *hip = (int *)&hi;

        for (int dq = 0; dq < DQ; dq++)
            qv[r * DQ + dq] = LOAD8(qp, dq * 8) * scale_log2;
        for (int dq = 0; dq < DVQ; dq++)
            acc[r * DVQ + dq] = (float8)(0.0f);
        for (int lane = r; lane < 8; lane += RB) {
            lop[lane] = qi + shift - left;
            hip[lane] = qi + shift + right;
        }
    }

    for (int j0 = jlo; j0 <= jhi; j0 += BK) {
        const int n = min(BK, jhi - j0 + 1);
        const int steps = (n + KP - 1) / KP;

        touch_rows(kb, vb, k_ss, v_ss, j0 + BK, min(BK, jhi - j0 - BK + 1));

        for (int st = 0; st < steps; st++) {
            __global const store_t *kr[KP];
            float8 x[8];

            #pragma unroll
            for (int kk = 0; kk < KP; kk++)
                kr[kk] = kb + (ulong)min(j0 + st * KP + kk, jhi) * k_ss;
            #pragma unroll
            for (int i = 0; i < 8; i++)
                x[i] = (float8)(0.0f);
            for (int dq = 0; dq < DQ; dq++) {
                #pragma unroll
                for (int kk = 0; kk < KP; kk++) {
                    const float8 kv = LOAD8(kr[kk], dq * 8);

                    #pragma unroll
                    for (int r = 0; r < RB; r++)
                        x[kk * RB + r] = fma(qv[r * DQ + dq], kv, x[kk * RB + r]);
                }
            }
            sv[st] = transpose_sum(x);
        }

        /* Only tiles on the band's edges, or with a partial last step, need
         * masking. */
#if MASKED
        const int edge = n % KP || j0 < lo_max || j0 + n - 1 > hi_min;
#else
        const int edge = n % KP;
#endif
        if (edge) {
            for (int st = 0; st < steps; st++) {
                const int8 j = (int8)(j0 + st * KP) + lane_key;
                const int8 keep = (j < j0 + n) & (j >= lo) & (j <= hi);

                sv[st] = select((float8)(-INFINITY), sv[st], keep);
            }
        }

        /* Online softmax, once per tile, as in tiled_cpu.cl: a row that has
         * seen no key yet keeps a maximum of -inf and takes exponents
         * against 0. The lanes of a row hold partial sums until the end. */
        float8 mx = m, sum = (float8)(0.0f);

        for (int st = 0; st < steps; st++)
            mx = fmax(mx, sv[st]);
        mx = row_max(mx);

        const float8 base = select(mx, (float8)(0.0f), isequal(mx, (float8)(-INFINITY)));
        const float8 alpha = exp2(m - base);

        m = mx;
        for (int st = 0; st < steps; st++) {
            sv[st] = exp2(sv[st] - base);
            sum += sv[st];
        }
        l = l * alpha + sum;

        /* acc = acc * alpha + P V, KP vectors of columns at a time: their
         * RB * KP accumulators stay in registers while the tile's keys go
         * by, and each V vector loaded feeds one FMA per row. */
        const float *pf = (const float *)sv;
        const float *af = (const float *)&alpha;
        int dq = 0;

        for (; dq + KP <= DVQ; dq += KP) {
            float8 a[RB * KP];

            #pragma unroll
            for (int i = 0; i < RB * KP; i++)
                a[i] = acc[i / KP * DVQ + dq + i % KP] * af[i / KP];
            for (int c = 0; c < n; c++) {
                __global const store_t *vr = vb + (ulong)(j0 + c) * v_ss + dq * 8;
                float8 x[KP];

                #pragma unroll
                for (int h = 0; h < KP; h++)
                    x[h] = LOAD8(vr, h * 8);
                #pragma unroll
                for (int r = 0; r < RB; r++) {
                    const float8 p = (float8)(pf[c * RB + r]);

                    #pragma unroll
                    for (int h = 0; h < KP; h++)
                        a[r * KP + h] = fma(p, x[h], a[r * KP + h]);
                }
            }
            #pragma unroll
            for (int i = 0; i < RB * KP; i++)
                acc[i / KP * DVQ + dq + i % KP] = a[i];
        }
        for (; dq < DVQ; dq++) {
            #pragma unroll
            for (int r = 0; r < RB; r++) {
                float8 a = acc[r * DVQ + dq] * af[r];

                for (int c = 0; c < n; c++)
                    a = fma((float8)(pf[c * RB + r]),
                            LOAD8(vb + (ulong)(j0 + c) * v_ss, dq * 8), a);
                acc[r * DVQ + dq] = a;
            }
        }
    }

    /* Normalize once, and write each row back where it came from. */
    l = row_sum(l);

    const float *lf = (const float *)&l, *mf = (const float *)&m;

    for (int r = 0; r < min(rows, RB); r++) {
        const int hq = kvh * group + r / q_len, qi = r % q_len;

#if SPLIT
        __global float *pp = part_row(part, get_global_id(1), rows, r, splits, sp);

        for (int dq = 0; dq < DVQ; dq++)
            vstore8(acc[r * DVQ + dq], 0, pp + dq * 8);
        pp[DV] = mf[r];
        pp[DV + 1] = lf[r];
#else
        const float inv = lf[r] > 0.0f ? 1.0f / lf[r] : 0.0f;
        __global store_t *op = o + b * o_sb + hq * o_sh + (ulong)qi * o_ss;

        for (int dq = 0; dq < DVQ; dq++)
            STORE8(acc[r * DVQ + dq] * inv, op, dq * 8);
#endif
#if WANT_LSE && !SPLIT
        lse[((ulong)b * kv_heads * group + hq) * q_len + qi] =
            lf[r] > 0.0f ? (mf[r] + log2(lf[r])) * LN2 : -INFINITY;
#endif
    }
}
