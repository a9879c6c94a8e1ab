/* Host port: virtual time, synchronous IPC, callbacks for the UART and the stages (ee_host.h). */
#include "ee_host.h"

#include <string.h>

#include "ee_port.h"

static ee_config_t g_cfg;
static char g_hash[EE_HOST_TEXT_MAX];
static char g_model[EE_HOST_TEXT_MAX];
static char g_timing[EE_HOST_TEXT_MAX];
static uint64_t g_run_ns[EE_MAX_STAGES];
static uint64_t g_handoff_ns[EE_MAX_STAGES];

static int8_t g_input[EE_HOST_INPUT_CAP];
static int8_t g_fm0[EE_HOST_FM_CAP];
static int8_t g_fm1[EE_HOST_FM_CAP];
static int8_t g_scores[EE_HOST_SCORES_CAP];
static ee_mailbox_t g_mailbox;
static ee_op_table_t g_ops; /* per-operator records: the stage callback fills them (ee_op_record) */
static const ee_buffers_t g_buffers = {
    g_input, EE_HOST_INPUT_CAP, &g_mailbox, {g_fm0, g_fm1}, EE_HOST_FM_CAP, g_scores, EE_HOST_SCORES_CAP,
};

static ee_runtime_t g_rt;
static ee_proto_t g_proto;
static int g_started;

static ee_host_write_fn g_write;
static ee_host_stage_fn g_stage;
static ee_host_pulse_fn g_pulse;
static void *g_user;

static uint64_t g_wall_ns;
static uint64_t g_active_ns[EE_MAX_CORES];
static uint32_t g_core;  /* the core whose code is running */
static uint32_t g_depth; /* nested notifications */
static int g_alive[EE_MAX_CORES];
static uint32_t g_busy;
static uint32_t g_pulses;

static void copy_text(char *dst, const char *src)
{
    size_t i = 0;
    if (src != 0) {
        for (; i + 1u < EE_HOST_TEXT_MAX && src[i] != '\0'; ++i) {
            dst[i] = src[i];
        }
    }
    dst[i] = '\0';
}

uint32_t ee_host_abi_version(void)
{
    return EE_HOST_ABI_VERSION;
}

uint64_t ee_host_ns_to_ticks(uint64_t ns, uint32_t hz)
{
    return (ns / 1000000000u) * hz + ((ns % 1000000000u) * hz) / 1000000000u;
}

void ee_host_reset(void)
{
    uint32_t k;
    memset(&g_cfg, 0, sizeof(g_cfg));
    g_hash[0] = g_model[0] = g_timing[0] = '\0';
    g_cfg.solution_hash = g_hash;
    g_cfg.model_id = g_model;
    for (k = 0; k < EE_MAX_STAGES; ++k) {
        g_run_ns[k] = 0;
        g_handoff_ns[k] = 0;
    }
    for (k = 0; k < EE_MAX_CORES; ++k) {
        g_active_ns[k] = 0;
        g_alive[k] = 1;
    }
    memset(&g_mailbox, 0, sizeof(g_mailbox));
    memset(&g_rt, 0, sizeof(g_rt));
    g_started = 0;
    g_wall_ns = 0;
    g_core = 0;
    g_depth = 0;
    g_busy = 0;
    g_pulses = 0;
}

void ee_host_set_callbacks(ee_host_write_fn write, ee_host_stage_fn stage, ee_host_pulse_fn pulse, void *user)
{
    g_write = write;
    g_stage = stage;
    g_pulse = pulse;
    g_user = user;
}

int ee_host_set_model(uint32_t n_stages, uint32_t confidence, uint32_t handoff_timeout_us, const char *solution_hash,
                      const char *model_id, const char *timing)
{
    if (n_stages < 1u || n_stages > EE_MAX_STAGES) {
        return -1;
    }
    g_cfg.n_stages = n_stages;
    g_cfg.confidence = confidence;
    g_cfg.handoff_timeout_us = handoff_timeout_us;
    copy_text(g_hash, solution_hash);
    copy_text(g_model, model_id);
    copy_text(g_timing, timing);
    g_cfg.solution_hash = g_hash;
    g_cfg.model_id = g_model;
    return 0;
}

int ee_host_set_stage(uint32_t k, uint32_t input_len, uint32_t fm_len, uint32_t n_scores, int32_t threshold_q,
                      float scores_scale, int32_t scores_zero_point, int32_t rq_enabled, int32_t rq_multiplier,
                      int32_t rq_shift, int32_t rq_in_zero_point, int32_t rq_out_zero_point, uint32_t tick_hz,
                      uint64_t run_ns, uint64_t handoff_ns)
{
    ee_stage_config_t *st;
    if (k >= EE_MAX_STAGES) {
        return -1;
    }
    st = &g_cfg.stages[k];
    st->input_len = input_len;
    st->fm_len = fm_len;
    st->n_scores = n_scores;
    st->threshold_q = threshold_q;
    st->scores_scale = scores_scale;
    st->scores_zero_point = scores_zero_point;
    st->requant.enabled = rq_enabled;
    st->requant.multiplier = rq_multiplier;
    st->requant.shift = rq_shift;
    st->requant.in_zero_point = rq_in_zero_point;
    st->requant.out_zero_point = rq_out_zero_point;
    st->tick_hz = tick_hz;
    g_run_ns[k] = run_ns;
    g_handoff_ns[k] = handoff_ns;
    return 0;
}

void ee_host_set_input(float scale, int32_t zero_point, uint32_t input_type)
{
    g_cfg.input_scale = scale;
    g_cfg.input_zero_point = zero_point;
    g_cfg.input_type = input_type;
}

