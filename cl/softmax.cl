/*
 * The softmax of the naive variant. Scores arrive already scaled (by the
 * GEMM's alpha), one row of kv_len per query row, rows ordered
 * [batch, q_heads, q_len].
 *
 * The host computes scores by blocks of block query rows, from query first
 * on, and only in the columns [blo, bhi] that some row of the block sees: the
 * union of the rows' bands. Entries outside them hold whatever the buffer had
 * before (older runs, or garbage), so nothing here reads them. Within its
 * block's columns, each row becomes probabilities in place: zero outside its
 * own band. The rows before first see no key: no GEMM writes their output,
 * so this kernel does, with zeros (and -inf as their log-sum-exp), as the
 * header defines for such rows.
 *
 * softmax_rows suits CPUs (one work-item per row, in float8 vectors along
 * it); softmax_rows_wg suits GPUs (a work-group of SM_WG work-items per row,
 * reducing in local memory).
 */
#ifndef SM_WG
#define SM_WG 128
#endif
#ifndef DV
#define DV 64
#endif

/* The columns the block of query qi covers: the band of its first row's low
 * side and its last row's high side, since both sides rise with the row. */
inline int2 block_cols(int qi, int q_len, int kv_len, int left, int right, int first,
                       int block)
{
    const int shift = kv_len - q_len;
    const int r0 = first + (qi - first) / block * block;
    const int r1 = min(r0 + block, q_len) - 1;

    return (int2)(band_lo(r0, shift, left), band_hi(r1, shift, right, kv_len));
}

inline float max_of(float8 x)
{
    const float4 h = fmax(x.lo, x.hi);
    const float2 q = fmax(h.lo, h.hi);

    return fmax(q.x, q.y);
}

inline float sum_of(float8 x)
{
    const float4 h = x.lo + x.hi;
    const float2 q = h.lo + h.hi;

    return q.x + q.y;
}

/* The output row of query row `row` (numbered like the scores). */
inline __global float *out_row(__global float *o, int row, int q_len, int q_heads,
                               ulong o_batch, ulong o_head, ulong o_seq)
{
    const int qi = row % q_len, h = row / q_len % q_heads, b = row / q_len / q_heads;

    return o + b * o_batch + h * o_head + qi * o_seq;
}

__kernel void softmax_rows(__global float *s, __global float *lse, int rows, int q_len,
                           int kv_len, int left, int right, int first, int block,
                           __global float *o, int q_heads, ulong o_batch, ulong o_head,
                           ulong o_seq)
{
    const int row = get_global_id(0);

    if (row >= rows)
        return;

    const int qi = row % q_len, shift = kv_len - q_len;

    if (qi < first) {
        __global float *out = out_row(o, row, q_len, q_heads, o_batch, o_head, o_seq);

        for (int c = 0; c < DV; c++)
            out[c] = 0.0f;
#if WANT_LSE
        lse[row] = -INFINITY;
#endif
        return;
    }

    const int lo = band_lo(qi, shift, left), hi = band_hi(qi, shift, right, kv_len);
    const int2 cols = block_cols(qi, q_len, kv_len, left, right, first, block);
    __global float *p = s + (ulong)row * kv_len;
    const int end = lo + (hi - lo + 1) / 8 * 8; /* the band's whole vectors */
    float8 mx8 = (float8)(-INFINITY), sum8 = (float8)(0.0f);
    float mx, sum;
    int j;

    /* The band's scores go by float8 vectors, from lo on, with the last
     * few one by one. Exponents are taken once, stored, and scaled once the
     * sum is known. */
    for (j = lo; j < end; j += 8)
        mx8 = fmax(mx8, vload8(0, p + j));
    mx = max_of(mx8);
    for (; j <= hi; j++)
        mx = fmax(mx, p[j]);

    for (j = lo; j < end; j += 8) {
        const float8 e = exp(vload8(0, p + j) - mx);

        vstore8(e, 0, p + j);
        sum8 += e;
    }
    sum = sum_of(sum8);
    for (; j <= hi; j++) {
        p[j] = exp(p[j] - mx);
        sum += p[j];
    }

    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;

    for (j = lo; j < end; j += 8)
        vstore8(vload8(0, p + j) * inv, 0, p + j);
    for (; j <= hi; j++)
        p[j] *= inv;
    for (j = cols.x; j < lo; j++)
        p[j] = 0.0f;
    for (j = hi + 1; j <= cols.y; j++)
        p[j] = 0.0f;
#if WANT_LSE
    lse[row] = sum > 0.0f ? mx + log(sum) : -INFINITY;
#endif
}

__kernel __attribute__((reqd_work_group_size(SM_WG, 1, 1)))
void softmax_rows_wg(__global float *s, __global float *lse, int rows, int q_len,
                     int kv_len, int left, int right, int first, int block,
                     __global float *o, int q_heads, ulong o_batch, ulong o_head,
                     ulong o_seq)
{
    __local float red[SM_WG];
    const int row = get_group_id(0), lid = get_local_id(0);
    const int qi = row % q_len, shift = kv_len - q_len;

    /* The whole work-group takes this branch or the other: no barrier is
     * skipped by some of its work-items only. */
    if (qi < first) {
        __global float *out = out_row(o, row, q_len, q_heads, o_batch, o_head, o_seq);

        for (int c = lid; c < DV; c += SM_WG)
            out[c] = 0.0f;
#if WANT_LSE
        if (lid == 0)
            lse[row] = -INFINITY;
#endif
        return;
    }

    const int lo = band_lo(qi, shift, left), hi = band_hi(qi, shift, right, kv_len);
    const int2 cols = block_cols(qi, q_len, kv_len, left, right, first, block);
    __global float *p = s + (ulong)row * kv_len;
    float x = -INFINITY;

    for (int j = lo + lid; j <= hi; j += SM_WG)
        x = fmax(x, p[j]);
    red[lid] = x;
    for (int w = SM_WG / 2; w > 0; w /= 2) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < w)
            red[lid] = fmax(red[lid], red[lid + w]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    const float mx = red[0];

    x = 0.0f;
    for (int j = lo + lid; j <= hi; j += SM_WG)
        x += exp(p[j] - mx);
    barrier(CLK_LOCAL_MEM_FENCE);
    red[lid] = x;
    for (int w = SM_WG / 2; w > 0; w /= 2) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < w)
            red[lid] += red[lid + w];
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    const float sum = red[0];
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;

    for (int j = cols.x + lid; j <= cols.y; j += SM_WG)
        p[j] = j >= lo && j <= hi ? exp(p[j] - mx) * inv : 0.0f;
#if WANT_LSE
    if (lid == 0)
        lse[row] = sum > 0.0f ? mx + log(sum) : -INFINITY;
#endif
}
