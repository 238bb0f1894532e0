/*
 * Linear (kernel) attention in chunks of LC keys.
 *
 *   linear_chunk_state  one work-item per chunk and key/value head: phi(K)
 *                       into a workspace, and the chunk's state
 *                       sum_j phi(k_j) [v_j, 1]^T, a D x (DV + 1) matrix
 *                       whose last column is the normalizer z.
 *   linear_scan         one work-item per state element: turns the chunk
 *                       states into exclusive prefix sums (what a chunk's rows
 *                       see from earlier chunks) and appends the total, with
 *                       compensated summation so that long sequences keep
 *                       their precision.
 *   linear_output       one work-item per query row: phi(q) times the state
 *                       its chunk starts from (or the total when not causal),
 *                       plus, when causal, the masked quadratic part inside
 *                       its own chunk.
 *
 * Build options, beside the prelude's: FEATURE (0 elu + 1, 1 relu), LC
 * (keys per chunk) and MASKED (1 when causal).
 */
#ifndef FEATURE
#define FEATURE 0
#endif
#ifndef LC
#define LC 64
#endif

#define E (D * (DV + 1)) /* floats in one state */
#define EPS 1e-6f

inline float phi(float x)
{
#if FEATURE == 0
    return x > 0.0f ? x + 1.0f : exp(x);
#else
    return fmax(x, 0.0f);
#endif
}

/* Eight consecutive elements from p, zeros past the first n. */
inline float8 load8(__global const store_t *p, int n)
{
    if (n >= 8) {
#if DTYPE_F16
        return vload_half8(0, p);
#else
        return vload8(0, p);
#endif
    }

    float t[8];

    for (int i = 0; i < 8; i++)
        t[i] = i < n ? LOAD(p, i) : 0.0f;
    return vload8(0, t);
}

inline float8 load8f(__global const float *p, int n)
{
    if (n >= 8)
        return vload8(0, p);

    float t[8];

    for (int i = 0; i < 8; i++)
        t[i] = i < n ? p[i] : 0.0f;
    return vload8(0, t);
}

inline void store8f(float8 x, __global float *p, int n)
{
    if (n >= 8) {
        vstore8(x, 0, p);
        return;
    }

    float t[8];

    vstore8(x, 0, t);
    for (int i = 0; i < n; i++)
        p[i] = t[i];
}

__kernel void linear_chunk_state(__global const store_t *k, __global const store_t *v,
                                 __global float *phik, __global float *states,
                                 int kv_len, int kv_heads, int chunks, ulong k_sb,
                                 ulong k_sh, int k_ss, ulong v_sb, ulong v_sh, int v_ss)
{
    const int c = get_global_id(0), bkv = get_global_id(1);
    const int b = bkv / kv_heads, kvh = bkv % kv_heads;
    const int j0 = c * LC, n = min(LC, kv_len - j0);
    __global const store_t *kb = k + b * k_sb + kvh * k_sh;
    __global const store_t *vb = v + b * v_sb + kvh * v_sh;
    __global float *pk = phik + ((ulong)bkv * kv_len + j0) * D;
    __global float *st = states + ((ulong)bkv * (chunks + 1) + c) * E;

    for (int j = 0; j < n; j++)
        for (int d = 0; d < D; d++)
            pk[j * D + d] = phi(LOAD(kb + (ulong)(j0 + j) * k_ss, d));

    /* Four rows of the state by eight columns at a time, so each vector of
     * V feeds four FMAs. */
    for (int d0 = 0; d0 < D; d0 += 4) {
        for (int e0 = 0; e0 < DV; e0 += 8) {
            float8 a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;

            for (int j = 0; j < n; j++) {
                const float8 x = load8(vb + (ulong)(j0 + j) * v_ss + e0, DV - e0);
                __global const float *p = pk + j * D + d0;

                a0 = fma((float8)(p[0]), x, a0);
                a1 = fma((float8)(d0 + 1 < D ? p[1] : 0.0f), x, a1);
                a2 = fma((float8)(d0 + 2 < D ? p[2] : 0.0f), x, a2);
                a3 = fma((float8)(d0 + 3 < D ? p[3] : 0.0f), x, a3);
            }
            store8f(a0, st + d0 * (DV + 1) + e0, DV - e0);
            if (d0 + 1 < D)
                store8f(a1, st + (d0 + 1) * (DV + 1) + e0, DV - e0);
            if (d0 + 2 < D)
                store8f(a2, st + (d0 + 2) * (DV + 1) + e0, DV - e0);
            if (d0 + 3 < D)
                store8f(a3, st + (d0 + 3) * (DV + 1) + e0, DV - e0);
        }
    }
    for (int d = 0; d < D; d++) {
        float z = 0.0f;

        for (int j = 0; j < n; j++)
            z += pk[j * D + d];
        st[d * (DV + 1) + DV] = z;
    }
}

