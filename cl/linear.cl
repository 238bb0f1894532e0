/*
 * Linear (kernel) attention in chunks of LC keys. The state of chunk c is
 * what the keys before it sum to, sum_j phi(k_j) [v_j, 1]^T: a D x DV matrix
 * and the normalizer z. Row i sees the state of the chunk holding its key
 * position i' = i + kv_len - q_len and, when causal, the keys of that chunk up
 * to i'; without a mask it sees the state after the last chunk, the total.
 * Sums across chunks are compensated, so that long sequences keep their
 * precision.
 *
 * GPU shape, one work-item per element or row:
 *   linear_chunk_state  one work-item per chunk and key/value head: phi(K)
 *                       into a workspace, and the chunk's own sum, a
 *                       D x (DV + 1) matrix whose last column is z.
 *   linear_scan         one work-item per state element: turns the chunk
 *                       sums into exclusive prefix sums (what a chunk's rows
 *                       see from earlier chunks) and appends the total.
 *   linear_output       one work-item per query row: phi(q) times the state
 *                       its chunk starts from (or the total when not causal),
 *                       plus, when causal, the masked quadratic part inside
 *                       its own chunk.
 *
 * CPU shape, one kernel, linear_cpu, further below.
 *
 * Build options, beside the prelude's: FEATURE (0 elu + 1, 1 relu), LC
 * (keys per chunk) and MASKED (1 when causal); RV for the CPU kernel.
 */
#ifndef FEATURE
#define FEATURE 0
#endif
#ifndef LC
#define LC 64
#endif

#define E (D * (DV + 1)) /* floats in one state of the GPU kernels */
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
 * linear_cpu, for CPU devices: a single kernel. A work-item owns one
 * key/value head, or a slice of its columns when the host splits them
 * because there are few heads, and walks the chunks in order, keeping the
 * running state in private memory:
 *   1. phi of the chunk's keys into a private block,
 *   2. when causal, the output rows of the chunk's query positions, for each
 *      query head of the group: phi(Q) times the running state (the chunk's
 *      state) plus the masked product with the chunk's keys,
 *   3. the chunk's phi(K)^T V folded into the running state.
 * Without a mask the rows come after the last chunk, from the total. No state
 * or phi(K) goes through global memory: K, V and Q are read once (once per
 * slice) and O written once.
 *
 * Output rows run in blocks of LROWS = 8 * RV queries with their DV columns
 * along the lanes. The products with the state, P V and the fold share one
 * register block (mma_v, mma_p): four rows by two float8 vectors of columns,
 * eight accumulators, each step four broadcasts and two vector loads. The
 * scores take phi(q) transposed, queries along the lanes: four keys by RV
 * vectors of queries.
 */
#ifndef RV
#define RV 2
#endif

#define LROWS (8 * RV)
#define DVP ((DV + 15) / 16 * 16) /* a row of the state: DV columns, zeros to 16s */
#define DVB (DVP / 8)             /* float8 vectors in such a row */
#define DP8 ((D + 7) / 8 * 8)     /* a row of the private phi(K) block */
/* The host slices the columns so that a slice's state fits in these. */
#define SUM_VECTORS (D * DVB < 2048 ? D * DVB : 2048)

/*
 * e^x for the lanes where x <= 0, which is all elu + 1 needs of it: x = n ln2
 * + f with |f| <= ln2 / 2, e^f from Cephes' expf polynomial and 2^n put into
 * the exponent, about 1 ulp. Below -87 it returns e^-87 rather than a
 * denormal. The library's exp took a noticeable share of the kernel.
 */
inline float8 exp_nonpositive(float8 x)
{
    const float8 xc = fmax(x, -87.0f);
    /* Adding 1.5 * 2^23 rounds to an integer in one instruction, where rint
     * takes a dozen. */
    const float8 n = fma(xc, LOG2E, 12582912.0f) - 12582912.0f;
    const float8 f = fma(n, -1.42860677e-6f, fma(n, -6.93145752e-1f, xc));
    float8 p = 1.9875691500e-4f;

    p = fma(p, f, 1.3981999507e-3f);
    p = fma(p, f, 8.3334519073e-3f);
    p = fma(p, f, 4.1665795894e-2f);
    p = fma(p, f, 1.6666665459e-1f);
    p = fma(p, f, 5.0000001201e-1f);
    p = fma(p * f, f, f + 1.0f);
    return as_float8(as_int8(p) + (convert_int8(n) << 23));
}

