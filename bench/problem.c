#include "problem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * Random numbers: splitmix64 seeds one xoshiro256** stream per tensor, so a
 * tensor's values depend only on the seed and the tensor, not on the sizes of
 * the others.
 */
typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t state = seed ^ (stream * 0xd1b54a32d192ed03u);

    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&state);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in (0, 1], never 0 so that its logarithm is finite. */
static double rng_unit(rng *r)
{
    return ((rng_next(r) >> 11) + 1) * 0x1.0p-53;
}

/* Fills n values with N(0, 1) by the Box-Muller transform. */
static void rng_normal(rng *r, float *out, size_t n)
{
    const double two_pi = 6.283185307179586;

    for (size_t i = 0; i < n; i += 2) {
        double radius = sqrt(-2.0 * log(rng_unit(r)));
        double angle = two_pi * rng_unit(r);

        out[i] = (float)(radius * cos(angle));
        if (i + 1 < n)
            out[i + 1] = (float)(radius * sin(angle));
    }
}

/*
 * Half conversions work on the bits so that they do not depend on the host
 * compiler's support for _Float16.
 */
static uint32_t float_bits(float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u)
{
    float f;

    memcpy(&f, &u, sizeof f);
    return f;
}

/* Shifts m right by shift bits, rounding to nearest, ties to even. */
static uint32_t shift_round_even(uint32_t m, int shift)
{
    uint32_t kept = m >> shift;
    uint32_t rest = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);

    if (rest > half || (rest == half && (kept & 1)))
        kept++;
    return kept;
}

uint16_t problem_float_to_half(float f)
{
    uint32_t x = float_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t abs = x & 0x7fffffff;
    int exponent = (int)(abs >> 23);
    uint32_t mantissa = abs & 0x7fffff;

    if (abs > 0x7f800000)
        return sign | 0x7e00 | (uint16_t)(mantissa >> 13);
    if (abs >= 0x47800000)
        return sign | 0x7c00;

    /* A carry out of the mantissa correctly bumps the exponent, up to inf. */
    if (exponent >= 113) {
        uint32_t h = ((uint32_t)(exponent - 112) << 10) | (mantissa >> 13);

        return sign | (uint16_t)shift_round_even((h << 13) | (mantissa & 0x1fff), 13);
    }

    /* Below the smallest normal half: count units of 2^-24. */
    int shift = 126 - exponent;

    if (shift > 24)
        return sign;
    return sign | (uint16_t)shift_round_even(mantissa | 0x800000, shift);
}

float problem_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;

    if (exponent == 0) {
        float value = ldexpf((float)mantissa, -24);

        return sign ? -value : value;
    }
    if (exponent == 31)
        return bits_float(sign | 0x7f800000 | (mantissa << 13));
    return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

void problem_poison(void *data, size_t n, clattn_dtype dtype)
{
    if (dtype == CLATTN_F16) {
        uint16_t *h = data;

        for (size_t i = 0; i < n; i++)
            h[i] = 0x7e00;
        return;
    }

    float *f = data;
    float nan = bits_float(0x7fc00000);

    for (size_t i = 0; i < n; i++)
        f[i] = nan;
}

uint64_t problem_seed_from_env(void)
{
    const char *text = getenv("CLATTN_TEST_SEED");

    if (text && *text)
        return strtoull(text, NULL, 10);

    struct timespec now;
    uint64_t state;

    clock_gettime(CLOCK_REALTIME, &now);
    state = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    state ^= (uint64_t)getpid() << 32;

    /* Keep seeds short enough to read and retype. */
    return splitmix64(&state) % 1000000000000u;
}

double problem_tolerance(const problem *p)
{
    return p->desc.dtype == CLATTN_F16 ? 2e-3 : 1e-4;
}

static double storage_value(const void *data, size_t i, clattn_dtype dtype)
{
    if (dtype == CLATTN_F16)
        return problem_half_to_float(((const uint16_t *)data)[i]);
    return ((const float *)data)[i];
}

double problem_output_error(const problem *p, const void *o)
{
    double diff = 0.0, norm = 0.0;

    for (size_t i = 0; i < p->o_count; i++) {
        double value = storage_value(o, i, p->desc.dtype);
        double d = value - p->o_ref[i];

        if (isnan(value))
            return INFINITY;
        diff += d * d;
        norm += p->o_ref[i] * p->o_ref[i];
    }
    return sqrt(diff) / fmax(sqrt(norm), 1e-30);
}