int ee_host_set_placement(uint32_t n_cores, const uint32_t *stage_core, const uint32_t *core_tick_hz)
{
    uint32_t k;
    if (n_cores > EE_MAX_CORES || (n_cores > 0u && (stage_core == 0 || core_tick_hz == 0))) {
        return -1;
    }
    g_cfg.n_cores = n_cores;
    for (k = 0; k < EE_MAX_STAGES; ++k) {
        g_cfg.stages[k].core = (n_cores > 0u && k < g_cfg.n_stages) ? stage_core[k] : 0u;
    }
    for (k = 0; k < EE_MAX_CORES; ++k) {
        g_cfg.core_tick_hz[k] = (n_cores > 0u && k < n_cores) ? core_tick_hz[k] : 0u;
    }
    return 0;
}

const char *ee_host_start(int energy_mode, int banner)
{
    const char *why = ee_config_check(&g_cfg, &g_buffers);
    g_started = 0;
    if (why != 0) {
        return why;
    }
    if (ee_port_init(&g_cfg) != EE_OK) {
        return "port init failed";
    }
    if (ee_runtime_init(&g_rt, &g_cfg, &g_buffers) != EE_OK) {
        return "runtime init failed";
    }
    ee_runtime_set_ops(&g_rt, &g_ops);
    ee_proto_init(&g_proto, &g_rt, energy_mode, g_timing[0] != '\0' ? g_timing : 0);
    g_started = 1;
    if (banner) {
        ee_proto_banner(&g_proto);
    }
    return 0;
}

void ee_host_feed(const uint8_t *data, size_t n)
{
    if (g_started) {
        ee_proto_feed(&g_proto, data, n);
    }
}

void ee_host_set_core_alive(uint32_t core, int alive)
{
    if (core < EE_MAX_CORES) {
        g_alive[core] = alive;
    }
}

void ee_host_set_notify_busy(uint32_t count)
{
    g_busy = count;
}

uint64_t ee_host_time_ns(void)
{
    return g_wall_ns;
}

uint64_t ee_host_core_ticks(uint32_t core)
{
    uint32_t hz = ee_core_tick_hz(&g_cfg, core);
    if (core >= EE_MAX_CORES || hz == 0u) {
        return 0;
    }
    return ee_host_ns_to_ticks(core == 0u ? g_wall_ns : g_active_ns[core], hz);
}

uint32_t ee_host_pulses(void)
{
    return g_pulses;
}

ee_runtime_t *ee_host_runtime(void)
{
    return &g_rt;
}

ee_proto_t *ee_host_proto(void)
{
    return &g_proto;
}

const ee_config_t *ee_host_config(void)
{
    return &g_cfg;
}

static void advance(uint64_t ns)
{
    g_wall_ns += ns;
    if (g_core > 0u && g_core < EE_MAX_CORES) {
        g_active_ns[g_core] += ns;
    }
}

/* ---------------------------------------------------------------- ee_port.h */

ee_status_t ee_port_init(const ee_config_t *cfg)
{
    /* Virtual time needs no start; the clocks are the configuration's by construction. */
    return (cfg == NULL || ee_config_check(cfg, NULL) != NULL) ? EE_ERR_ARG : EE_OK;
}

uint64_t ee_port_ticks(void)
{
    return ee_host_core_ticks(g_core);
}

void ee_port_uart_write(const char *data, size_t len)
{
    if (g_write != 0 && len > 0u) {
        g_write(data, len, g_user);
    }
}

size_t ee_port_uart_read(uint8_t *dst, size_t cap)
{
    (void)dst;
    (void)cap;
    return 0; /* the host pushes bytes with ee_host_feed() */
}

void ee_port_timestamp_pulse(void)
{
    g_pulses++;
    if (g_pulse != 0) {
        g_pulse(g_wall_ns, g_user);
    }
}

ee_status_t ee_port_notify(uint32_t to_core, ee_mailbox_t *mb)
{
    uint32_t caller = g_core;
    ee_status_t rc;
    if (mb == 0 || to_core >= ee_n_cores(&g_cfg) || to_core >= EE_MAX_CORES || to_core == caller) {
        return EE_ERR_IPC;
    }
    if (g_busy > 0u) {
        g_busy--;
        return EE_ERR_BUSY;
    }
    if (to_core == 0u) {
        return EE_OK; /* core 0 finds the answer in the mailbox when this returns */
    }
    if (mb->stage < EE_MAX_STAGES) {
        advance(g_handoff_ns[mb->stage]); /* link transfer + wake-up into that stage, before it runs */
    }
    if (!g_alive[to_core] || g_depth >= EE_MAX_CORES) {
        return EE_OK; /* delivered to a core that never answers */
    }
    g_depth++;
    g_core = to_core;
    rc = ee_serve(&g_cfg, to_core, mb);
    g_core = caller;
    g_depth--;
    (void)rc; /* the answer (or its error status) is in the mailbox */
    return EE_OK;
}

void ee_port_wait_event(void)
{
    advance(EE_HOST_WAIT_NS);
}

ee_mailbox_t *ee_port_wait_request(void)
{
    return 0; /* requests are served synchronously inside ee_port_notify() */
}

void ee_port_barrier(void)
{
}

/* ---------------------------------------------------------------- the application hook */

int ee_app_run_stage(uint32_t stage, const int8_t *in, size_t in_len, int8_t *feature_map, size_t fm_len,
                     int8_t *scores, size_t n_scores)
{
    int rc;
    if (g_stage == 0 || stage >= EE_MAX_STAGES) {
        return -1;
    }
    rc = g_stage(stage, in, in_len, feature_map, fm_len, scores, n_scores, g_user);
    advance(g_run_ns[stage]);
    return rc;
}