inline float8 phi8(float8 x)
{
#if FEATURE == 0
    /* x <= 0 by the bits: where x was widened from half, LLVM otherwise
     * compares the halves, one lane at a time. NaN lanes take x + 1, so
     * that they stay NaN. */
    const int8 bits = as_int8(x);
    const int8 le = (bits <= 0) & ((bits & 0x7fffffff) <= 0x7f800000);

    return select(x + 1.0f, exp_nonpositive(x), le);
#else
    return fmax(x, 0.0f);
#endif
}

inline void store8(float8 x, __global store_t *p, int n)
{
    if (n >= 8) {
#if DTYPE_F16
        vstore_half8_rte(x, 0, p);
#else
        vstore8(x, 0, p);
#endif
        return;
    }

    float t[8];

    vstore8(x, 0, t);
    for (int i = 0; i < n; i++)
        STORE(t[i], p, i);
}

/*
 * acc[2 * r + h] += sum over k < n of a[k * as + r] * b[k * bs + 8 * h + l]
 * for rows r < 4, vectors h < 2 and lanes l < 8. mma_v reads b from V, whole
 * blocks of 16 columns; mma_p from private memory.
 */
inline void mma_v(float8 *acc, const float *a, int as, __global const store_t *b,
                  int bs, int n)
{
    float8 c0 = acc[0], c1 = acc[1], c2 = acc[2], c3 = acc[3];
    float8 c4 = acc[4], c5 = acc[5], c6 = acc[6], c7 = acc[7];

    for (int k = 0; k < n; k++) {
#if DTYPE_F16
        const float8 b0 = vload_half8(0, b + (ulong)k * bs);
        const float8 b1 = vload_half8(1, b + (ulong)k * bs);
#else
        const float8 b0 = vload8(0, b + (ulong)k * bs);
        const float8 b1 = vload8(1, b + (ulong)k * bs);
#endif
        const float8 a0 = (float8)(a[k * as]), a1 = (float8)(a[k * as + 1]);
        const float8 a2 = (float8)(a[k * as + 2]), a3 = (float8)(a[k * as + 3]);

        c0 = fma(a0, b0, c0);
        c1 = fma(a0, b1, c1);
        c2 = fma(a1, b0, c2);
        c3 = fma(a1, b1, c3);
        c4 = fma(a2, b0, c4);
        c5 = fma(a2, b1, c5);
        c6 = fma(a3, b0, c6);
        c7 = fma(a3, b1, c7);
    }
    acc[0] = c0, acc[1] = c1, acc[2] = c2, acc[3] = c3;
    acc[4] = c4, acc[5] = c5, acc[6] = c6, acc[7] = c7;
}

inline void mma_p(float8 *acc, const float *a, int as, const float *b, int bs, int n)
{
    float8 c0 = acc[0], c1 = acc[1], c2 = acc[2], c3 = acc[3];
    float8 c4 = acc[4], c5 = acc[5], c6 = acc[6], c7 = acc[7];

    for (int k = 0; k < n; k++) {
        const float8 b0 = vload8(0, b + k * bs), b1 = vload8(1, b + k * bs);
        const float8 a0 = (float8)(a[k * as]), a1 = (float8)(a[k * as + 1]);
        const float8 a2 = (float8)(a[k * as + 2]), a3 = (float8)(a[k * as + 3]);

        c0 = fma(a0, b0, c0);
        c1 = fma(a0, b1, c1);
        c2 = fma(a1, b0, c2);
        c3 = fma(a1, b1, c3);
        c4 = fma(a2, b0, c4);
        c5 = fma(a2, b1, c5);
        c6 = fma(a3, b0, c6);
        c7 = fma(a3, b1, c7);
    }
    acc[0] = c0, acc[1] = c1, acc[2] = c2, acc[3] = c3;
    acc[4] = c4, acc[5] = c5, acc[6] = c6, acc[7] = c7;
}