double problem_lse_error(const problem *p, const float *lse)
{
    double diff = 0.0, norm = 0.0;

    for (size_t i = 0; i < p->lse_count; i++) {
        double ref = p->lse_ref[i];
        double d = lse[i] - ref;

        if (isnan(lse[i]))
            return INFINITY;
        if (isinf(ref) || isinf(lse[i])) {
            if (lse[i] != ref)
                return INFINITY;
            continue;
        }
        diff += d * d;
        norm += ref * ref;
    }
    return sqrt(diff) / fmax(sqrt(norm), 1e-30);
}

/*
 * Element offsets of row (b, h, i) of a tensor in either layout; every row is
 * contiguous along its head dimension.
 */
typedef struct tensor_shape {
    size_t heads, len, dim;
    clattn_layout layout;
} tensor_shape;

static size_t row_offset(const tensor_shape *t, size_t b, size_t h, size_t i)
{
    if (t->layout == CLATTN_LAYOUT_BHSD)
        return ((b * t->heads + h) * t->len + i) * t->dim;
    return ((b * t->len + i) * t->heads + h) * t->dim;
}

/*
 * The keys that query row i sees, as [*first, *last]; empty when
 * *first > *last. Bounds use long long so that i' may be negative.
 */
static void visible_keys(const clattn_desc *d, int i, long long *first, long long *last)
{
    long long shifted = (long long)i + d->kv_len - d->q_len;
    long long right = d->window_right;

    /* Causal caps the right bound at 0, whether it was wider or unbounded. */
    if (d->causal)
        right = 0;

    *first = 0;
    *last = d->kv_len - 1;
    if (d->window_left >= 0 && shifted - d->window_left > *first)
        *first = shifted - d->window_left;
    if (right >= 0 && shifted + right < *last)
        *last = shifted + right;
}

static double dot(const double *a, const float *b, size_t n)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t i = 0;

    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

typedef struct reference_rows {
    tensor_shape q, k, v, o;
    double *q_row, *scores;
} reference_rows;

/* Computes output row i of (b, h) and returns its log-sum-exp. */
static double reference_row(const problem *p, reference_rows *r, size_t b, size_t h,
                            int i)
{
    const clattn_desc *d = &p->desc;
    size_t kv_head = h / (size_t)(d->q_heads / d->kv_heads);
    double *out = p->o_ref + row_offset(&r->o, b, h, (size_t)i);
    long long first, last;

    memset(out, 0, (size_t)d->v_head_dim * sizeof *out);
    visible_keys(d, i, &first, &last);
    if (first > last)
        return -INFINITY;

    const float *q = p->qf + row_offset(&r->q, b, h, (size_t)i);
    double max = -INFINITY, sum = 0.0;

    for (int c = 0; c < d->head_dim; c++)
        r->q_row[c] = (double)d->scale * q[c];

    for (long long j = first; j <= last; j++) {
        const float *k = p->kf + row_offset(&r->k, b, kv_head, (size_t)j);
        double s = dot(r->q_row, k, (size_t)d->head_dim);

        r->scores[j] = s;
        max = fmax(max, s);
    }

    for (long long j = first; j <= last; j++) {
        const float *v = p->vf + row_offset(&r->v, b, kv_head, (size_t)j);
        double weight = exp(r->scores[j] - max);

        sum += weight;
        for (int c = 0; c < d->v_head_dim; c++)
            out[c] += weight * v[c];
    }

    for (int c = 0; c < d->v_head_dim; c++)
        out[c] /= sum;
    return max + log(sum);
}

static int reference(problem *p)
{
    const clattn_desc *d = &p->desc;
    reference_rows r = {
        .q = {(size_t)d->q_heads, (size_t)d->q_len, (size_t)d->head_dim, d->layout},
        .k = {(size_t)d->kv_heads, (size_t)d->kv_len, (size_t)d->head_dim, d->layout},
        .v = {(size_t)d->kv_heads, (size_t)d->kv_len, (size_t)d->v_head_dim, d->layout},
        .o = {(size_t)d->q_heads, (size_t)d->q_len, (size_t)d->v_head_dim, d->layout},
        .q_row = malloc((size_t)d->head_dim * sizeof(double)),
        .scores = malloc((size_t)d->kv_len * sizeof(double)),
    };
    int status = -1;

    if (r.q_row && r.scores) {
        for (size_t b = 0; b < (size_t)d->batch; b++) {
            for (size_t h = 0; h < (size_t)d->q_heads; h++) {
                double *lse = p->lse_ref + (b * d->q_heads + h) * d->q_len;

                for (int i = 0; i < d->q_len; i++)
                    lse[i] = reference_row(p, &r, b, h, i);
            }
        }
        status = 0;
    }

    free(r.q_row);
    free(r.scores);
    return status;
}

