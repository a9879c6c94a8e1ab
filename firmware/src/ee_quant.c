/* Integer rules, bit-exact with augment/quant.py (see docs/interfaces.md, "Integer rules"). */
#include "ee_quant.h"

#define EE_I32_MIN (-2147483647L - 1L)
#define EE_I32_MAX 2147483647L

/* Arithmetic shift right that does not rely on implementation-defined >> of negatives. */
static int64_t asr64(int64_t x, unsigned bits)
{
    return x >= 0 ? (x >> bits) : -1 - ((-1 - x) >> bits);
}

int32_t ee_srdhm(int32_t a, int32_t b)
{
    int64_t ab;
    int64_t sum;
    if (a == (int32_t)EE_I32_MIN && b == (int32_t)EE_I32_MIN) {
        return (int32_t)EE_I32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    sum = ab + (ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30)));
    /* division by 2^31 truncating toward zero, as C's / and quant.py's _trunc_div_pow2 */
    return (int32_t)(sum >= 0 ? (sum >> 31) : -((-sum) >> 31));
}

int32_t ee_rdbpot(int32_t x, int32_t exponent)
{
    uint32_t mask;
    uint32_t remainder;
    uint32_t threshold;
    int32_t q;
    if (exponent <= 0) {
        return x;
    }
    if (exponent > 31) {
        exponent = 31;
    }
    mask = (uint32_t)(((uint64_t)1 << (unsigned)exponent) - 1u);
    remainder = (uint32_t)x & mask; /* low bits of the two's complement value */
    threshold = (mask >> 1) + (x < 0 ? 1u : 0u);
    q = (int32_t)asr64((int64_t)x, (unsigned)exponent);
    return q + (remainder > threshold ? 1 : 0);
}

static int8_t requant_core(int8_t q, int32_t mult, int32_t left, int32_t right, int32_t zin, int32_t zout)
{
    int64_t wide = ((int64_t)q - (int64_t)zin) * ((int64_t)1 << (unsigned)left);
    int32_t acc;
    if (wide > (int64_t)EE_I32_MAX) {
        wide = (int64_t)EE_I32_MAX;
    } else if (wide < (int64_t)EE_I32_MIN) {
        wide = (int64_t)EE_I32_MIN;
    }
    acc = ee_srdhm((int32_t)wide, mult);
    acc = ee_rdbpot(acc, right);
    /* acc is within int32 here; zout is an int8 zero point, so the sum cannot overflow int64 */
    wide = (int64_t)acc + (int64_t)zout;
    if (wide < -128) {
        wide = -128;
    } else if (wide > 127) {
        wide = 127;
    }
    return (int8_t)wide;
}

static void split_shift(int32_t shift, int32_t *left, int32_t *right)
{
    if (shift > 30) {
        shift = 30;
    } else if (shift < -31) {
        shift = -31;
    }
    *left = shift > 0 ? shift : 0;
    *right = shift < 0 ? -shift : 0;
}

int8_t ee_requant_one(int8_t q, const ee_requant_t *rq)
{
    int32_t left;
    int32_t right;
    if (rq == 0 || !rq->enabled) {
        return q;
    }
    split_shift(rq->shift, &left, &right);
    return requant_core(q, rq->multiplier, left, right, rq->in_zero_point, rq->out_zero_point);
}

void ee_requant(int8_t *dst, const int8_t *src, size_t n, const ee_requant_t *rq)
{
    size_t i;
    int32_t left;
    int32_t right;
    if (dst == 0 || src == 0) {
        return;
    }
    if (rq == 0 || !rq->enabled) {
        if (dst != src) {
            for (i = 0; i < n; ++i) {
                dst[i] = src[i];
            }
        }
        return;
    }
    split_shift(rq->shift, &left, &right);
    for (i = 0; i < n; ++i) {
        dst[i] = requant_core(src[i], rq->multiplier, left, right, rq->in_zero_point, rq->out_zero_point);
    }
}

static int8_t sat8(int32_t v)
{
    return (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
}

int8_t ee_quantize_f32(float x, float scale, int32_t zero_point)
{
    float v;
    float frac;
    int32_t r;
    if (zero_point < -128 || zero_point > 127 || !(scale > 0.0f) || x != x) {
        return sat8(zero_point);
    }
    v = x / scale;
    /* |round(v)| >= 512 saturates whatever the zero point; the clamp keeps the cast defined (inf too) */
    if (v > 512.0f) {
        v = 512.0f;
    } else if (v < -512.0f) {
        v = -512.0f;
    }
    r = (int32_t)v;          /* toward zero */
    frac = v - (float)r;     /* exact: |v| < 2^24 */
    if (frac >= 0.5f) {
        r += 1;
    } else if (frac <= -0.5f) {
        r -= 1;
    }
    return sat8(r + zero_point);
}

uint32_t ee_argmax(const int8_t *scores, size_t n)
{
    size_t i;
    uint32_t best = 0;
    if (scores == 0 || n == 0) {
        return 0;
    }
    for (i = 1; i < n; ++i) {
        if (scores[i] > scores[best]) {
            best = (uint32_t)i;
        }
    }
    return best;
}

int32_t ee_confidence_q(const int8_t *scores, size_t n, uint32_t mode)
{
    size_t i;
    int32_t top1 = -129;
    int32_t top2 = -129;
    if (scores == 0 || n == 0) {
        return (int32_t)EE_I32_MIN;
    }
    for (i = 0; i < n; ++i) {
        int32_t v = scores[i];
        if (v > top1) {
            top2 = top1;
            top1 = v;
        } else if (v > top2) {
            top2 = v;
        }
    }
    if (mode == EE_CONF_MARGIN) {
        /* one score: no runner-up; the margin is undefined, treat as never confident */
        return n >= 2 ? top1 - top2 : (int32_t)EE_I32_MIN;
    }
    return top1;
}

int ee_exit_taken(const int8_t *scores, size_t n, int32_t threshold_q, uint32_t mode)
{
    return ee_confidence_q(scores, n, mode) >= threshold_q;
}
