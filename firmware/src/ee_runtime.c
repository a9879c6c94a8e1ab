/* Inference on core 0 and the handoff to the next cores (see ee_runtime.h, ee_handoff.h). */
#include "ee_runtime.h"

#include "ee_port.h"

uint64_t ee_ticks_to_us(uint64_t ticks, uint32_t hz)
{
    if (hz == 0u) {
        return 0u;
    }
    return (ticks / hz) * 1000000u + ((ticks % hz) * 1000000u) / hz;
}

uint64_t ee_us_to_ticks(uint64_t us, uint32_t hz)
{
    uint64_t whole = us / 1000000u;
    uint64_t part = us % 1000000u;
    if (hz == 0u) {
        return 0u;
    }
    if (whole != 0u && whole > UINT64_MAX / hz) {
        return UINT64_MAX;
    }
    return whole * hz + (part * hz) / 1000000u;
}

static int zp_ok(int32_t z)
{
    return z >= -128 && z <= 127;
}

uint32_t ee_n_cores(const ee_config_t *cfg)
{
    return cfg->n_cores != 0u ? cfg->n_cores : cfg->n_stages;
}

uint32_t ee_stage_core(const ee_config_t *cfg, uint32_t stage)
{
    if (stage >= EE_MAX_STAGES) {
        return EE_MAX_CORES; /* no such core */
    }
    return cfg->n_cores != 0u ? cfg->stages[stage].core : stage;
}

uint32_t ee_core_tick_hz(const ee_config_t *cfg, uint32_t core)
{
    uint32_t k;
    if (core >= EE_MAX_CORES) {
        return 0u;
    }
    if (cfg->n_cores != 0u && cfg->core_tick_hz[core] != 0u) {
        return cfg->core_tick_hz[core];
    }
    for (k = 0; k < cfg->n_stages && k < EE_MAX_STAGES; ++k) {
        if (ee_stage_core(cfg, k) == core) {
            return cfg->stages[k].tick_hz;
        }
    }
    return 0u;
}

static const char *placement_check(const ee_config_t *cfg)
{
    uint32_t k;
    uint32_t c;
    uint32_t n_cores = ee_n_cores(cfg);
    if (n_cores < 1u || n_cores > EE_MAX_CORES) {
        return cfg->n_cores == 0u ? "n_cores 0 (one core per stage) needs n_stages <= EE_MAX_CORES"
                                  : "n_cores must be 0..EE_MAX_CORES";
    }
    for (k = 0; k < cfg->n_stages; ++k) {
        c = ee_stage_core(cfg, k);
        if (c >= n_cores) {
            return "a stage's core is not below n_cores";
        }
        if (k > 0u && c < ee_stage_core(cfg, k - 1u)) {
            return "stage cores must be non-decreasing along the chain";
        }
        if (cfg->stages[k].tick_hz != ee_core_tick_hz(cfg, c)) {
            return "stages on one core must have that core's tick_hz";
        }
    }
    if (ee_core_tick_hz(cfg, 0u) == 0u) {
        return "core 0 runs no stage: core_tick_hz[0] must be set";
    }
    return 0;
}

/* the last stage runs off core 0: some inferences hand off */
static int hands_off(const ee_config_t *cfg)
{
    return ee_stage_core(cfg, cfg->n_stages - 1u) != 0u;
}

