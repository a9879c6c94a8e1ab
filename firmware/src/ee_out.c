#include "ee_out.h"

#include "ee_port.h"

void ee_out_init(ee_out_t *o)
{
    o->len = 0;
}

void ee_out_flush(ee_out_t *o)
{
    if (o->len > 0) {
        ee_port_uart_write(o->buf, o->len);
        o->len = 0;
    }
}

void ee_out_char(ee_out_t *o, char c)
{
    if (o->len >= EE_OUT_STAGE) {
        ee_out_flush(o);
    }
    o->buf[o->len++] = c;
}

void ee_out_str(ee_out_t *o, const char *s)
{
    if (s == 0) {
        return;
    }
    while (*s != '\0') {
        ee_out_char(o, *s++);
    }
}

void ee_out_echo(ee_out_t *o, const char *s, size_t len, size_t max_len)
{
    size_t i;
    if (s == 0) {
        return;
    }
    for (i = 0; i < len && i < max_len; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20u || c > 0x7eu || c == '[' || c == ']' || c == '%') {
            c = '?';
        }
        ee_out_char(o, (char)c);
    }
    if (len > max_len) {
        ee_out_str(o, "...");
    }
}

void ee_out_u64(ee_out_t *o, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u && n < 20);
    while (n > 0) {
        ee_out_char(o, tmp[--n]);
    }
}

void ee_out_i32(ee_out_t *o, int32_t v)
{
    if (v < 0) {
        ee_out_char(o, '-');
        ee_out_u64(o, (uint64_t)(-(int64_t)v));
    } else {
        ee_out_u64(o, (uint64_t)v);
    }
}

void ee_out_hex8(ee_out_t *o, uint8_t v)
{
    static const char digits[] = "0123456789abcdef";
    ee_out_char(o, digits[(v >> 4) & 0xFu]);
    ee_out_char(o, digits[v & 0xFu]);
}

void ee_out_hex32(ee_out_t *o, uint32_t v)
{
    int shift;
    for (shift = 24; shift >= 0; shift -= 8) {
        ee_out_hex8(o, (uint8_t)((v >> (unsigned)shift) & 0xFFu));
    }
}

void ee_out_milli(ee_out_t *o, int32_t milli)
{
    uint64_t mag;
    uint32_t frac;
    if (milli < 0) {
        ee_out_char(o, '-');
        mag = (uint64_t)(-(int64_t)milli);
    } else {
        mag = (uint64_t)milli;
    }
    ee_out_u64(o, mag / 1000u);
    ee_out_char(o, '.');
    frac = (uint32_t)(mag % 1000u);
    ee_out_char(o, (char)('0' + (int)(frac / 100u)));
    ee_out_char(o, (char)('0' + (int)((frac / 10u) % 10u)));
    ee_out_char(o, (char)('0' + (int)(frac % 10u)));
}

void ee_out_hexfloat(ee_out_t *o, float v)
{
    union {
        float f;
        uint32_t u;
    } bits;
    uint32_t biased;
    uint32_t frac;
    int32_t exp;
    int shift;
    bits.f = v;
    biased = (bits.u >> 23) & 0xFFu;
    frac = (bits.u & 0x7FFFFFu) << 1; /* 24 bits: six hex digits */
    if (biased == 0xFFu) {
        ee_out_str(o, frac != 0u ? "nan" : ((bits.u >> 31) != 0u ? "-inf" : "inf"));
        return;
    }
    if ((bits.u >> 31) != 0u) {
        ee_out_char(o, '-');
    }
    ee_out_str(o, biased != 0u ? "0x1." : "0x0.");
    for (shift = 20; shift >= 0; shift -= 4) {
        ee_out_char(o, "0123456789abcdef"[(frac >> (unsigned)shift) & 0xFu]);
    }
    if (biased == 0u) {
        exp = frac != 0u ? -126 : 0;
    } else {
        exp = (int32_t)biased - 127;
    }
    ee_out_char(o, 'p');
    ee_out_char(o, exp < 0 ? '-' : '+');
    ee_out_u64(o, (uint64_t)(exp < 0 ? -exp : exp));
}

void ee_out_eol(ee_out_t *o)
{
    ee_out_char(o, '\r');
    ee_out_char(o, '\n');
}