/* The feature map of linear attention, in double. */
static double feature(clattn_feature_map map, double x)
{
    if (map == CLATTN_FEATURE_RELU)
        return x > 0.0 ? x : 0.0;
    return x > 0.0 ? x + 1.0 : exp(x);
}

/*
 * The running sums of linear attention for one (batch, head): S (D x Dv,
 * row-major) and z (D) over the keys added so far, so that a causal head costs
 * O(N * D * Dv) instead of a sum per row.
 */
typedef struct linear_state {
    tensor_shape q, k, v, o;
    double *s, *z, *phi;
    long long added;
} linear_state;

static void linear_add_key(const problem *p, linear_state *st, size_t b, size_t kv_head)
{
    const clattn_desc *d = &p->desc;
    const float *k = p->kf + row_offset(&st->k, b, kv_head, (size_t)st->added);
    const float *v = p->vf + row_offset(&st->v, b, kv_head, (size_t)st->added);

    for (int c = 0; c < d->head_dim; c++) {
        double phi = feature(d->feature_map, k[c]);
        double *s_row = st->s + (size_t)c * d->v_head_dim;

        st->z[c] += phi;
        for (int e = 0; e < d->v_head_dim; e++)
            s_row[e] += phi * v[e];
    }
    st->added++;
}

/*
 * Writes output row i from the current sums and returns the log of its
 * normalizer phi(q_i) . z_i, -INFINITY when that is 0: then the row, like a
 * row that sees no key, must come out exactly zero.
 */
static double linear_apply(const problem *p, linear_state *st, size_t b, size_t h, int i)
{
    const clattn_desc *d = &p->desc;
    const float *q = p->qf + row_offset(&st->q, b, h, (size_t)i);
    double *out = p->o_ref + row_offset(&st->o, b, h, (size_t)i);
    double normalizer = 0.0;

    memset(out, 0, (size_t)d->v_head_dim * sizeof *out);
    for (int c = 0; c < d->head_dim; c++) {
        const double *s_row = st->s + (size_t)c * d->v_head_dim;

        st->phi[c] = feature(d->feature_map, q[c]);
        normalizer += st->phi[c] * st->z[c];
        for (int e = 0; e < d->v_head_dim; e++)
            out[e] += st->phi[c] * s_row[e];
    }

    for (int e = 0; e < d->v_head_dim; e++)
        out[e] /= normalizer + 1e-6;
    return log(normalizer);
}

/* One (batch, query head): rows in order, each adding the keys it newly sees. */
static void linear_head(const problem *p, linear_state *st, size_t b, size_t h)
{
    const clattn_desc *d = &p->desc;
    size_t kv_head = h / (size_t)(d->q_heads / d->kv_heads);
    double *lse = p->lse_ref + (b * d->q_heads + h) * d->q_len;

    memset(st->s, 0, (size_t)d->head_dim * d->v_head_dim * sizeof(double));
    memset(st->z, 0, (size_t)d->head_dim * sizeof(double));
    st->added = 0;

    for (int i = 0; i < d->q_len; i++) {
        long long last = d->kv_len - 1;

        if (d->causal && (long long)i + d->kv_len - d->q_len < last)
            last = (long long)i + d->kv_len - d->q_len;
        while (st->added <= last)
            linear_add_key(p, st, b, kv_head);

        if (last < 0) {
            memset(p->o_ref + row_offset(&st->o, b, h, (size_t)i), 0,
                   (size_t)d->v_head_dim * sizeof(double));
            lse[i] = -INFINITY;
        } else {
            lse[i] = linear_apply(p, st, b, h, i);
        }
    }
}

/*
 * The reference of the linear variant. lse_ref has no log-sum-exp to hold;
 * it holds the log of each row's normalizer instead, so that rows that must
 * be zero are marked -INFINITY as for softmax.
 */
static int linear_reference(problem *p)
{
    const clattn_desc *d = &p->desc;
    linear_state st = {
        .q = {(size_t)d->q_heads, (size_t)d->q_len, (size_t)d->head_dim, d->layout},
        .k = {(size_t)d->kv_heads, (size_t)d->kv_len, (size_t)d->head_dim, d->layout},
        .v = {(size_t)d->kv_heads, (size_t)d->kv_len, (size_t)d->v_head_dim, d->layout},
        .o = {(size_t)d->q_heads, (size_t)d->q_len, (size_t)d->v_head_dim, d->layout},
        .s = malloc((size_t)d->head_dim * d->v_head_dim * sizeof(double)),
        .z = malloc((size_t)d->head_dim * sizeof(double)),
        .phi = malloc((size_t)d->head_dim * sizeof(double)),
    };
    int status = -1;

    if (st.s && st.z && st.phi) {
        for (size_t b = 0; b < (size_t)d->batch; b++) {
            for (size_t h = 0; h < (size_t)d->q_heads; h++)
                linear_head(p, &st, b, h);
        }
        status = 0;
    }

    free(st.s);
    free(st.z);
    free(st.phi);
    return status;
}