/* mma_v over a block of V with cols columns left in its rows: the last
 * block, when DV is not a multiple of 16, goes through stage (2 n vectors)
 * padded with zeros, so that the loads of whole blocks need no test. */
inline void mma_v_cols(float8 *acc, const float *a, int as, __global const store_t *b,
                       int bs, int n, int cols, float8 *stage)
{
    if (cols >= 16) {
        mma_v(acc, a, as, b, bs, n);
        return;
    }
    for (int k = 0; k < n; k++) {
        stage[2 * k] = load8(b + (ulong)k * bs, cols);
        stage[2 * k + 1] = load8(b + (ulong)k * bs + 8, cols - 8);
    }
    mma_p(acc, a, as, (const float *)stage, 16, n);
}

/* sum += x, carrying what the addition loses into the next one (Kahan). */
inline void add_compensated(float8 *sum, float8 *lost, float8 x)
{
    const float8 y = x - *lost, t = *sum + y;

    *lost = (t - *sum) - y;
    *sum = t;
}

/* phi(q) of rows i0.., transposed: qt[d * RV + r] holds dimension d of rows
 * i0 + 8 r... along its lanes; rows past i_last repeat it. */
inline void phi_rows(float8 *qt, __global const store_t *qb, int q_ss, int i0, int i_last)
{
    for (int r = 0; r < RV; r++) {
        for (int d0 = 0; d0 < D; d0 += 8) {
            float8 m[8];

#pragma unroll
            for (int lane = 0; lane < 8; lane++) {
                const int i = min(i0 + r * 8 + lane, i_last);

                m[lane] = phi8(load8(qb + (ulong)i * q_ss + d0, D - d0));
            }
            transpose8(m);
#pragma unroll
            for (int x = 0; x < 8; x++)
                if (d0 + x < D)
                    qt[(d0 + x) * RV + r] = m[x];
        }
    }
}

/* What the state contributes to the block's rows: ob = phi(Q) S over the
 * slice's cvb vectors of columns, and den = phi(Q) z. */
inline void state_rows(float8 *ob, float8 *den, const float8 *qt, const float8 *sum,
                       const float8 *zsum, int cvb)
{
    /* Columns outside, so that a block of the state stays in L1 for all
     * the rows. */
    for (int x0 = 0; x0 < cvb; x0 += 2) {
        for (int i = 0; i < LROWS; i += 4) {
            float8 acc[8];

#pragma unroll
            for (int x = 0; x < 8; x++)
                acc[x] = 0.0f;
            mma_p(acc, (const float *)qt + i, LROWS, (const float *)(sum + x0), cvb * 8,
                  D);
#pragma unroll
            for (int x = 0; x < 8; x++)
                ob[(i + x / 2) * cvb + x0 + x % 2] = acc[x];
        }
    }
#pragma unroll
    for (int r = 0; r < RV; r++)
        den[r] = 0.0f;
    for (int d = 0; d < D; d++) {
        const float8 z = (float8)(((const float *)zsum)[d]);

#pragma unroll
        for (int r = 0; r < RV; r++)
            den[r] = fma(qt[d * RV + r], z, den[r]);
    }
}

/*
 * The chunk's keys up to each lane's position (pos, counted from the chunk's
 * start): scores of four keys by the block's rows at a time, masked, into s
 * (s[c * RV + r], queries along the lanes), then added to den and, through
 * P V, to ob. vr is V at the chunk's first key and the slice's first column.
 */
