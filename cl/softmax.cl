/*
 * The softmax of the naive variant. Scores arrive already scaled (by the
 * GEMM's alpha), one row of kv_len per query row, rows ordered
 * [batch, q_heads, q_len]. Each row becomes probabilities in place: zero
 * outside the row's band, and all zero for a row that sees no key.
 *
 * softmax_rows suits CPUs (one work-item per row); softmax_rows_wg suits GPUs
 * (a work-group of SM_WG work-items per row, reducing in local memory).
 */
#ifndef SM_WG
#define SM_WG 128
#endif

__kernel void softmax_rows(__global float *s, __global float *lse, int rows, int q_len,
                           int kv_len, int left, int right)
{
    const int row = get_global_id(0);

    if (row >= rows)
        return;

    const int qi = row % q_len, shift = kv_len - q_len;
    const int lo = band_lo(qi, shift, left), hi = band_hi(qi, shift, right, kv_len);
    __global float *p = s + (ulong)row * kv_len;
    float mx = -INFINITY, sum = 0.0f;

    for (int j = lo; j <= hi; j++)
        mx = fmax(mx, p[j]);
    for (int j = lo; j <= hi; j++)
        sum += exp(p[j] - mx);

    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;

    for (int j = 0; j < kv_len; j++)
        p[j] = j >= lo && j <= hi ? exp(p[j] - mx) * inv : 0.0f;
#if WANT_LSE
    lse[row] = sum > 0.0f ? mx + log(sum) : -INFINITY;
#endif
}

__kernel __attribute__((reqd_work_group_size(SM_WG, 1, 1)))
void softmax_rows_wg(__global float *s, __global float *lse, int rows, int q_len,
                     int kv_len, int left, int right)
{
    __local float red[SM_WG];
    const int row = get_group_id(0), lid = get_local_id(0);
    const int qi = row % q_len, shift = kv_len - q_len;
    const int lo = band_lo(qi, shift, left), hi = band_hi(qi, shift, right, kv_len);
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

    for (int j = lid; j < kv_len; j += SM_WG)
        p[j] = j >= lo && j <= hi ? exp(p[j] - mx) * inv : 0.0f;
#if WANT_LSE
    if (lid == 0)
        lse[row] = sum > 0.0f ? mx + log(sum) : -INFINITY;
#endif
}