__kernel void linear_scan(__global float *states, int chunks)
{
    const int i = get_global_id(0);
    __global float *s = states + (ulong)get_global_id(1) * (chunks + 1) * E + i;
    float sum = 0.0f, lost = 0.0f;

    if (i >= E)
        return;
    for (int c = 0; c < chunks; c++) {
        const float x = s[(ulong)c * E];
        const float y = x - lost;
        const float t = sum + y;

#if MASKED
        s[(ulong)c * E] = sum;
#endif
        lost = (t - sum) - y;
        sum = t;
    }
    s[(ulong)chunks * E] = sum;
}

__kernel void linear_output(__global const store_t *q, __global const store_t *v,
                            __global const float *phik, __global const float *states,
                            __global store_t *o, int q_len, int kv_len, int kv_heads,
                            int group, int chunks, ulong q_sb, ulong q_sh, int q_ss,
                            ulong v_sb, ulong v_sh, int v_ss, ulong o_sb, ulong o_sh,
                            int o_ss)
{
    const int r = get_global_id(0), bkv = get_global_id(1);

    if (r >= group * q_len)
        return;

    const int b = bkv / kv_heads, kvh = bkv % kv_heads;
    const int hq = kvh * group + r / q_len, qi = r % q_len;
    const int ip = qi + kv_len - q_len;
    __global store_t *op = o + b * o_sb + hq * o_sh + (ulong)qi * o_ss;

#if MASKED
    if (ip < 0) {
        for (int e = 0; e < DV; e++)
            STORE(0.0f, op, e);
        return;
    }
    const int c = ip / LC;
#else
    const int c = chunks;
#endif
    __global const store_t *qp = q + b * q_sb + hq * q_sh + (ulong)qi * q_ss;
    __global const float *st = states + ((ulong)bkv * (chunks + 1) + c) * E;
    float pq[D];
    float8 acc[(DV + 7) / 8];
    float den = 0.0f;

    for (int d = 0; d < D; d++)
        pq[d] = phi(LOAD(qp, d));
    for (int e0 = 0; e0 < DV; e0 += 8)
        acc[e0 / 8] = 0.0f;

    /* What earlier chunks (or all keys) contribute, through the state. */
    for (int d = 0; d < D; d++) {
        const float8 x = (float8)(pq[d]);
        __global const float *row = st + d * (DV + 1);

        for (int e0 = 0; e0 < DV; e0 += 8)
            acc[e0 / 8] = fma(x, load8f(row + e0, DV - e0), acc[e0 / 8]);
        den = fma(pq[d], row[DV], den);
    }

#if MASKED
    /* The keys of the row's own chunk, up to the row's position. */
    __global const float *pk = phik + (ulong)bkv * kv_len * D;
    __global const store_t *vb = v + b * v_sb + kvh * v_sh;

    for (int j = c * LC; j <= ip; j++) {
        float s = 0.0f;

        for (int d = 0; d < D; d++)
            s = fma(pq[d], pk[(ulong)j * D + d], s);
        den += s;
        for (int e0 = 0; e0 < DV; e0 += 8)
            acc[e0 / 8] = fma((float8)(s), load8(vb + (ulong)j * v_ss + e0, DV - e0),
                              acc[e0 / 8]);
    }
#endif

    const float inv = 1.0f / (den + EPS);

    for (int e0 = 0; e0 < DV; e0 += 8) {
        float t[8];

        vstore8(acc[e0 / 8] * inv, 0, t);
        for (int i = 0; i < 8 && e0 + i < DV; i++)
            STORE(t[i], op, e0 + i);
    }
}

/*
 * linear_output for CPU devices: one work-item per block of 8 * RV queries
 * of one query head, laid along the lanes of float8 vectors as in
 * tiled_cpu.cl, so both the product with the chunk state and the in-chunk
 * product are register-blocked broadcasts into vector FMAs.
 *
 * The block starts from the state of the chunk holding its first query
 * (rows with i' < 0 count from chunk 0, whose state is zero) and takes every
 * later key up to each lane's own position in the in-chunk part, so a block
 * may straddle a chunk edge.
 */
