/*
 * eenn firmware runtime: bounded text output without printf (64-bit numbers, fixed-point
 * decimals and sanitised echoes behave the same with newlib-nano, glibc and on every core).
 * Text is staged in a small buffer and handed to ee_port_uart_write() when full or on flush.
 */
#ifndef EE_OUT_H
#define EE_OUT_H

#include <stddef.h>
#include <stdint.h>

#define EE_OUT_STAGE 96u

typedef struct {
    char buf[EE_OUT_STAGE];
    size_t len;
} ee_out_t;

void ee_out_init(ee_out_t *o);
void ee_out_flush(ee_out_t *o);
void ee_out_char(ee_out_t *o, char c);
void ee_out_str(ee_out_t *o, const char *s);
/* At most max_len bytes of s; bytes outside printable ASCII and '[' ']' '%' become '?'. */
void ee_out_echo(ee_out_t *o, const char *s, size_t len, size_t max_len);
void ee_out_u64(ee_out_t *o, uint64_t v);
void ee_out_i32(ee_out_t *o, int32_t v);
void ee_out_hex8(ee_out_t *o, uint8_t v);   /* two lowercase digits */
void ee_out_hex32(ee_out_t *o, uint32_t v); /* eight lowercase digits */
void ee_out_milli(ee_out_t *o, int32_t milli); /* 1234 -> "1.234", -5 -> "-0.005" */
/* A float exactly, as C's %a with six hex digits: 0.0039215689f -> "0x1.010102p-8" (Python:
 * float.fromhex reads it back); subnormals "0x0.XXXXXXp-126", zero "0x0.000000p+0", "inf", "nan". */
void ee_out_hexfloat(ee_out_t *o, float v);
void ee_out_eol(ee_out_t *o);               /* "\r\n" */

#endif /* EE_OUT_H */
