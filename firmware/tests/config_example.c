/*
 * The configuration a generated ee_config.h provides, in the form firmware/README.md
 * documents, plus stub port and hook implementations: cross-compiled and linked for
 * cortex-m0plus and cortex-m4 by tests/test_firmware_c.py to prove that the runtime links
 * on the target with no more than newlib-nano (no printf, no malloc).
 */
#include <stddef.h>
#include <stdint.h>

#include "ee_port.h"
#include "ee_protocol.h"
#include "ee_runtime.h"

/* ---- what the generated ee_config.h / main would contain ---- */
#define EE_CFG_INPUT_LEN 490u
#define EE_CFG_FM_MAX 17940u
#define EE_CFG_SCORES_MAX 12u

static const ee_config_t ee_app_config = {
    .n_stages = 2u,
    .confidence = EE_CONF_MAX,
    .handoff_timeout_us = 2000000u,
    .solution_hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    .model_id = "kws01",
    .input_scale = 1.0f, .input_zero_point = -128, .input_type = EE_INPUT_INT8,
    .stages = {
        {.input_len = 490u, .fm_len = 17940u, .n_scores = 12u, .threshold_q = 26,
         .scores_scale = 0.00390625f, .scores_zero_point = -128,
         .requant = {.enabled = 0}, .tick_hz = 100000000u},
        {.input_len = 17940u, .fm_len = 0u, .n_scores = 12u, .threshold_q = 0,
         .scores_scale = 0.00390625f, .scores_zero_point = -128,
         .requant = {.enabled = 1, .multiplier = 1073741824, .shift = 1, .in_zero_point = -128,
                     .out_zero_point = -128},
         .tick_hz = 150000000u},
    },
};

static int8_t ee_input[EE_CFG_INPUT_LEN];
static int8_t ee_fm0[EE_CFG_FM_MAX];
static int8_t ee_scores[EE_CFG_SCORES_MAX];
static ee_mailbox_t ee_mailbox;
static const ee_buffers_t ee_app_buffers = {
    .input = ee_input, .input_cap = EE_CFG_INPUT_LEN, .mailbox = &ee_mailbox,
    .fm = {ee_fm0, NULL}, .fm_cap = EE_CFG_FM_MAX, .scores = ee_scores, .scores_cap = EE_CFG_SCORES_MAX,
};

static ee_runtime_t ee_rt;
static ee_proto_t ee_proto;

/* ---- stubs standing in for the port and the TFLite Micro hook ---- */
static volatile uint32_t g_sink;

ee_status_t ee_port_init(const ee_config_t *cfg) { return cfg != NULL ? EE_OK : EE_ERR_ARG; }
uint64_t ee_port_ticks(void) { return g_sink; }
void ee_port_uart_write(const char *data, size_t len) { g_sink += (uint32_t)len + (uint32_t)(uint8_t)data[0]; }
size_t ee_port_uart_read(uint8_t *dst, size_t cap) { (void)dst; (void)cap; return 0; }
void ee_port_timestamp_pulse(void) { g_sink++; }
ee_status_t ee_port_notify(uint32_t to_core, ee_mailbox_t *mb) { (void)mb; return to_core < 2u ? EE_OK : EE_ERR_IPC; }
void ee_port_wait_event(void) { g_sink++; }
ee_mailbox_t *ee_port_wait_request(void) { return &ee_mailbox; }
void ee_port_barrier(void) { }

int ee_app_run_stage(uint32_t stage, const int8_t *in, size_t in_len, int8_t *feature_map, size_t fm_len,
                     int8_t *scores, size_t n_scores)
{
    size_t i;
    for (i = 0; i < n_scores; ++i) {
        scores[i] = in[(i + stage) % in_len];
    }
    for (i = 0; i < fm_len; ++i) {
        feature_map[i] = in[i % in_len];
    }
    return 0;
}

int main(void)
{
    if (ee_config_check(&ee_app_config, &ee_app_buffers) != NULL ||
        ee_runtime_init(&ee_rt, &ee_app_config, &ee_app_buffers) != EE_OK) {
        return 1;
    }
    ee_proto_init(&ee_proto, &ee_rt, 0, NULL);
    ee_proto_banner(&ee_proto);
    ee_proto_run(&ee_proto); /* core 0; core 1 would call ee_core_main(&ee_app_config, 1u) */
    return 0;
}
