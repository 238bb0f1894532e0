/*
 * Conversions between half storage and the float workspace of the naive
 * variant, which runs its GEMMs in fp32.
 */
__kernel void half_to_float(__global const half *src, __global float *dst, ulong n)
{
    const size_t i = get_global_id(0);

    if (i < n)
        dst[i] = vload_half(i, src);
}

__kernel void float_to_half(__global const float *src, __global half *dst, ulong n)
{
    const size_t i = get_global_id(0);

    if (i < n)
        vstore_half_rte(src[i], i, dst);
}
