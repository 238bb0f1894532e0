/*
 * Prepended to every kernel family. The runtime defines, as build options:
 *   D, DV        head sizes of Q/K and of V/O
 *   DTYPE_F16    1 when tensors are stored as IEEE half
 *   MASKED       1 when a causal or window mask applies
 *   WANT_LSE     1 when the log-sum-exp is written
 * Lengths, strides and window bounds are kernel arguments.
 */
#ifndef DTYPE_F16
#define DTYPE_F16 0
#endif
#ifndef MASKED
#define MASKED 0
#endif
#ifndef WANT_LSE
#define WANT_LSE 0
#endif
#ifndef SPLIT
#define SPLIT 0
#endif

/* Storage is float or half; arithmetic is always float. vload_half and
 * vstore_half exist on every OpenCL 1.2 device, with or without cl_khr_fp16. */
#if DTYPE_F16
typedef half store_t;
#define LOAD(p, i) vload_half(0, (p) + (i))
#define STORE(x, p, i) vstore_half_rte((x), 0, (p) + (i))
#define LOAD8(p, i) vload_half8(0, (p) + (i))
#define STORE8(x, p, i) vstore_half8_rte((x), 0, (p) + (i))
#else
typedef float store_t;
#define LOAD(p, i) ((p)[i])
#define STORE(x, p, i) ((p)[i] = (x))
#define LOAD8(p, i) vload8(0, (p) + (i))
#define STORE8(x, p, i) vstore8((x), 0, (p) + (i))
#endif

/* The transpose of the 8 x 8 block m, with unpacks, pair shuffles and half
 * swaps that map onto AVX permutes. */
inline void transpose8(float8 *m)
{
    float8 t[8], u[8];

#pragma unroll
    for (int i = 0; i < 8; i += 2) {
        t[i] = (float8)(m[i].s0, m[i + 1].s0, m[i].s1, m[i + 1].s1, m[i].s4,
                        m[i + 1].s4, m[i].s5, m[i + 1].s5);
        t[i + 1] = (float8)(m[i].s2, m[i + 1].s2, m[i].s3, m[i + 1].s3, m[i].s6,
                            m[i + 1].s6, m[i].s7, m[i + 1].s7);
    }
#pragma unroll
    for (int i = 0; i < 8; i += 4) {
        u[i] = (float8)(t[i].s01, t[i + 2].s01, t[i].s45, t[i + 2].s45);
        u[i + 1] = (float8)(t[i].s23, t[i + 2].s23, t[i].s67, t[i + 2].s67);
        u[i + 2] = (float8)(t[i + 1].s01, t[i + 3].s01, t[i + 1].s45, t[i + 3].s45);
        u[i + 3] = (float8)(t[i + 1].s23, t[i + 3].s23, t[i + 1].s67, t[i + 3].s67);
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        m[i] = (float8)(u[i].lo, u[i + 4].lo);
        m[i + 4] = (float8)(u[i].hi, u[i + 4].hi);
    }
}

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

/*
 * The keys row i may see form one band, [lo, hi]: with i' = i + shift
 * (shift = kv_len - q_len), lo = i' - left and hi = i' + right, clipped to
 * the keys that exist. The host passes unbounded sides as bounds wide enough
 * for every row, so no row needs a special case.
 */
inline int band_lo(int i, int shift, int left)
{
    return max(i + shift - left, 0);
}

inline int band_hi(int i, int shift, int right, int kv_len)
{
    return min(i + shift + right, kv_len - 1);
}

/*
 * The rows [first, last] of a block of size rows. Rows are numbered per
 * key/value head: row r is query r % q_len of the group's query head
 * r / q_len. With per_head > 0 (blocks per query head), no block straddles
 * two heads, so a block's queries are consecutive and its band is narrow;
 * with 0, blocks pack rows across heads, which decode (q_len under a block)
 * needs so that the group's heads share every K and V load.
 */
inline int2 block_rows(int block, int size, int q_len, int rows, int per_head)
{
    if (per_head) {
        const int head = block / per_head;
        const int first = head * q_len + block % per_head * size;

        return (int2)(first, min(first + size, (head + 1) * q_len) - 1);
    }
    return (int2)(block * size, min(block * size + size, rows) - 1);
}

/*
 * Split runs: when a problem has too few blocks of rows to fill the device
 * (decode), each block's band of keys is shared among several work-items,
 * and each writes its unnormalized output, running maximum (log2 units) and
 * sum for every row: DV + 2 floats at part_row(), merged by attn_combine.
 */
inline int2 band_share(int first, int last, int splits, int sp)
{
    const int share = (last - first + splits) / splits;
    const int lo = first + sp * share;

    return (int2)(lo, min(last, lo + share - 1));
}

#ifdef DV
inline __global float *part_row(__global float *part, int bkv, int rows, int r,
                                int splits, int sp)
{
    return part + (((ulong)bkv * rows + r) * splits + sp) * (DV + 2);
}
#endif