const char *ee_config_check(const ee_config_t *cfg, const ee_buffers_t *buf)
{
    uint32_t k;
    uint32_t max_fm = 0;
    uint32_t max_scores = 0;
    const char *why;
    if (cfg == 0) {
        return "no configuration";
    }
    if (cfg->n_stages < 1u || cfg->n_stages > EE_MAX_STAGES) {
        return "n_stages must be 1..EE_MAX_STAGES";
    }
    if (cfg->confidence != EE_CONF_MAX && cfg->confidence != EE_CONF_MARGIN) {
        return "confidence must be EE_CONF_MAX or EE_CONF_MARGIN";
    }
    if (cfg->solution_hash == 0 || cfg->model_id == 0) {
        return "solution_hash and model_id must not be NULL";
    }
    if (!(cfg->input_scale >= 0.0f) || cfg->input_scale > 3.0e38f || !zp_ok(cfg->input_zero_point)) {
        return "input_scale must be 0 (unknown) or positive and finite, input_zero_point in -128..127";
    }
    if (cfg->input_type > EE_INPUT_FLOAT32 || (cfg->input_type == EE_INPUT_FLOAT32 &&
                                               (!(cfg->input_scale > 0.0f) || cfg->stages[0].input_len > 0x3FFFFFFFu))) {
        return "input_type must be EE_INPUT_INT8, _UINT8 or _FLOAT32 (float32 needs input_scale > 0)";
    }
    for (k = 0; k < cfg->n_stages; ++k) {
        const ee_stage_config_t *st = &cfg->stages[k];
        int last = (k + 1u == cfg->n_stages);
        if (st->input_len == 0u) {
            return "a stage has input_len 0";
        }
        if (st->n_scores == 0u || (cfg->confidence == EE_CONF_MARGIN && st->n_scores < 2u)) {
            return "a stage has too few scores (>= 1; >= 2 for margin)";
        }
        if (st->tick_hz == 0u) {
            return "a stage has tick_hz 0";
        }
        if (!(st->scores_scale > 0.0f) || !zp_ok(st->scores_zero_point)) {
            return "a stage has a bad scores quantization";
        }
        if (last ? st->fm_len != 0u : st->fm_len == 0u) {
            return "fm_len must be 0 on the last stage and > 0 on the others";
        }
        if (k > 0u && st->input_len != cfg->stages[k - 1u].fm_len) {
            return "a stage's input_len differs from the previous stage's fm_len";
        }
        if (st->requant.enabled) {
            if (k == 0u) {
                return "stage 0 cannot requantize its input";
            }
            if (st->requant.multiplier < 0 || st->requant.shift < -31 || st->requant.shift > 30 ||
                !zp_ok(st->requant.in_zero_point) || !zp_ok(st->requant.out_zero_point)) {
                return "a stage has requant constants out of range";
            }
        }
        if (st->fm_len > max_fm) {
            max_fm = st->fm_len;
        }
        if (st->n_scores > max_scores) {
            max_scores = st->n_scores;
        }
    }
    why = placement_check(cfg);
    if (why != 0) {
        return why;
    }
    if (hands_off(cfg) && cfg->handoff_timeout_us == 0u) {
        return "handoff_timeout_us must be > 0";
    }
    if (buf == 0) {
        return 0;
    }
    if (buf->input == 0 || buf->input_cap < cfg->stages[0].input_len) {
        return "the input buffer is missing or smaller than stages[0].input_len";
    }
    if (buf->scores == 0 || buf->scores_cap < max_scores) {
        return "the scores buffer is missing or smaller than the largest n_scores";
    }
    if (hands_off(cfg) && buf->mailbox == 0) {
        return "a configuration with stages off core 0 needs a mailbox";
    }
    if (cfg->n_stages > 1u &&
        (buf->fm[0] == 0 || buf->fm_cap < max_fm || (cfg->n_stages > 2u && buf->fm[1] == 0))) {
        return "the feature-map buffers are missing or smaller than the largest fm_len";
    }
    return 0;
}

ee_status_t ee_runtime_init(ee_runtime_t *rt, const ee_config_t *cfg, const ee_buffers_t *buf)
{
    uint32_t k;
    if (rt == 0 || buf == 0) {
        return EE_ERR_ARG;
    }
    rt->cfg = 0;
    rt->buf = 0;
    rt->seq = 0;
    rt->flags = 0;
    rt->ops = 0;
    if (ee_config_check(cfg, buf) != 0) {
        return EE_ERR_CONFIG;
    }
    rt->cfg = cfg;
    rt->buf = buf;
    ee_hs_init(&rt->hs, ee_us_to_ticks(cfg->handoff_timeout_us, ee_core_tick_hz(cfg, 0u)));
    if (buf->mailbox != 0) {
        ee_mailbox_t *mb = buf->mailbox;
        mb->magic = EE_MAILBOX_MAGIC;
        mb->req_seq = 0;
        mb->resp_seq = 0;
        mb->stage = 0;
        mb->fm_len = 0;
        mb->status = EE_OK;
        mb->exit_stage = 0;
        mb->cls = 0;
        mb->confidence = 0;
        mb->handoffs = 0;
        mb->fm[0] = buf->fm[0];
        mb->fm[1] = buf->fm[1];
        mb->fm_cap = buf->fm_cap;
        mb->scores = buf->scores;
        mb->scores_cap = buf->scores_cap;
        mb->input = buf->input;
        mb->input_cap = buf->input_cap;
        for (k = 0; k < EE_MAX_CORES; ++k) {
            mb->ticks[k] = 0;
        }
        mb->flags = 0;
        mb->ops = 0;
        for (k = 0; k < EE_MAX_STAGES; ++k) {
            mb->stage_ticks[k] = 0;
        }
        ee_port_barrier();
    }
    return EE_OK;
}