inline void chunk_rows(float8 *ob, float8 *den, float8 *s, const float8 *qt,
                       const float8 *pk, const int8 *pos, int n,
                       __global const store_t *vr, int v_ss, int cvb, int cols,
                       float8 *stage)
{
    const float *pkf = (const float *)pk;

    for (int c = 0; c < n; c += 4) {
        /* Keys past n repeat the last one; the loops below stop at n. */
        const float *k0 = pkf + c * DP8, *k1 = pkf + min(c + 1, n - 1) * DP8;
        const float *k2 = pkf + min(c + 2, n - 1) * DP8;
        const float *k3 = pkf + min(c + 3, n - 1) * DP8;
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
            s[c * RV + r] = select((float8)(0.0f), a0[r], c <= pos[r]);
            s[(c + 1) * RV + r] = select((float8)(0.0f), a1[r], c + 1 <= pos[r]);
            s[(c + 2) * RV + r] = select((float8)(0.0f), a2[r], c + 2 <= pos[r]);
            s[(c + 3) * RV + r] = select((float8)(0.0f), a3[r], c + 3 <= pos[r]);
        }
    }

    for (int c = 0; c < n; c++) {
#pragma unroll
        for (int r = 0; r < RV; r++)
            den[r] += s[c * RV + r];
    }
    for (int i = 0; i < LROWS; i += 4) {
        for (int x0 = 0; x0 < cvb; x0 += 2) {
            float8 acc[8];

#pragma unroll
            for (int x = 0; x < 8; x++)
                acc[x] = ob[(i + x / 2) * cvb + x0 + x % 2];
            mma_v_cols(acc, (const float *)s + i, LROWS, vr + x0 * 8, v_ss, n,
                       cols - x0 * 8, stage);
#pragma unroll
            for (int x = 0; x < 8; x++)
                ob[(i + x / 2) * cvb + x0 + x % 2] = acc[x];
        }
    }
}

/* Rows i0..i_last of the block, divided by their weights: cols columns from
 * op, the slice's first column of row i0. */
inline void store_rows(const float8 *ob, const float8 *den, __global store_t *op,
                       int o_ss, int i0, int i_last, int cvb, int cols)
{
    for (int r = 0; r < RV; r++) {
        const float8 inv = 1.0f / (den[r] + EPS);

        for (int lane = 0; lane < 8; lane++) {
            const int i = r * 8 + lane;

            if (i0 + i > i_last)
                return;

            const float w = ((const float *)&inv)[lane];

            for (int x = 0; x * 8 < cols; x++)
                store8(ob[i * cvb + x] * w, op + (ulong)i * o_ss + x * 8, cols - x * 8);
        }
    }
}