/*
 * Query rows get a random gain of 1/4 to 4, so that some rows have nearly
 * uniform weights and others are dominated by a few keys.
 */
static void scale_rows(float *data, size_t count, size_t dim, uint64_t seed)
{
    static const float gains[4] = {0.25f, 1.0f, 2.0f, 4.0f};
    rng r;

    rng_seed(&r, seed, 4);
    for (size_t row = 0; row < count / dim; row++) {
        float gain = gains[rng_next(&r) >> 62];

        for (size_t c = 0; c < dim; c++)
            data[row * dim + c] *= gain;
    }
}

/*
 * Fills one input tensor. For fp16 the values are rounded to half first, so
 * that the floats are exactly what the device reads.
 */
static void fill_input(problem *p, float *values, void *storage, size_t n, int stream)
{
    rng r;

    rng_seed(&r, p->seed, (uint64_t)stream);
    rng_normal(&r, values, n);
    if (stream == 0)
        scale_rows(values, n, (size_t)p->desc.head_dim, p->seed);

    if (p->desc.dtype == CLATTN_F16) {
        uint16_t *h = storage;

        for (size_t i = 0; i < n; i++) {
            h[i] = problem_float_to_half(values[i]);
            values[i] = problem_half_to_float(h[i]);
        }
    } else {
        memcpy(storage, values, n * sizeof(float));
    }
}

/* Resolves the defaults that clattn_desc leaves to the library. */
static void resolve_defaults(clattn_desc *d)
{
    if (d->kv_heads == 0)
        d->kv_heads = d->q_heads;
    if (d->kv_len == 0)
        d->kv_len = d->q_len;
    if (d->v_head_dim == 0)
        d->v_head_dim = d->head_dim;
    if (d->scale == 0.0f)
        d->scale = (float)(1.0 / sqrt((double)d->head_dim));
}

static int counts_valid(const clattn_desc *d)
{
    return d->batch > 0 && d->q_heads > 0 && d->kv_heads > 0 && d->q_len > 0 &&
           d->kv_len > 0 && d->head_dim > 0 && d->v_head_dim > 0 &&
           d->q_heads % d->kv_heads == 0;
}

static int allocate(problem *p)
{
    size_t e = p->elem_size;

    p->q = malloc(p->q_count * e);
    p->k = malloc(p->k_count * e);
    p->v = malloc(p->v_count * e);
    p->qf = malloc(p->q_count * sizeof(float));
    p->kf = malloc(p->k_count * sizeof(float));
    p->vf = malloc(p->v_count * sizeof(float));
    p->o_ref = malloc(p->o_count * sizeof(double));
    p->lse_ref = malloc(p->lse_count * sizeof(double));

    if (!p->q || !p->k || !p->v || !p->qf || !p->kf || !p->vf || !p->o_ref || !p->lse_ref)
        return -1;
    return 0;
}

int problem_init(problem *p, const clattn_desc *desc, uint64_t seed)
{
    clattn_desc *d = &p->desc;
    int status;

    memset(p, 0, sizeof *p);
    *d = *desc;
    resolve_defaults(d);
    p->seed = seed;
    if (!counts_valid(d)) {
        memset(p, 0, sizeof *p);
        return -1;
    }

    size_t rows_q = (size_t)d->batch * d->q_heads * d->q_len;
    size_t rows_kv = (size_t)d->batch * d->kv_heads * d->kv_len;

    p->q_count = rows_q * d->head_dim;
    p->k_count = rows_kv * d->head_dim;
    p->v_count = rows_kv * d->v_head_dim;
    p->o_count = rows_q * d->v_head_dim;
    p->lse_count = rows_q;
    p->elem_size = d->dtype == CLATTN_F16 ? 2 : 4;

    if (allocate(p) != 0) {
        problem_free(p);
        return -1;
    }

    fill_input(p, p->qf, p->q, p->q_count, 0);
    fill_input(p, p->kf, p->k, p->k_count, 1);
    fill_input(p, p->vf, p->v, p->v_count, 2);

    status = d->variant == CLATTN_VARIANT_LINEAR ? linear_reference(p) : reference(p);
    if (status != 0) {
        problem_free(p);
        return -1;
    }
    return 0;
}

void problem_free(problem *p)
{
    free(p->q);
    free(p->k);
    free(p->v);
    free(p->qf);
    free(p->kf);
    free(p->vf);
    free(p->o_ref);
    free(p->lse_ref);
    memset(p, 0, sizeof *p);
}
