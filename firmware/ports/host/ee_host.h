/*
 * eenn firmware runtime, host port: the virtual board's C half.
 *
 * Everything runs in the caller's thread. Core 0's protocol gets bytes from
 * ee_host_feed(); an IPC notification runs the next core's ee_serve() at once (the
 * "interrupt"); stages run through a registered callback (Python ctypes or C).
 * Time is virtual and deterministic: stage k advances the clock by its run_ns (the
 * cost model's predicted_s), a request that hands stage k to another core by stage k's
 * handoff_ns (link_s + wakeup_s; charged only where the core changes, since only there
 * is a request sent); core 0's ticks follow the wall clock (its SysTick keeps counting
 * while it sleeps), the other cores' ticks count only their active time.
 * The configuration is set field by field (no struct layout shared with Python).
 * Per-operator timing: the runtime attaches a table; while `eenn-profile on`, the stage
 * callback sees ee_op_active() and reports each operator with ee_op_record() (ee_opprof.h).
 */
#ifndef EE_HOST_H
#define EE_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "ee_protocol.h"
#include "ee_runtime.h"

#define EE_HOST_ABI_VERSION 4u /* 3: input types and placement; 4: per-operator table (ee_op_active / ee_op_record) */
#define EE_HOST_INPUT_CAP (4u * 1024u * 1024u)
#define EE_HOST_FM_CAP (8u * 1024u * 1024u)
#define EE_HOST_SCORES_CAP 65536u
#define EE_HOST_TEXT_MAX 128u
#define EE_HOST_WAIT_NS 1000000u /* one ee_port_wait_event() = 1 ms of virtual time */

typedef void (*ee_host_write_fn)(const char *data, size_t len, void *user);
typedef int (*ee_host_stage_fn)(uint32_t stage, const int8_t *in, size_t in_len, int8_t *feature_map, size_t fm_len,
                                int8_t *scores, size_t n_scores, void *user);
typedef void (*ee_host_pulse_fn)(uint64_t time_ns, void *user);

uint32_t ee_host_abi_version(void);

/* Forget configuration, state and time (callbacks stay). */
void ee_host_reset(void);
void ee_host_set_callbacks(ee_host_write_fn write, ee_host_stage_fn stage, ee_host_pulse_fn pulse, void *user);

/* 0 on success, -1 when an argument is out of range. Strings are copied (truncated to EE_HOST_TEXT_MAX - 1). */
int ee_host_set_model(uint32_t n_stages, uint32_t confidence, uint32_t handoff_timeout_us, const char *solution_hash,
                      const char *model_id, const char *timing);
int ee_host_set_stage(uint32_t k, uint32_t input_len, uint32_t fm_len, uint32_t n_scores, int32_t threshold_q,
                      float scores_scale, int32_t scores_zero_point, int32_t rq_enabled, int32_t rq_multiplier,
                      int32_t rq_shift, int32_t rq_in_zero_point, int32_t rq_out_zero_point, uint32_t tick_hz,
                      uint64_t run_ns, uint64_t handoff_ns);
/* The model input's quantization (ee_config_t input_scale / input_zero_point; scale 0 = unknown)
 * and the input type at start (EE_INPUT_*). Checked by ee_host_start(). */
void ee_host_set_input(float scale, int32_t zero_point, uint32_t input_type);

/* Placement (after ee_host_set_model): n_cores 0 = stage k on core k; else stage k on
 * stage_core[k] (n_stages entries), core c ticking at core_tick_hz[c] (n_cores entries, 0: its
 * stages' tick_hz). -1 when an argument is out of range. */
int ee_host_set_placement(uint32_t n_cores, const uint32_t *stage_core, const uint32_t *core_tick_hz);

/* Check the configuration and start core 0's protocol. NULL on success, else why not. */
const char *ee_host_start(int energy_mode, int banner);

/* Bytes from the HIL client into core 0's UART. */
void ee_host_feed(const uint8_t *data, size_t n);

/* Fault injection for tests: a dead core never answers; `count` notifications report BUSY. */
void ee_host_set_core_alive(uint32_t core, int alive);
void ee_host_set_notify_busy(uint32_t count);

uint64_t ee_host_time_ns(void);
uint64_t ee_host_core_ticks(uint32_t core);
uint32_t ee_host_pulses(void);

ee_runtime_t *ee_host_runtime(void);
ee_proto_t *ee_host_proto(void);
const ee_config_t *ee_host_config(void);

/* floor(ns * hz / 1e9) without overflow. */
uint64_t ee_host_ns_to_ticks(uint64_t ns, uint32_t hz);

#endif /* EE_HOST_H */
