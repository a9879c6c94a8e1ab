/*
 * The HIL protocol on core 0's UART. Grammar, replies and every error string: docs/protocol.md
 * (a test checks that each `e-[` text below is documented there).
 */
#include "ee_protocol.h"

#include "ee_crc32.h"
#include "ee_port.h"

#define MAX_TOKENS 8u
#define TIMING_MAX 120u

typedef struct {
    const char *s;
    uint32_t len;
} tok_t;

/* ---------------------------------------------------------------- small helpers */

static int tok_is(const tok_t *t, const char *word)
{
    uint32_t i;
    for (i = 0; i < t->len; ++i) {
        if (word[i] == '\0' || word[i] != t->s[i]) {
            return 0;
        }
    }
    return word[t->len] == '\0';
}

/* Decimal without sign, at most 10 digits, <= max; 1 on success. */
static int parse_u32(const tok_t *t, uint32_t max, uint32_t *out)
{
    uint64_t v = 0;
    uint32_t i;
    if (t->len == 0u || t->len > 10u) {
        return 0;
    }
    for (i = 0; i < t->len; ++i) {
        char c = t->s[i];
        if (c < '0' || c > '9') {
            return 0;
        }
        v = v * 10u + (uint64_t)(c - '0');
    }
    if (v > max) {
        return 0;
    }
    *out = (uint32_t)v;
    return 1;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static void out_err_begin(ee_proto_t *p)
{
    p->errors++;
    ee_out_str(&p->out, "e-[");
}

static void out_err_end(ee_proto_t *p)
{
    ee_out_char(&p->out, ']');
    ee_out_eol(&p->out);
}

static void err_text(ee_proto_t *p, const char *text)
{
    out_err_begin(p);
    ee_out_str(&p->out, text);
    out_err_end(p);
}

static void err_too_many(ee_proto_t *p, const char *cmd)
{
    out_err_begin(p);
    ee_out_str(&p->out, "Too many arguments for '");
    ee_out_str(&p->out, cmd);
    ee_out_char(&p->out, '\'');
    out_err_end(p);
}

/* "m-<key>-[" ... "]" lines */
static void kv_begin(ee_proto_t *p, const char *key)
{
    ee_out_str(&p->out, "m-");
    ee_out_str(&p->out, key);
    ee_out_str(&p->out, "-[");
}

static void kv_end(ee_proto_t *p)
{
    ee_out_char(&p->out, ']');
    ee_out_eol(&p->out);
}

static void kv_str(ee_proto_t *p, const char *key, const char *value, size_t max)
{
    size_t n = 0;
    while (value != 0 && value[n] != '\0' && n <= max) {
        ++n;
    }
    kv_begin(p, key);
    ee_out_echo(&p->out, value, n, max);
    kv_end(p);
}

static void kv_u64(ee_proto_t *p, const char *key, uint64_t v)
{
    kv_begin(p, key);
    ee_out_u64(&p->out, v);
    kv_end(p);
}

/* int8 elements of the model input (the input buffer holds this many) */
static uint32_t input_elems(const ee_proto_t *p)
{
    return p->rt->cfg->stages[0].input_len;
}

static uint32_t elem_bytes(uint32_t type)
{
    return type == EE_INPUT_FLOAT32 ? 4u : 1u;
}

/* the N `db load N` must give; `eenn-input float32` is refused where it would not fit 32 bits */
static uint32_t input_bytes(const ee_proto_t *p)
{
    return input_elems(p) * elem_bytes(p->input_type);
}

static const char *type_name(uint32_t type)
{
    return type == EE_INPUT_FLOAT32 ? "float32" : (type == EE_INPUT_UINT8 ? "uint8" : "int8");
}

/* The input and, since a result belongs to the input it was computed on, the result. */
static void invalidate_input(ee_proto_t *p)
{
    p->load_active = 0;
    p->input_ready = 0;
    p->load_len = 0;
    p->load_pos = 0;
    p->input_crc = 0;
    p->have_result = 0;
}

static void timestamp(ee_proto_t *p)
{
    if (p->energy_mode) {
        ee_out_flush(&p->out); /* lines before the edge leave first */
        ee_port_timestamp_pulse();
    } else {
        ee_out_str(&p->out, "m-lap-us-");
        ee_out_u64(&p->out, ee_ticks_to_us(ee_port_ticks(), ee_core_tick_hz(p->rt->cfg, 0u)));
        ee_out_eol(&p->out);
    }
}

static void print_mode(ee_proto_t *p)
{
    ee_out_str(&p->out, p->energy_mode ? "m-timestamp-mode-energy" : "m-timestamp-mode-performance");
    ee_out_eol(&p->out);
}

/* m-eenn-input-[int8] / [uint8 -128] / [float32 scale 0x1.010102p-8 zero-point -128], then the N of `db load N` */
static void print_input_type(ee_proto_t *p)
{
    const ee_config_t *cfg = p->rt->cfg;
    kv_begin(p, "eenn-input");
    ee_out_str(&p->out, type_name(p->input_type));
    if (p->input_type == EE_INPUT_UINT8) {
        ee_out_str(&p->out, " -128");
    } else if (p->input_type == EE_INPUT_FLOAT32) {
        ee_out_str(&p->out, " scale ");
        ee_out_hexfloat(&p->out, cfg->input_scale);
        ee_out_str(&p->out, " zero-point ");
        ee_out_i32(&p->out, cfg->input_zero_point);
    }
    kv_end(p);
    kv_u64(p, "eenn-input-bytes", input_bytes(p));
}

/* ---------------------------------------------------------------- commands */

static void cmd_name(ee_proto_t *p)
{
    ee_out_str(&p->out, "m-name-dut-[" EE_DEVICE_NAME "]");
    ee_out_eol(&p->out);
}

static void cmd_profile(ee_proto_t *p)
{
    const ee_config_t *cfg = p->rt->cfg;
    uint32_t k;
    kv_str(p, "profile", "eenn-fw-" EE_RUNTIME_VERSION, 64u);
    kv_str(p, "model", cfg->model_id, 64u);
    kv_u64(p, "eenn-protocol", EE_PROTOCOL_VERSION);
    kv_str(p, "eenn-hash", cfg->solution_hash, 128u);
    kv_u64(p, "eenn-stages", cfg->n_stages);
    kv_str(p, "eenn-confidence", cfg->confidence == EE_CONF_MARGIN ? "margin" : "max", 16u);
    print_input_type(p);
    kv_begin(p, "eenn-classes");
    for (k = 0; k < cfg->n_stages; ++k) {
        if (k > 0u) {
            ee_out_char(&p->out, ',');
        }
        ee_out_u64(&p->out, cfg->stages[k].n_scores);
    }
    kv_end(p);
    kv_begin(p, "eenn-threshold-q");
    for (k = 0; k + 1u < cfg->n_stages; ++k) {
        if (k > 0u) {
            ee_out_char(&p->out, ',');
        }
        ee_out_i32(&p->out, cfg->stages[k].threshold_q);
    }
    kv_end(p);
    kv_begin(p, "eenn-tick-hz");
    for (k = 0; k < cfg->n_stages; ++k) {
        if (k > 0u) {
            ee_out_char(&p->out, ',');
        }
        ee_out_u64(&p->out, cfg->stages[k].tick_hz);
    }
    kv_end(p);
    kv_u64(p, "eenn-cores", ee_n_cores(cfg));
    kv_begin(p, "eenn-stage-cores");
    for (k = 0; k < cfg->n_stages; ++k) {
        if (k > 0u) {
            ee_out_char(&p->out, ',');
        }
        ee_out_u64(&p->out, ee_stage_core(cfg, k));
    }
    kv_end(p);
    kv_begin(p, "eenn-core-tick-hz");
    for (k = 0; k < ee_n_cores(cfg); ++k) {
        if (k > 0u) {
            ee_out_char(&p->out, ',');
        }
        ee_out_u64(&p->out, ee_core_tick_hz(cfg, k));
    }
    kv_end(p);
    kv_str(p, "eenn-timing", p->timing, TIMING_MAX);
    kv_u64(p, "eenn-line-max", EE_LINE_MAX);
    kv_u64(p, "eenn-op-table", p->rt->ops != 0 ? EE_OP_MAX : 0u);
    print_mode(p);
}

static void cmd_help(ee_proto_t *p)
{
    static const char *const lines[] = {
        "name: m-name-dut-[" EE_DEVICE_NAME "]",
        "profile: firmware, model, solution hash, stages, tick rates, timing",
        "timestamp: m-lap-us-N, or a pulse on the timestamp pin in energy mode",
        "db load N: expect N input bytes (the model input size)",
        "db HH..: load hex bytes (two digits per byte)",
        "db crc XXXXXXXX: check the CRC-32 of the loaded input",
        "db print: the loaded bytes as hex",
        "infer [N [W]]: W warmups (default 10) then N inferences (default 1), then results",
        "results: the last inference's results",
        "eenn-mode [energy|performance]: how timestamps are given",
        "eenn-input [int8|uint8|float32]: the type of the db bytes (uint8: q = b - 128; float32: quantized)",
        "eenn-noexit [on|off]: every exit declines, the whole chain runs",
        "eenn-profile [on|off]: per-operator ticks after each result",
        "help: this list",
    };
    size_t i;
    for (i = 0; i < sizeof(lines) / sizeof(lines[0]); ++i) {
        kv_str(p, "help", lines[i], 100u);
    }
}

static void cmd_timestamp(ee_proto_t *p)
{
    timestamp(p);
}

/* ---------------------------------------------------------------- per-stage and per-operator timing */

static size_t ee_op_name_len(const char *name)
{
    size_t n = 0;
    while (n + 1u < EE_OP_NAME_MAX && name[n] != '\0') {
        ++n;
    }
    return n;
}

/* After the results block: the ticks of each stage and, while `eenn-profile on`, one line per operator. */
static void print_stage_lines(ee_proto_t *p)
{
    const ee_config_t *cfg = p->rt->cfg;
    const ee_result_t *r = &p->result;
    const ee_op_table_t *t = p->rt->ops;
    uint32_t i;
    kv_begin(p, "eenn-stage-ticks");
    for (i = 0; i < cfg->n_stages && i < EE_MAX_STAGES; ++i) {
        if (i > 0u) {
            ee_out_char(&p->out, ',');
        }
        ee_out_u64(&p->out, r->stage_ticks[i]);
    }
    kv_end(p);
    if ((p->rt->flags & EE_RT_PROFILE_OPS) == 0u || t == 0) {
        return;
    }
    for (i = 0; i < t->count && i < EE_OP_MAX; ++i) {
        const ee_op_record_t *rec = &t->rec[i];
        kv_begin(p, "eenn-op");
        ee_out_u64(&p->out, rec->stage);
        ee_out_char(&p->out, ',');
        ee_out_u64(&p->out, rec->op_index);
        ee_out_char(&p->out, ',');
        ee_out_echo(&p->out, rec->name, ee_op_name_len(rec->name), EE_OP_NAME_MAX);
        ee_out_char(&p->out, ',');
        ee_out_u64(&p->out, rec->ticks);
        kv_end(p);
    }
    kv_begin(p, "eenn-ops");
    ee_out_u64(&p->out, t->count);
    ee_out_char(&p->out, ',');
    ee_out_u64(&p->out, t->dropped);
    kv_end(p);
}

/* `eenn-noexit [on|off]` and `eenn-profile [on|off]`: a switch in rt->flags, reported as m-KEY-[on|off]. */
static void cmd_switch(ee_proto_t *p, const tok_t *tok, uint32_t ntok, const char *cmd, const char *key,
                       uint32_t flag)
{
    if (ntok > 2u) {
        err_too_many(p, cmd);
        return;
    }
    if (ntok == 2u) {
        if (tok_is(&tok[1], "on")) {
            if (flag == EE_RT_PROFILE_OPS && p->rt->ops == 0) {
                err_text(p, "eenn-profile: this build has no operator profiler");
                return;
            }
            p->rt->flags |= flag;
        } else if (tok_is(&tok[1], "off")) {
            p->rt->flags &= ~flag;
        } else {
            out_err_begin(p);
            ee_out_str(&p->out, cmd);
            ee_out_str(&p->out, ": expected 'on' or 'off'");
            out_err_end(p);
            return;
        }
    }
    kv_str(p, key, (p->rt->flags & flag) != 0u ? "on" : "off", 4u);
}

static void print_results(ee_proto_t *p)
{
    const ee_config_t *cfg = p->rt->cfg;
    const ee_result_t *r = &p->result;
    const ee_stage_config_t *st = &cfg->stages[r->exit_stage];
    uint32_t i;

    ee_out_str(&p->out, "m-results-[");
    for (i = 0; i < r->n_scores; ++i) {
        float v = (float)((int32_t)r->scores[i] - st->scores_zero_point) * st->scores_scale * 1000.0f;
        int32_t milli;
        if (v > 2.0e9f) {
            v = 2.0e9f;
        } else if (v < -2.0e9f) {
            v = -2.0e9f;
        }
        milli = (int32_t)(v >= 0.0f ? v + 0.5f : v - 0.5f);
        if (i > 0u) {
            ee_out_char(&p->out, ',');
        }
        ee_out_milli(&p->out, milli);
    }
    ee_out_char(&p->out, ']');
    ee_out_eol(&p->out);
    kv_u64(p, "eenn-class", r->cls);
    kv_u64(p, "eenn-exit", r->exit_stage);
    kv_begin(p, "eenn-confidence-q");
    ee_out_i32(&p->out, r->confidence);
    kv_end(p);
    kv_begin(p, "eenn-scores-q");
    for (i = 0; i < r->n_scores; ++i) {
        if (i > 0u) {
            ee_out_char(&p->out, ',');
        }
        ee_out_i32(&p->out, r->scores[i]);
    }
    kv_end(p);
    kv_begin(p, "eenn-ticks");
    for (i = 0; i < ee_n_cores(cfg); ++i) {
        if (i > 0u) {
            ee_out_char(&p->out, ',');
        }
        ee_out_u64(&p->out, r->ticks[i]);
    }
    kv_end(p);
    kv_u64(p, "eenn-handoffs", r->handoffs);
    kv_u64(p, "eenn-elapsed-us", ee_ticks_to_us(r->elapsed_ticks, ee_core_tick_hz(cfg, 0u)));
    kv_begin(p, "eenn-crc32");
    ee_out_hex32(&p->out, p->result_crc);
    kv_end(p);
    kv_str(p, "eenn-hash", cfg->solution_hash, 128u);
    print_stage_lines(p);
}

static void cmd_results(ee_proto_t *p)
{
    if (!p->have_result) {
        err_text(p, "results: no result for the loaded input (no successful 'infer' since it was loaded)");
        return;
    }
    print_results(p);
}

static void err_incomplete(ee_proto_t *p, const char *what)
{
    out_err_begin(p);
    ee_out_str(&p->out, what);
    if (!p->load_active && !p->input_ready) {
        ee_out_str(&p->out, ": no input loaded");
    } else {
        ee_out_str(&p->out, ": input incomplete (");
        ee_out_u64(&p->out, p->load_pos);
        ee_out_str(&p->out, " of ");
        ee_out_u64(&p->out, p->load_len);
        ee_out_str(&p->out, " bytes loaded)");
    }
    out_err_end(p);
}

static void cmd_db_load(ee_proto_t *p, const tok_t *tok, uint32_t ntok)
{
    uint32_t n;
    invalidate_input(p); /* every `db load`, accepted or refused, discards the previous input */
    if (ntok < 3u) {
        err_text(p, "Command 'db load' requires the # of bytes");
        return;
    }
    if (ntok > 3u) {
        err_too_many(p, "db load");
        return;
    }
    if (!parse_u32(&tok[2], 0xFFFFFFFFu, &n)) {
        out_err_begin(p);
        ee_out_str(&p->out, "db load: '");
        ee_out_echo(&p->out, tok[2].s, tok[2].len, EE_ECHO_MAX);
        ee_out_str(&p->out, "' is not a byte count");
        out_err_end(p);
        return;
    }
    if (n != input_bytes(p)) {
        out_err_begin(p);
        ee_out_str(&p->out, "db load: ");
        ee_out_u64(&p->out, n);
        ee_out_str(&p->out, " bytes, the model input is ");
        ee_out_u64(&p->out, input_bytes(p));
        ee_out_str(&p->out, " bytes (");
        ee_out_u64(&p->out, input_elems(p));
        ee_out_char(&p->out, ' ');
        ee_out_str(&p->out, type_name(p->input_type));
        ee_out_str(&p->out, " values); input discarded");
        out_err_end(p);
        return;
    }
    p->load_active = 1;
    p->load_len = n;
    ee_out_str(&p->out, "m-[Expecting ");
    ee_out_u64(&p->out, n);
    ee_out_str(&p->out, " bytes]");
    ee_out_eol(&p->out);
}

/* One received byte: converted into the input buffer as the type in force says. */
static void take_byte(ee_proto_t *p, uint8_t b)
{
    const ee_config_t *cfg = p->rt->cfg;
    int8_t *dst = p->rt->buf->input;
    uint32_t pos = p->load_pos;
    uint32_t at = p->input_type == EE_INPUT_FLOAT32 ? pos / 4u : pos;
    p->load_pos = pos + 1u;
    if (at >= input_elems(p) || at >= p->rt->buf->input_cap) {
        return; /* unreachable: load_len = input_elems x element size, and input_elems <= input_cap */
    }
    if (p->input_type == EE_INPUT_FLOAT32) {
        union {
            uint32_t u;
            float f;
        } v;
        p->pend[pos & 3u] = b;
        if ((pos & 3u) != 3u) {
            return;
        }
        v.u = (uint32_t)p->pend[0] | ((uint32_t)p->pend[1] << 8) | ((uint32_t)p->pend[2] << 16) |
              ((uint32_t)p->pend[3] << 24); /* little-endian, whatever the core's byte order */
        dst[at] = ee_quantize_f32(v.f, cfg->input_scale, cfg->input_zero_point);
    } else if (p->input_type == EE_INPUT_UINT8) {
        dst[at] = (int8_t)((int32_t)b - 128);
    } else {
        dst[at] = (int8_t)b;
    }
}

static void cmd_db_hex(ee_proto_t *p, const tok_t *hex)
{
    uint32_t nbytes;
    uint32_t i;
    if (!p->load_active) {
        err_text(p, "db: no load in progress; send 'db load N' first");
        return;
    }
    if ((hex->len & 1u) != 0u) {
        out_err_begin(p);
        ee_out_str(&p->out, "db: odd number of hex digits (");
        ee_out_u64(&p->out, hex->len);
        ee_out_char(&p->out, ')');
        out_err_end(p);
        return;
    }
    nbytes = hex->len / 2u;
    for (i = 0; i < hex->len; ++i) { /* validate the whole chunk before taking any of it */
        if (hex_val(hex->s[i]) < 0) {
            uint32_t at = i & ~1u;
            out_err_begin(p);
            ee_out_str(&p->out, "db: invalid hex digit '");
            ee_out_echo(&p->out, hex->s + at, 2u, 2u);
            ee_out_str(&p->out, "' at offset ");
            ee_out_u64(&p->out, at);
            out_err_end(p);
            return;
        }
    }
    if (nbytes > p->load_len - p->load_pos) {
        out_err_begin(p);
        ee_out_str(&p->out, "db: ");
        ee_out_u64(&p->out, nbytes);
        ee_out_str(&p->out, " bytes exceed the ");
        ee_out_u64(&p->out, p->load_len - p->load_pos);
        ee_out_str(&p->out, " bytes still expected");
        out_err_end(p);
        return;
    }
    for (i = 0; i < nbytes; ++i) {
        uint8_t b = (uint8_t)((hex_val(hex->s[2u * i]) << 4) | hex_val(hex->s[2u * i + 1u]));
        p->input_crc = ee_crc32_update(p->input_crc, &b, 1u);
        take_byte(p, b);
    }
    if (p->load_pos == p->load_len) {
        p->load_active = 0;
        p->input_ready = 1;
        ee_out_str(&p->out, "m-load-done");
        ee_out_eol(&p->out);
        kv_begin(p, "eenn-crc32");
        ee_out_hex32(&p->out, p->input_crc);
        kv_end(p);
    }
}

static void cmd_db_crc(ee_proto_t *p, const tok_t *tok, uint32_t ntok)
{
    uint32_t want = 0;
    uint32_t i;
    if (ntok < 3u) {
        err_text(p, "Command 'db crc' requires the CRC-32 as 8 hex digits");
        return;
    }
    if (ntok > 3u) {
        err_too_many(p, "db crc");
        return;
    }
    if (tok[2].len != 8u) {
        i = 0;
    } else {
        for (i = 0; i < 8u; ++i) {
            int v = hex_val(tok[2].s[i]);
            if (v < 0) {
                break;
            }
            want = (want << 4) | (uint32_t)v;
        }
    }
    if (i != 8u) {
        out_err_begin(p);
        ee_out_str(&p->out, "db crc: '");
        ee_out_echo(&p->out, tok[2].s, tok[2].len, EE_ECHO_MAX);
        ee_out_str(&p->out, "' is not 8 hex digits");
        out_err_end(p);
        return;
    }
    if (!p->input_ready) {
        err_incomplete(p, "db crc");
        return;
    }
    if (want != p->input_crc) {
        out_err_begin(p);
        ee_out_str(&p->out, "db crc: mismatch, loaded input has ");
        ee_out_hex32(&p->out, p->input_crc);
        ee_out_str(&p->out, ", expected ");
        ee_out_hex32(&p->out, want);
        ee_out_str(&p->out, "; input discarded");
        out_err_end(p);
        invalidate_input(p);
        return;
    }
    kv_begin(p, "eenn-crc32-ok");
    ee_out_hex32(&p->out, p->input_crc);
    kv_end(p);
}

static void cmd_db_print(ee_proto_t *p, uint32_t ntok)
{
    /* the int8 elements the model will see (after conversion), complete ones only */
    uint32_t n = p->input_ready ? input_elems(p) : p->load_pos / elem_bytes(p->input_type);
    uint32_t i;
    const int8_t *src = p->rt->buf->input;
    if (ntok > 2u) {
        err_too_many(p, "db print");
        return;
    }
    for (i = 0; i < n; ++i) {
        if (i % 8u == 0u) {
            ee_out_str(&p->out, "m-buffer-");
        } else {
            ee_out_char(&p->out, '-');
        }
        ee_out_hex8(&p->out, (uint8_t)src[i]);
        if (i % 8u == 7u || i + 1u == n) {
            ee_out_eol(&p->out);
        }
    }
}

static void cmd_db(ee_proto_t *p, const tok_t *tok, uint32_t ntok)
{
    if (ntok < 2u) {
        err_text(p, "Command 'db' requires a subcommand");
        return;
    }
    if (tok_is(&tok[1], "load")) {
        cmd_db_load(p, tok, ntok);
    } else if (tok_is(&tok[1], "crc")) {
        cmd_db_crc(p, tok, ntok);
    } else if (tok_is(&tok[1], "print")) {
        cmd_db_print(p, ntok);
    } else if (ntok > 2u) {
        err_too_many(p, "db");
    } else {
        cmd_db_hex(p, &tok[1]);
    }
}

static void cmd_infer(ee_proto_t *p, const tok_t *tok, uint32_t ntok)
{
    uint32_t n = 1u;
    uint32_t w = 10u;
    uint32_t i;
    ee_status_t st = EE_OK;
    p->have_result = 0; /* an `infer` that is refused or fails leaves no result behind (`infer 0 0` too) */
    if (ntok > 3u) {
        err_too_many(p, "infer");
        return;
    }
    if (ntok >= 2u && (!parse_u32(&tok[1], EE_MAX_ITERATIONS, &n) || n == 0u)) {
        out_err_begin(p);
        ee_out_str(&p->out, "infer: '");
        ee_out_echo(&p->out, tok[1].s, tok[1].len, EE_ECHO_MAX);
        ee_out_str(&p->out, "' is not an iteration count (1..1000000)");
        out_err_end(p);
        return;
    }
    if (ntok >= 3u && !parse_u32(&tok[2], EE_MAX_ITERATIONS, &w)) {
        out_err_begin(p);
        ee_out_str(&p->out, "infer: '");
        ee_out_echo(&p->out, tok[2].s, tok[2].len, EE_ECHO_MAX);
        ee_out_str(&p->out, "' is not a warmup count (0..1000000)");
        out_err_end(p);
        return;
    }
    if (!p->input_ready) {
        err_incomplete(p, "infer");
        return;
    }
    ee_out_str(&p->out, "m-warmup-start-");
    ee_out_u64(&p->out, w);
    ee_out_eol(&p->out);
    for (i = 0; i < w && st == EE_OK; ++i) {
        st = ee_infer(p->rt, p->rt->buf->input, input_elems(p), &p->result);
    }
    if (st == EE_OK) {
        ee_out_str(&p->out, "m-warmup-done");
        ee_out_eol(&p->out);
        ee_out_str(&p->out, "m-infer-start-");
        ee_out_u64(&p->out, n);
        ee_out_eol(&p->out);
        timestamp(p);
        for (i = 0; i < n && st == EE_OK; ++i) {
            st = ee_infer(p->rt, p->rt->buf->input, input_elems(p), &p->result);
        }
    }
    if (st != EE_OK) {
        out_err_begin(p);
        ee_out_str(&p->out, "infer failed: ");
        ee_out_str(&p->out, ee_status_str(st));
        out_err_end(p);
        return;
    }
    timestamp(p);
    ee_out_str(&p->out, "m-infer-done");
    ee_out_eol(&p->out);
    p->have_result = 1;
    p->result_crc = p->input_crc;
    p->result_iterations = n;
    print_results(p);
}

static void cmd_mode(ee_proto_t *p, const tok_t *tok, uint32_t ntok)
{
    if (ntok > 2u) {
        err_too_many(p, "eenn-mode");
        return;
    }
    if (ntok == 2u) {
        if (tok_is(&tok[1], "energy")) {
            p->energy_mode = 1;
        } else if (tok_is(&tok[1], "performance")) {
            p->energy_mode = 0;
        } else {
            err_text(p, "eenn-mode: expected 'energy' or 'performance'");
            return;
        }
    }
    print_mode(p);
}

static void cmd_input(ee_proto_t *p, const tok_t *tok, uint32_t ntok)
{
    uint32_t type;
    if (ntok > 2u) {
        err_too_many(p, "eenn-input");
        return;
    }
    if (ntok == 2u) {
        if (tok_is(&tok[1], "int8")) {
            type = EE_INPUT_INT8;
        } else if (tok_is(&tok[1], "uint8")) {
            type = EE_INPUT_UINT8;
        } else if (tok_is(&tok[1], "float32")) {
            type = EE_INPUT_FLOAT32;
            if (!(p->rt->cfg->input_scale > 0.0f)) {
                err_text(p, "eenn-input: float32 needs the model input's scale; this firmware's configuration has none");
                return;
            }
            if (input_elems(p) > 0xFFFFFFFFu / 4u) {
                err_text(p, "eenn-input: float32 input would exceed 4 GiB");
                return;
            }
        } else {
            err_text(p, "eenn-input: expected 'int8', 'uint8' or 'float32'");
            return;
        }
        invalidate_input(p); /* bytes loaded as another type mean something else */
        p->input_type = (uint8_t)type;
    }
    print_input_type(p);
}

/* ---------------------------------------------------------------- line handling */

static void dispatch(ee_proto_t *p)
{
    tok_t tok[MAX_TOKENS];
    uint32_t ntok = 0;
    uint32_t i = 0;
    const tok_t *cmd;

    p->commands++;
    if (p->overflow) {
        out_err_begin(p);
        ee_out_str(&p->out, "Line too long: more than ");
        ee_out_u64(&p->out, EE_LINE_MAX);
        ee_out_str(&p->out, " characters");
        out_err_end(p);
        goto ready;
    }
    while (i < p->line_len) {
        uint32_t start;
        while (i < p->line_len && (p->line[i] == ' ' || p->line[i] == '\t')) {
            ++i;
        }
        if (i >= p->line_len) {
            break;
        }
        start = i;
        while (i < p->line_len && p->line[i] != ' ' && p->line[i] != '\t') {
            ++i;
        }
        if (ntok < MAX_TOKENS) {
            tok[ntok].s = p->line + start;
            tok[ntok].len = i - start;
        }
        ++ntok; /* counts past MAX_TOKENS: every command rejects that many */
    }
    if (ntok == 0u) {
        goto ready; /* an empty command (a lone '%') only answers m-ready: the resync idiom */
    }
    cmd = &tok[0];
    if (tok_is(cmd, "db")) {
        cmd_db(p, tok, ntok);
    } else if (tok_is(cmd, "infer")) {
        cmd_infer(p, tok, ntok);
    } else if (tok_is(cmd, "eenn-mode")) {
        cmd_mode(p, tok, ntok);
    } else if (tok_is(cmd, "eenn-input")) {
        cmd_input(p, tok, ntok);
    } else if (tok_is(cmd, "eenn-noexit")) {
        cmd_switch(p, tok, ntok, "eenn-noexit", "eenn-noexit", EE_RT_NO_EXIT);
    } else if (tok_is(cmd, "eenn-profile")) {
        cmd_switch(p, tok, ntok, "eenn-profile", "eenn-profile", EE_RT_PROFILE_OPS);
    } else if (tok_is(cmd, "name") || tok_is(cmd, "profile") || tok_is(cmd, "help") ||
               tok_is(cmd, "timestamp") || tok_is(cmd, "results")) {
        if (ntok > 1u) {
            char name[10];
            for (i = 0; i < cmd->len && i + 1u < sizeof(name); ++i) {
                name[i] = cmd->s[i];
            }
            name[i] = '\0';
            err_too_many(p, name);
        } else if (tok_is(cmd, "name")) {
            cmd_name(p);
        } else if (tok_is(cmd, "profile")) {
            cmd_profile(p);
        } else if (tok_is(cmd, "help")) {
            cmd_help(p);
        } else if (tok_is(cmd, "timestamp")) {
            cmd_timestamp(p);
        } else {
            cmd_results(p);
        }
    } else {
        out_err_begin(p);
        ee_out_str(&p->out, "Unknown command: ");
        ee_out_echo(&p->out, cmd->s, cmd->len, EE_ECHO_MAX);
        out_err_end(p);
    }
ready:
    ee_out_str(&p->out, "m-ready");
    ee_out_eol(&p->out);
    ee_out_flush(&p->out);
}

void ee_proto_init(ee_proto_t *p, ee_runtime_t *rt, int energy_mode, const char *timing)
{
    p->rt = rt;
    ee_out_init(&p->out);
    p->timing = timing != 0 ? timing : "hardware";
    p->line_len = 0;
    p->overflow = 0;
    p->energy_mode = energy_mode ? 1u : 0u;
    p->input_type = (uint8_t)rt->cfg->input_type;
    if (rt->cfg->input_type > EE_INPUT_FLOAT32 ||
        (rt->cfg->input_type == EE_INPUT_FLOAT32 &&
         (!(rt->cfg->input_scale > 0.0f) || rt->cfg->stages[0].input_len > 0xFFFFFFFFu / 4u))) {
        p->input_type = EE_INPUT_INT8; /* what ee_config_check() refuses; never an overflowing N */
    }
    p->pend[0] = p->pend[1] = p->pend[2] = p->pend[3] = 0;
    invalidate_input(p);
    p->result_crc = 0;
    p->result_iterations = 0;
    p->result.status = EE_ERR_PENDING;
    p->result.scores = 0;
    p->result.n_scores = 0;
    p->commands = 0;
    p->errors = 0;
}

void ee_proto_banner(ee_proto_t *p)
{
    print_mode(p);
    timestamp(p);
    ee_out_str(&p->out, "m-init-done");
    ee_out_eol(&p->out);
    ee_out_str(&p->out, "m-ready");
    ee_out_eol(&p->out);
    ee_out_flush(&p->out);
}

void ee_proto_feed(ee_proto_t *p, const uint8_t *data, size_t n)
{
    size_t i;
    if (p == 0 || data == 0) {
        return;
    }
    for (i = 0; i < n; ++i) {
        uint8_t c = data[i];
        if (c == (uint8_t)'%') {
            dispatch(p);
            p->line_len = 0;
            p->overflow = 0;
        } else if (c == (uint8_t)'\r' || c == (uint8_t)'\n') {
            /* ignored: terminals add them, the protocol does not use them */
        } else if (!p->overflow) {
            if (p->line_len >= EE_LINE_MAX) {
                p->overflow = 1;
            } else {
                p->line[p->line_len++] = (char)c;
            }
        }
    }
}

void ee_proto_run(ee_proto_t *p)
{
    uint8_t chunk[64];
    for (;;) {
        size_t n = ee_port_uart_read(chunk, sizeof(chunk));
        if (n > 0u) {
            ee_proto_feed(p, chunk, n);
        } else {
            ee_port_wait_event();
        }
    }
}