__kernel void linear_cpu(__global const store_t *q, __global const store_t *k,
                         __global const store_t *v, __global store_t *o, int q_len,
                         int kv_len, int kv_heads, int group, int chunks, ulong q_sb,
                         ulong q_sh, int q_ss, ulong k_sb, ulong k_sh, int k_ss,
                         ulong v_sb, ulong v_sh, int v_ss, ulong o_sb, ulong o_sh,
                         int o_ss)
{
    const int slice = get_global_id(0), bkv = get_global_id(1);
    const int b = bkv / kv_heads, kvh = bkv % kv_heads;
    /* The slice's columns: cvb vectors from e_lo, cols of them real. */
    const int cvb = DVB / (int)get_global_size(0), e_lo = slice * cvb * 8;
    const int cols = min(cvb * 8, DV - e_lo), shift = kv_len - q_len;
    __global const store_t *kb = k + b * k_sb + kvh * k_sh;
    __global const store_t *vb = v + b * v_sb + kvh * v_sh + e_lo;

    float8 pk[LC * DP8 / 8];                    /* phi(k_j) of the chunk: row j */
    float8 sum[SUM_VECTORS], lost[SUM_VECTORS]; /* the state: row d at d * cvb */
    float8 z[DP8 / 8], zsum[DP8 / 8], zlost[DP8 / 8];
    float8 qt[D * RV];      /* phi(q) of a block, transposed */
    float8 ob[LROWS * DVB]; /* a block's output rows: row i at i * cvb */
    float8 den[RV];
    float8 stage[2 * LC]; /* V's last block of columns, when partial */
    const float *pkf = (const float *)pk;

    for (int i = 0; i < D * cvb; i++)
        sum[i] = lost[i] = 0.0f;
    for (int i = 0; i < DP8 / 8; i++)
        zsum[i] = zlost[i] = 0.0f;

#if MASKED
    float8 s[LC * RV]; /* a block's masked scores */

    /* Rows whose i' is negative see no key at all. */
    for (int h = 0; h < group; h++) {
        __global store_t *op = o + b * o_sb + (kvh * group + h) * o_sh + e_lo;

        for (int i = 0; i < min(-shift, q_len); i++)
            for (int x = 0; x * 8 < cols; x++)
                store8((float8)(0.0f), op + (ulong)i * o_ss + x * 8, cols - x * 8);
    }
#endif

    for (int c = 0; c < chunks; c++) {
        const int j0 = c * LC, n = min(LC, kv_len - j0);

        for (int x = 0; x < DP8 / 8; x++)
            z[x] = 0.0f;
        for (int j = 0; j < n; j++) {
            __global const store_t *kr = kb + (ulong)(j0 + j) * k_ss;

            for (int x = 0; x < DP8 / 8; x++) {
                const float8 p = phi8(load8(kr + x * 8, D - x * 8));

                pk[j * DP8 / 8 + x] = p;
                z[x] += p;
            }
        }

#if MASKED
        /* The rows whose i' falls in this chunk, from its state on. */
        const int lo = max(j0 - shift, 0), hi = j0 + n - 1 - shift;

        for (int h = 0; h < group; h++) {
            const int hq = kvh * group + h;
            __global const store_t *qb = q + b * q_sb + hq * q_sh;
            __global store_t *oh = o + b * o_sb + hq * o_sh + e_lo;

            for (int i0 = lo; i0 <= hi; i0 += LROWS) {
                const int i_last = min(i0 + LROWS - 1, hi);
                int8 pos[RV];

#pragma unroll
                for (int r = 0; r < RV; r++)
                    pos[r] = min(i0 + r * 8 + (int8)(0, 1, 2, 3, 4, 5, 6, 7), i_last) +
                             shift - j0;
                phi_rows(qt, qb, q_ss, i0, i_last);
                state_rows(ob, den, qt, sum, zsum, cvb);
                chunk_rows(ob, den, s, qt, pk, pos, i_last + shift - j0 + 1,
                           vb + (ulong)j0 * v_ss, v_ss, cvb, cols, stage);
                store_rows(ob, den, oh + (ulong)i0 * o_ss, o_ss, i0, i_last, cvb, cols);
            }
        }
#endif

        /* Fold the chunk into the state: phi(K)^T V, four rows of the state
         * by sixteen columns at a time. */
        for (int x0 = 0; x0 < cvb; x0 += 2) {
            __global const store_t *vr = vb + (ulong)j0 * v_ss + x0 * 8;

            for (int r0 = 0; r0 < D; r0 += 4) {
                float8 acc[8];

#pragma unroll
                for (int i = 0; i < 8; i++)
                    acc[i] = 0.0f;
                mma_v_cols(acc, pkf + r0, DP8, vr, v_ss, n, cols - x0 * 8, stage);
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    const int r = r0 + i / 2, y = r * cvb + x0 + i % 2;

                    if (r < D)
                        add_compensated(&sum[y], &lost[y], acc[i]);
                }
            }
        }
        for (int x = 0; x < DP8 / 8; x++)
            add_compensated(&zsum[x], &zlost[x], z[x]);
    }

#if !MASKED
    /* Every row sees the total. */
    for (int h = 0; h < group; h++) {
        const int hq = kvh * group + h;
        __global const store_t *qb = q + b * q_sb + hq * q_sh;
        __global store_t *oh = o + b * o_sb + hq * o_sh + e_lo;

        for (int i0 = 0; i0 < q_len; i0 += LROWS) {
            const int i_last = min(i0 + LROWS, q_len) - 1;

            phi_rows(qt, qb, q_ss, i0, i_last);
            state_rows(ob, den, qt, sum, zsum, cvb);
            store_rows(ob, den, oh + (ulong)i0 * o_ss, o_ss, i0, i_last, cvb, cols);
        }
    }
#endif
}
