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