void ee_runtime_set_ops(ee_runtime_t *rt, ee_op_table_t *ops)
{
    if (rt != 0) {
        rt->ops = ops;
        ee_op_table_clear(ops);
    }
}

/* Stage s through the application hook, timed (and its operators recorded when `ops` is set). */
static int run_stage_timed(uint32_t s, const int8_t *in, const ee_stage_config_t *st, int8_t *fm, int8_t *scores,
                           int last, ee_op_table_t *ops, volatile uint64_t *ticks)
{
    uint64_t t;
    int rc;
    ee_op_stage_begin(ops, s);
    t = ee_port_ticks();
    rc = ee_app_run_stage(s, in, st->input_len, last ? 0 : fm, last ? 0u : st->fm_len, scores, st->n_scores);
    *ticks = ee_port_ticks() - t;
    ee_op_stage_end();
    return rc;
}

static void result_clear(ee_result_t *res)
{
    uint32_t k;
    res->status = EE_ERR_PENDING;
    res->cls = 0;
    res->exit_stage = 0;
    res->confidence = 0;
    res->handoffs = 0;
    for (k = 0; k < EE_MAX_CORES; ++k) {
        res->ticks[k] = 0;
    }
    res->elapsed_ticks = 0;
    res->scores = 0;
    res->n_scores = 0;
    for (k = 0; k < EE_MAX_STAGES; ++k) {
        res->stage_ticks[k] = 0;
    }
}

/* Stage k's input: the model input for stage 0, else the previous stage's feature map
 * (requantized in place when the quantizations differ). */
static const int8_t *stage_input(const ee_config_t *cfg, uint32_t k, int8_t *const fm[2], const int8_t *input)
{
    int8_t *in;
    if (k == 0u) {
        return input;
    }
    in = fm[(k - 1u) & 1u];
    ee_requant(in, in, cfg->stages[k].input_len, &cfg->stages[k].requant);
    return in;
}