#ifndef RV
#define RV 2
#endif
#ifndef LBK
#define LBK 16
#endif

#define LROWS (8 * RV)

__kernel void linear_output_cpu(__global const store_t *q, __global const store_t *v,
                                __global const float *phik,
                                __global const float *states, __global store_t *o,
                                int q_len, int kv_len, int kv_heads, int group,
                                int chunks, int per_head, ulong q_sb, ulong q_sh,
                                int q_ss, ulong v_sb, ulong v_sh, int v_ss, ulong o_sb,
                                ulong o_sh, int o_ss)
{
    const int blk = get_global_id(0), bkv = get_global_id(1);
    const int b = bkv / kv_heads, kvh = bkv % kv_heads;
    const int hq = kvh * group + blk / per_head;
    const int i0 = blk % per_head * LROWS;
    const int i_last = min(i0 + LROWS, q_len) - 1;
    const int shift = kv_len - q_len;

    float8 qt[D * RV];   /* phi(q), transposed: qt[d * RV + r] */
    float8 acc[DV * RV]; /* acc[e * RV + r] */
    float8 den[RV];
    int8 pos[RV];        /* each lane's i' */

    for (int r = 0; r < RV; r++) {
        float *qf = (float *)&qt[r];
        int *pf = (int *)&pos[r];

        for (int lane = 0; lane < 8; lane++) {
            const int i = min(i0 + r * 8 + lane, i_last);
            __global const store_t *qp = q + b * q_sb + hq * q_sh + (ulong)i * q_ss;

            for (int d = 0; d < D; d++)
                qf[d * RV * 8 + lane] = phi(LOAD(qp, d));
            pf[lane] = i + shift;
        }
        den[r] = 0.0f;
    }

#if MASKED
    const int c0 = max(i0 + shift, 0) / LC;
#else
    const int c0 = chunks;
#endif
    __global const float *st = states + ((ulong)bkv * (chunks + 1) + c0) * E;

    /* What earlier chunks (or all keys) contribute, through the state. */
    for (int e0 = 0; e0 < DV; e0 += 4) {
        float8 a0[RV], a1[RV], a2[RV], a3[RV];

#pragma unroll
        for (int r = 0; r < RV; r++)
            a0[r] = a1[r] = a2[r] = a3[r] = 0.0f;
        for (int d = 0; d < D; d++) {
            __global const float *row = st + d * (DV + 1) + e0;
            const float8 x0 = (float8)(row[0]), x1 = (float8)(row[min(1, DV - e0 - 1)]);
            const float8 x2 = (float8)(row[min(2, DV - e0 - 1)]);
            const float8 x3 = (float8)(row[min(3, DV - e0 - 1)]);

#pragma unroll
            for (int r = 0; r < RV; r++) {
                const float8 p = qt[d * RV + r];

                a0[r] = fma(p, x0, a0[r]);
                a1[r] = fma(p, x1, a1[r]);
                a2[r] = fma(p, x2, a2[r]);
                a3[r] = fma(p, x3, a3[r]);
            }
        }
#pragma unroll
        for (int r = 0; r < RV; r++) {
            acc[e0 * RV + r] = a0[r];
            if (e0 + 1 < DV)
                acc[(e0 + 1) * RV + r] = a1[r];
            if (e0 + 2 < DV)
                acc[(e0 + 2) * RV + r] = a2[r];
            if (e0 + 3 < DV)
                acc[(e0 + 3) * RV + r] = a3[r];
        }
    }
    for (int d = 0; d < D; d++) {
        const float8 z = (float8)(st[d * (DV + 1) + DV]);

#pragma unroll
        for (int r = 0; r < RV; r++)
            den[r] = fma(qt[d * RV + r], z, den[r]);
    }

#if MASKED
    /* The keys from the chunk's start up to each lane's position. */
    __global const float *pk = phik + (ulong)bkv * kv_len * D;
    __global const store_t *vb = v + b * v_sb + kvh * v_sh;
    const int jhi = min(i_last + shift, kv_len - 1);
    float8 s[LBK * RV];

    for (int j0 = c0 * LC; j0 <= jhi; j0 += LBK) {
        const int n = min(LBK, jhi - j0 + 1);

        for (int c = 0; c < n; c += 4) {
            __global const float *k0 = pk + (ulong)min(j0 + c, jhi) * D;
            __global const float *k1 = pk + (ulong)min(j0 + c + 1, jhi) * D;
            __global const float *k2 = pk + (ulong)min(j0 + c + 2, jhi) * D;
            __global const float *k3 = pk + (ulong)min(j0 + c + 3, jhi) * D;
            float8 a0[RV], a1[RV], a2[RV], a3[RV];

#pragma unroll
            for (int r = 0; r < RV; r++)
                a0[r] = a1[r] = a2[r] = a3[r] = 0.0f;
            for (int d = 0; d < D; d++) {
                const float8 x0 = (float8)(k0[d]), x1 = (float8)(k1[d]);
                const float8 x2 = (float8)(k2[d]), x3 = (float8)(k3[d]);

#pragma unroll
                for (int r = 0; r < RV; r++) {
                    const float8 p = qt[d * RV + r];

                    a0[r] = fma(p, x0, a0[r]);
                    a1[r] = fma(p, x1, a1[r]);
                    a2[r] = fma(p, x2, a2[r]);
                    a3[r] = fma(p, x3, a3[r]);
                }
            }
#pragma unroll
            for (int r = 0; r < RV; r++) {
                const int8 j = (int8)(j0 + c);

                s[c * RV + r] = select((float8)(0.0f), a0[r], j <= pos[r]);
                s[(c + 1) * RV + r] = select((float8)(0.0f), a1[r], j + 1 <= pos[r]);
                s[(c + 2) * RV + r] = select((float8)(0.0f), a2[r], j + 2 <= pos[r]);
                s[(c + 3) * RV + r] = select((float8)(0.0f), a3[r], j + 3 <= pos[r]);
            }
        }

        /* Columns past n hold clamped keys: the loops below stop at n. */
        for (int c = 0; c < n; c++) {
#pragma unroll
            for (int r = 0; r < RV; r++)
                den[r] += s[c * RV + r];
        }
        int e = 0;
        for (; e + 4 <= DV; e += 4) {
            float8 o0[RV], o1[RV], o2[RV], o3[RV];

#pragma unroll
            for (int r = 0; r < RV; r++) {
                o0[r] = acc[e * RV + r];
                o1[r] = acc[(e + 1) * RV + r];
                o2[r] = acc[(e + 2) * RV + r];
                o3[r] = acc[(e + 3) * RV + r];
            }
            for (int c = 0; c < n; c++) {
                __global const store_t *vr = vb + (ulong)(j0 + c) * v_ss + e;
                const float8 x0 = (float8)(LOAD(vr, 0)), x1 = (float8)(LOAD(vr, 1));
                const float8 x2 = (float8)(LOAD(vr, 2)), x3 = (float8)(LOAD(vr, 3));

#pragma unroll
                for (int r = 0; r < RV; r++) {
                    const float8 p = s[c * RV + r];

                    o0[r] = fma(p, x0, o0[r]);
                    o1[r] = fma(p, x1, o1[r]);
                    o2[r] = fma(p, x2, o2[r]);
                    o3[r] = fma(p, x3, o3[r]);
                }
            }
#pragma unroll
            for (int r = 0; r < RV; r++) {
                acc[e * RV + r] = o0[r];
                acc[(e + 1) * RV + r] = o1[r];
                acc[(e + 2) * RV + r] = o2[r];
                acc[(e + 3) * RV + r] = o3[r];
            }
        }
        for (; e < DV; e++) {
            for (int c = 0; c < n; c++) {
                const float x = LOAD(vb + (ulong)(j0 + c) * v_ss, e);

#pragma unroll
                for (int r = 0; r < RV; r++)
                    acc[e * RV + r] = fma(s[c * RV + r], (float8)(x), acc[e * RV + r]);
            }
        }
    }
#endif

    for (int r = 0; r < RV; r++) {
        const float8 inv = 1.0f / (den[r] + EPS);

        for (int lane = 0; lane < 8; lane++) {
            const int i = i0 + r * 8 + lane;

            if (i > i_last)
                break;

            __global store_t *op = o + b * o_sb + hq * o_sh + (ulong)i * o_ss;
            const float w = ((const float *)&inv)[lane];

            for (int e = 0; e < DV; e++)
                STORE(((const float *)&acc[e * RV + r])[lane] * w, op, e);
        }
    }
}
