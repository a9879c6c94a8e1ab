/*
 * eenn firmware runtime: the integer rules shared with Python (augment/quant.py).
 *
 * Exit decision on the int8 softmax of an early classifier and int8 -> int8
 * requantization of a feature map with TFLite's fixed-point scheme. Bit-exact
 * with augment/quant.py; tests compare the two over random inputs.
 */
#ifndef EE_QUANT_H
#define EE_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* Confidence modes (ee_config_t.confidence). */
#define EE_CONF_MAX 0u    /* exit when max(q) >= threshold_q */
#define EE_CONF_MARGIN 1u /* exit when top1(q) - top2(q) >= threshold_q (needs >= 2 scores) */

/* Requantization from the producer's (s_p, z_p) to the consumer's (s_c, z_c):
 * multiplier, shift = quantize_multiplier(s_p / s_c). enabled = 0 means a plain copy. */
typedef struct {
    int32_t enabled;        /* 0: no requantization (producer and consumer quantization are equal) */
    int32_t multiplier;     /* in [2^30, 2^31) (or 0) */
    int32_t shift;          /* in [-31, 30]: real = multiplier * 2^(shift - 31) */
    int32_t in_zero_point;  /* z_p, in [-128, 127] */
    int32_t out_zero_point; /* z_c, in [-128, 127] */
} ee_requant_t;

/* gemmlowp SaturatingRoundingDoublingHighMul. */
int32_t ee_srdhm(int32_t a, int32_t b);

/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero; exponent in [0, 31]. */
int32_t ee_rdbpot(int32_t x, int32_t exponent);

/* One element. */
int8_t ee_requant_one(int8_t q, const ee_requant_t *rq);

/* n elements from src to dst; dst == src (in place) is allowed, other overlaps are not.
 * With rq->enabled == 0 this is a copy. Where the left shift overflows int32 (a ratio
 * above 2^23, which augment/quant.py refuses) the value saturates. */
void ee_requant(int8_t *dst, const int8_t *src, size_t n, const ee_requant_t *rq);

/* Float -> int8 as TFLite's Quantize and the EEMBC ad01 reference do: round(x / scale) (single
 * precision division, halves away from zero) + zero_point, saturated to int8. NaN gives the
 * zero point (as 0.0 would); a scale that is not > 0 gives the zero point (saturated). */
int8_t ee_quantize_f32(float x, float scale, int32_t zero_point);

/* Index of the largest score; the lowest index wins ties (numpy.argmax). n >= 1. */
uint32_t ee_argmax(const int8_t *scores, size_t n);

/* Integer confidence: max(q) for EE_CONF_MAX, top1 - top2 for EE_CONF_MARGIN. */
int32_t ee_confidence_q(const int8_t *scores, size_t n, uint32_t mode);

/* 1 when the classifier is confident enough to stop: ee_confidence_q() >= threshold_q. */
int ee_exit_taken(const int8_t *scores, size_t n, int32_t threshold_q, uint32_t mode);

#endif /* EE_QUANT_H */