ee_status_t ee_infer(ee_runtime_t *rt, const int8_t *input, uint32_t len, ee_result_t *res)
{
    const ee_config_t *cfg;
    const ee_buffers_t *buf;
    ee_mailbox_t *mb;
    uint64_t t0;
    uint64_t t_pass;
    uint64_t t_wake;
    uint64_t now;
    uint32_t seq;
    uint32_t k;
    uint32_t s;
    int rc;
    int no_exit;
    ee_op_table_t *ops;

    if (rt == 0 || rt->cfg == 0 || res == 0 || input == 0) {
        return EE_ERR_ARG;
    }
    result_clear(res);
    cfg = rt->cfg;
    buf = rt->buf;
    no_exit = (rt->flags & EE_RT_NO_EXIT) != 0u;
    ops = (rt->flags & EE_RT_PROFILE_OPS) != 0u ? rt->ops : 0;
    ee_op_table_clear(ops);
    if (len != cfg->stages[0].input_len) {
        res->status = EE_ERR_SIZE;
        return res->status;
    }
    if (rt->hs.state == EE_HS_ERROR) {
        (void)ee_hs_event(&rt->hs, EE_HS_EV_RESET, 0, EE_OK);
    }
    t0 = ee_port_ticks();
    if (ee_hs_event(&rt->hs, EE_HS_EV_START, t0, EE_OK) != EE_HS_LOCAL) {
        res->status = rt->hs.error;
        return res->status;
    }
    /* core 0's stages, back to back */
    for (s = 0; s < cfg->n_stages && ee_stage_core(cfg, s) == 0u; ++s) {
        const ee_stage_config_t *st = &cfg->stages[s];
        int last = (s + 1u == cfg->n_stages);
        const int8_t *in = stage_input(cfg, s, buf->fm, input);
        rc = run_stage_timed(s, in, st, buf->fm[s & 1u], buf->scores, last, ops, &res->stage_ticks[s]);
        if (rc != 0) {
            (void)ee_hs_event(&rt->hs, EE_HS_EV_FAIL, ee_port_ticks(), EE_OK);
            now = ee_port_ticks();
            res->status = rt->hs.error;
            res->exit_stage = s;
            res->ticks[0] = now - t0;
            res->elapsed_ticks = now - t0;
            return res->status;
        }
        if (last || (!no_exit && ee_exit_taken(buf->scores, st->n_scores, st->threshold_q, cfg->confidence))) {
            (void)ee_hs_event(&rt->hs, EE_HS_EV_EXIT, ee_port_ticks(), EE_OK);
            res->cls = ee_argmax(buf->scores, st->n_scores);
            res->exit_stage = s;
            res->confidence = ee_confidence_q(buf->scores, st->n_scores, cfg->confidence);
            res->scores = buf->scores;
            res->n_scores = st->n_scores;
            res->status = EE_OK;
            now = ee_port_ticks();
            res->ticks[0] = now - t0;
            res->elapsed_ticks = now - t0;
            return EE_OK;
        }
    }

    /* not confident (or core 0 runs no stage): publish the feature map (or the input) and hand
     * over to the core of stage s */
    mb = buf->mailbox;
    if (s == 0u && input != buf->input) {
        for (k = 0; k < len; ++k) { /* len == input_len <= input_cap (checked by ee_config_check) */
            buf->input[k] = input[k];
        }
    }
    seq = ++rt->seq;
    mb->stage = s;
    mb->fm_len = s == 0u ? len : cfg->stages[s - 1u].fm_len;
    mb->status = EE_ERR_PENDING;
    mb->handoffs = 1u;
    for (k = 0; k < EE_MAX_CORES; ++k) {
        mb->ticks[k] = 0;
    }
    mb->flags = rt->flags;
    mb->ops = ops;
    for (k = 0; k < EE_MAX_STAGES; ++k) {
        mb->stage_ticks[k] = 0;
    }
    mb->req_seq = seq;
    ee_port_barrier();
    t_pass = ee_port_ticks();
    (void)ee_hs_event(&rt->hs, EE_HS_EV_PASS, t_pass, EE_OK);
    while (rt->hs.state == EE_HS_NOTIFY) {
        ee_status_t nrc = ee_port_notify(ee_stage_core(cfg, s), mb);
        if (nrc == EE_OK) {
            (void)ee_hs_event(&rt->hs, EE_HS_EV_NOTIFIED, ee_port_ticks(), EE_OK);
        } else if (nrc == EE_ERR_BUSY) {
            if (ee_hs_event(&rt->hs, EE_HS_EV_BUSY, ee_port_ticks(), EE_OK) == EE_HS_NOTIFY) {
                ee_port_wait_event();
            }
        } else {
            (void)ee_hs_event(&rt->hs, EE_HS_EV_IPC_FAIL, ee_port_ticks(), EE_OK);
        }
    }
    while (rt->hs.state == EE_HS_WAIT) {
        ee_port_barrier();
        if (mb->resp_seq == seq) {
            ee_status_t remote = (ee_status_t)mb->status;
            uint32_t ex = mb->exit_stage;
            if (remote == EE_OK && ex >= s && ex < cfg->n_stages && ee_stage_core(cfg, ex) != 0u &&
                mb->handoffs >= 1u && mb->handoffs < EE_MAX_CORES) {
                (void)ee_hs_event(&rt->hs, EE_HS_EV_ANSWER, ee_port_ticks(), EE_OK);
            } else {
                (void)ee_hs_event(&rt->hs, EE_HS_EV_REMOTE_ERROR, ee_port_ticks(), remote);
            }
        } else if (ee_hs_event(&rt->hs, EE_HS_EV_POLL, ee_port_ticks(), EE_OK) == EE_HS_WAIT) {
            ee_port_wait_event();
        }
    }
    t_wake = ee_port_ticks();
    if (rt->hs.state == EE_HS_DONE) {
        uint32_t ex = mb->exit_stage;
        res->handoffs = mb->handoffs;
        for (k = 1; k < ee_n_cores(cfg); ++k) {
            res->ticks[k] = mb->ticks[k];
        }
        for (k = s; k <= ex && k < EE_MAX_STAGES; ++k) {
            res->stage_ticks[k] = mb->stage_ticks[k];
        }
        res->cls = mb->cls;
        res->exit_stage = ex;
        res->confidence = mb->confidence;
        res->scores = buf->scores;
        res->n_scores = cfg->stages[ex].n_scores;
        res->status = EE_OK;
    } else {
        res->status = rt->hs.error;
    }
    now = ee_port_ticks();
    res->ticks[0] = (t_pass - t0) + (now - t_wake);
    res->elapsed_ticks = now - t0;
    return res->status;
}

/* The request is one this core can serve: its stage, and every stage it would run after it,
 * find their buffers in the mailbox and within its capacities. */
