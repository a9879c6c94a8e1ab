/*
 * eenn firmware runtime: the HIL protocol on core 0's UART (docs/protocol.md).
 *
 * EEMBC / MLPerf Tiny runner DUT protocol ('%'-terminated commands, `m-` replies, `e-[...]`
 * errors, `m-ready` after every command), extended for early exits. Bytes go in through
 * ee_proto_feed() in any chunking; replies go out through ee_port_uart_write().
 * Every buffer is bounded; any bad input answers `e-[...]` and the parser resyncs on '%'.
 */
#ifndef EE_PROTOCOL_H
#define EE_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "ee_out.h"
#include "ee_runtime.h"

#define EE_PROTOCOL_VERSION 2u
#define EE_LINE_MAX 256u           /* characters of one command, without its '%' */
#define EE_ECHO_MAX 32u            /* characters of a bad token echoed in an error */
#define EE_MAX_ITERATIONS 1000000u /* `infer N W`: N in 1..this, W in 0..this */
#define EE_DEVICE_NAME "eenn"

typedef struct {
    ee_runtime_t *rt;
    ee_out_t out;
    const char *timing;        /* "hardware", or how the virtual board makes its ticks */
    char line[EE_LINE_MAX];
    uint32_t line_len;
    uint8_t overflow;          /* the current line passed EE_LINE_MAX; discard up to '%' */
    uint8_t energy_mode;       /* 1: timestamps are GPIO pulses, not m-lap-us lines */
    uint8_t load_active;       /* a `db load N` is in progress */
    uint8_t input_ready;       /* the input buffer holds all stages[0].input_len converted elements */
    uint8_t input_type;        /* EE_INPUT_*: how `db` bytes become the int8 input */
    uint8_t pend[4];           /* float32: the bytes of the element being received */
    uint32_t load_len;         /* N of the current `db load N` (bytes of input_type) */
    uint32_t load_pos;         /* bytes loaded so far */
    uint32_t input_crc;        /* CRC-32 of the loaded bytes so far (as sent, before conversion) */
    uint8_t have_result;       /* `result` is the last `infer`'s, it succeeded, on the input now loaded */
    uint32_t result_crc;       /* CRC-32 of the input the last result was computed on */
    uint32_t result_iterations;
    ee_result_t result;
    uint32_t commands;         /* commands handled (diagnostics) */
    uint32_t errors;           /* e-[...] replies sent (diagnostics) */
} ee_proto_t;

/* rt must be initialised. timing: NULL for "hardware". */
void ee_proto_init(ee_proto_t *p, ee_runtime_t *rt, int energy_mode, const char *timing);

/* Boot lines (EEMBC: mode, timestamp, m-init-done, m-ready). Clients must not depend on them. */
void ee_proto_banner(ee_proto_t *p);

void ee_proto_feed(ee_proto_t *p, const uint8_t *data, size_t n);

/* Core 0's main loop on the target: feed what the UART received, else sleep. Never returns. */
void ee_proto_run(ee_proto_t *p);

#endif /* EE_PROTOCOL_H */