static int request_valid(const ee_config_t *cfg, uint32_t core, const ee_mailbox_t *mb)
{
    uint32_t s = mb->stage;
    uint32_t k;
    if (s >= cfg->n_stages || ee_stage_core(cfg, s) != core || mb->fm_len != cfg->stages[s].input_len ||
        mb->scores == 0 || mb->handoffs == 0u || mb->handoffs >= EE_MAX_CORES) {
        return 0;
    }
    if (s == 0u ? (mb->input == 0 || cfg->stages[0].input_len > mb->input_cap)
                : (mb->fm[(s - 1u) & 1u] == 0 || cfg->stages[s].input_len > mb->fm_cap)) {
        return 0;
    }
    for (k = s; k < cfg->n_stages && ee_stage_core(cfg, k) == core; ++k) {
        const ee_stage_config_t *st = &cfg->stages[k];
        if (st->n_scores > mb->scores_cap) {
            return 0;
        }
        if (k + 1u < cfg->n_stages && (st->fm_len > mb->fm_cap || mb->fm[k & 1u] == 0)) {
            return 0;
        }
    }
    return 1;
}

ee_status_t ee_serve(const ee_config_t *cfg, uint32_t core, ee_mailbox_t *mb)
{
    ee_responder_t rs;
    uint64_t t0 = ee_port_ticks();
    uint32_t seq;
    uint32_t next = 0;
    ee_status_t answer = EE_OK;

    if (cfg == 0 || mb == 0 || mb->magic != EE_MAILBOX_MAGIC || core == 0u || core >= ee_n_cores(cfg) ||
        core >= EE_MAX_CORES) {
        return EE_ERR_PROTOCOL; /* nobody to answer safely */
    }
    ee_rs_init(&rs, ee_us_to_ticks(cfg->handoff_timeout_us, ee_core_tick_hz(cfg, core)));
    ee_port_barrier();
    seq = mb->req_seq;
    if (!request_valid(cfg, core, mb)) {
        (void)ee_rs_event(&rs, EE_RS_EV_BAD_REQUEST, ee_port_ticks());
        answer = EE_ERR_PROTOCOL;
    } else {
        uint32_t s;
        int done = 0;
        (void)ee_rs_event(&rs, EE_RS_EV_REQUEST, ee_port_ticks());
        /* this core's stages, back to back */
        for (s = mb->stage; !done && s < cfg->n_stages && ee_stage_core(cfg, s) == core; ++s) {
            const ee_stage_config_t *st = &cfg->stages[s];
            int last = (s + 1u == cfg->n_stages);
            const int8_t *in = stage_input(cfg, s, mb->fm, mb->input);
            ee_op_table_t *ops = (mb->flags & EE_RT_PROFILE_OPS) != 0u ? mb->ops : 0;
            if (run_stage_timed(s, in, st, mb->fm[s & 1u], mb->scores, last, ops, &mb->stage_ticks[s]) != 0) {
                mb->exit_stage = s;
                answer = EE_ERR_STAGE;
                done = 1;
            } else if (last || ((mb->flags & EE_RT_NO_EXIT) == 0u &&
                                ee_exit_taken(mb->scores, st->n_scores, st->threshold_q, cfg->confidence))) {
                mb->cls = ee_argmax(mb->scores, st->n_scores);
                mb->exit_stage = s;
                mb->confidence = ee_confidence_q(mb->scores, st->n_scores, cfg->confidence);
                done = 1;
            }
        }
        (void)ee_rs_event(&rs, answer == EE_OK ? EE_RS_EV_DONE : EE_RS_EV_FAIL, ee_port_ticks());
        if (!done) { /* not confident: forward to the core of stage s */
            next = ee_stage_core(cfg, s);
            mb->stage = s;
            mb->fm_len = cfg->stages[s - 1u].fm_len;
            mb->handoffs = mb->handoffs + 1u;
        }
    }
    mb->ticks[core] = ee_port_ticks() - t0;
    if (next == 0u) {
        mb->status = answer;
        ee_port_barrier();
        mb->resp_seq = seq;
    }
    ee_port_barrier();
    while (rs.state == EE_RS_REPLY) {
        ee_status_t nrc = ee_port_notify(next, mb);
        if (nrc == EE_OK) {
            (void)ee_rs_event(&rs, EE_RS_EV_SENT, ee_port_ticks());
        } else if (nrc == EE_ERR_BUSY) {
            if (ee_rs_event(&rs, EE_RS_EV_BUSY, ee_port_ticks()) == EE_RS_REPLY) {
                ee_port_wait_event();
            }
        } else {
            (void)ee_rs_event(&rs, EE_RS_EV_IPC_FAIL, ee_port_ticks());
        }
    }
    return rs.state == EE_RS_ERROR ? rs.error : answer;
}

void ee_core_main(const ee_config_t *cfg, uint32_t core)
{
    for (;;) {
        ee_mailbox_t *mb = ee_port_wait_request();
        if (mb != 0) {
            (void)ee_serve(cfg, core, mb);
        }
    }
}
