/*
 * eenn firmware runtime: configuration, shared mailbox, inference and the handoff.
 *
 * One source tree for every core and the host. Core 0 (the always-on core) calls
 * ee_infer(); cores 1..n-1 call ee_serve() for each request that wakes them (on the
 * target through ee_core_main(), which never returns). Running a stage's subgraph is
 * the application hook ee_app_run_stage(); the hardware is behind ee_port.h.
 * No dynamic allocation: the application owns every buffer (ee_buffers_t).
 *
 * Placement: stage k runs on core stages[k].core; cores are non-decreasing along the chain,
 * a core may run several stages (back to back, no IPC) or none (core 0 then only serves the
 * protocol and passes the input on). A handoff (IPC request) happens only where the core
 * changes; the core that answers notifies core 0 with the result.
 */
#ifndef EE_RUNTIME_H
#define EE_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "ee_handoff.h"
#include "ee_opprof.h"
#include "ee_quant.h"
#include "ee_status.h"

#define EE_RUNTIME_VERSION "0.1.0"
#define EE_MAX_STAGES 8u               /* stages a configuration may have */
#define EE_MAX_CORES 4u                /* cores a configuration may use */
#define EE_MAILBOX_MAGIC 0x45454E4Eu   /* "EENN" */

/* `eenn-input TYPE` (ee_config_t.input_type is the start value): what the bytes of `db` are,
 * the EEMBC benchmarks' own input types. */
#define EE_INPUT_INT8 0u    /* the model's int8 input as is (kws01) */
#define EE_INPUT_UINT8 1u   /* q = byte - 128 (ic01, vww01 reference firmware) */
#define EE_INPUT_FLOAT32 2u /* little-endian float32, q = ee_quantize_f32(x, input_scale, input_zero_point) (ad01) */

/* ee_runtime_t.flags (protocol switches, copied into the mailbox with every request) */
#define EE_RT_NO_EXIT 1u      /* every exit declines: the whole chain runs (`eenn-noexit on`) */
#define EE_RT_PROFILE_OPS 2u  /* record each operator into the op table (`eenn-profile on`) */

/* One stage = one subgraph (a backbone segment and its exit), run on core `core`. */
typedef struct {
    uint32_t input_len;        /* int8 elements the subgraph reads */
    uint32_t fm_len;           /* int8 elements of the feature map handed on; 0 on the last stage */
    uint32_t n_scores;         /* classes of this stage's classifier (>= 1; >= 2 for margin) */
    int32_t threshold_q;       /* exit when confidence >= threshold_q; ignored on the last stage */
    float scores_scale;        /* scores quantization, for the dequantized `m-results` line only */
    int32_t scores_zero_point;
    ee_requant_t requant;      /* applied to this stage's input (the previous feature map); off on stage 0 */
    uint32_t tick_hz;          /* its core's tick rate (ee_port_ticks() per second) */
    uint32_t core;             /* the core that runs it (ignored when ee_config_t.n_cores is 0) */
} ee_stage_config_t;

/* The whole configuration; const on the target (the generated ee_config.h initialises it). */
typedef struct {
    uint32_t n_stages;            /* 1..EE_MAX_STAGES */
    uint32_t confidence;          /* EE_CONF_MAX or EE_CONF_MARGIN */
    uint32_t handoff_timeout_us;  /* how long a core waits for the next one (> 0) */
    const char *solution_hash;    /* bundle hash (hex), printed by `profile` and `results` */
    const char *model_id;         /* model name for the MLPerf Tiny runner (`m-model-[...]`) */
    float input_scale;            /* the model input's quantization (project.json `input`): what `eenn-input */
    int32_t input_zero_point;     /* float32` quantizes with; scale 0 = unknown (float32 input refused) */
    uint32_t input_type;          /* EE_INPUT_*: the input type at start (eenn generate: from model_id) */
    ee_stage_config_t stages[EE_MAX_STAGES];
    /* Placement. 0: one core per stage, stage k on core k (the layout before placement was
     * searched). Else 1..EE_MAX_CORES cores, stage k on stages[k].core, non-decreasing in k. */
    uint32_t n_cores;
    /* Tick rate of each core; 0: that of the stages it runs. Required for core 0 when it runs no stage. */
    uint32_t core_tick_hz[EE_MAX_CORES];
} ee_config_t;

/* Shared between the cores: lives in memory both can reach (on the PSoC 6 any SRAM).
 * Core 0 owns it and sends its address with every IPC notification. */
typedef struct {
    uint32_t magic;                 /* EE_MAILBOX_MAGIC */
    volatile uint32_t req_seq;      /* core 0: sequence number of the outstanding request */
    volatile uint32_t resp_seq;     /* answering core: set to req_seq when the answer is complete */
    volatile uint32_t stage;        /* the stage that must run next (on core stages[stage].core) */
    volatile uint32_t fm_len;       /* elements valid in the feature map the next stage reads */
    volatile int32_t status;        /* answer: EE_OK or an ee_status_t error */
    volatile uint32_t exit_stage;   /* answer: whose classifier answered */
    volatile uint32_t cls;          /* answer: the class */
    volatile int32_t confidence;    /* answer: integer confidence of that classifier */
    volatile uint32_t handoffs;     /* requests sent so far for this inference (core changes) */
    int8_t *fm[2];                  /* feature maps: stage k reads fm[(k-1)&1], writes fm[k&1] */
    uint32_t fm_cap;                /* capacity of each fm buffer */
    int8_t *scores;                 /* the answering classifier's int8 scores */
    uint32_t scores_cap;
    const int8_t *input;            /* the model input, read by stage 0 when it is not on core 0 */
    uint32_t input_cap;
    volatile uint64_t ticks[EE_MAX_CORES]; /* active ticks of each core for this request */
    volatile uint32_t flags;        /* core 0: EE_RT_* switches for this request */
    ee_op_table_t *ops;             /* core 0: the shared op table (NULL: none, or not profiling) */
    volatile uint64_t stage_ticks[EE_MAX_STAGES]; /* answer: ticks of each stage run off core 0 */
} ee_mailbox_t;

/* Buffers core 0's application provides (static arrays). fm[1] may be NULL with <= 2 stages. */
typedef struct {
    int8_t *input;            /* the `db` input buffer: core 0 private, shared when stage 0 is on another core */
    uint32_t input_cap;
    ee_mailbox_t *mailbox;    /* shared */
    int8_t *fm[2];            /* shared; each >= the largest fm_len */
    uint32_t fm_cap;
    int8_t *scores;           /* shared; >= the largest n_scores */
    uint32_t scores_cap;
} ee_buffers_t;

/* NULL when cfg (and buf, unless NULL) are usable, else a constant sentence saying what is wrong. */
const char *ee_config_check(const ee_config_t *cfg, const ee_buffers_t *buf);

/* Placement of a checked configuration: cores used, the core of stage k, core c's tick rate. */
uint32_t ee_n_cores(const ee_config_t *cfg);
uint32_t ee_stage_core(const ee_config_t *cfg, uint32_t stage);
uint32_t ee_core_tick_hz(const ee_config_t *cfg, uint32_t core);

/* One inference's outcome (core 0). */
typedef struct {
    ee_status_t status;
    uint32_t cls;
    uint32_t exit_stage;                /* n_stages - 1 = the final classifier */
    int32_t confidence;
    uint32_t handoffs;                  /* IPC requests on the path taken: core changes from core 0 to the exit's core */
    uint64_t ticks[EE_MAX_CORES];       /* active ticks per core (core c at ee_core_tick_hz(cfg, c)) */
    uint64_t elapsed_ticks;             /* core 0 ticks from start to answer (wall clock) */
    const int8_t *scores;               /* the answering classifier's scores (in the shared buffer) */
    uint32_t n_scores;
    uint64_t stage_ticks[EE_MAX_STAGES]; /* ticks of each stage (its core's rate); 0 for a stage not run */
} ee_result_t;

typedef struct {
    const ee_config_t *cfg;
    const ee_buffers_t *buf;
    ee_handoff_t hs;
    uint32_t seq;
    uint32_t flags;           /* EE_RT_*; 0 after ee_runtime_init */
    ee_op_table_t *ops;       /* per-operator table (shared memory); NULL: this build has none */
} ee_runtime_t;

/*
 * The application hook: run stage `stage`'s subgraph on `in` (in_len int8 elements), write
 * fm_len feature-map elements to `feature_map` (NULL, 0 on the last stage) and n_scores
 * int8 scores to `scores`. Return 0 on success, anything else on failure.
 * Generated C++ implements it with TFLite Micro on the target; the host port forwards it.
 */
int ee_app_run_stage(uint32_t stage, const int8_t *in, size_t in_len, int8_t *feature_map, size_t fm_len,
                     int8_t *scores, size_t n_scores);

ee_status_t ee_runtime_init(ee_runtime_t *rt, const ee_config_t *cfg, const ee_buffers_t *buf);

/* Per-operator table of this build (NULL: none; ee_runtime_init clears it). */
void ee_runtime_set_ops(ee_runtime_t *rt, ee_op_table_t *ops);

/* Core 0: one inference on `input` (len must equal stages[0].input_len). */
ee_status_t ee_infer(ee_runtime_t *rt, const int8_t *input, uint32_t len, ee_result_t *res);

/* Cores >= 1: run the requested stage and the following ones on this core, then answer core 0
 * (exit taken, last stage, or a failure) or forward to the core of the next stage. */
ee_status_t ee_serve(const ee_config_t *cfg, uint32_t core, ee_mailbox_t *mb);

/* Cores >= 1 on the target: sleep, serve, sleep... never returns. */
void ee_core_main(const ee_config_t *cfg, uint32_t core);

/* ticks -> microseconds at hz, without overflow. */
uint64_t ee_ticks_to_us(uint64_t ticks, uint32_t hz);
/* microseconds -> ticks at hz, saturating. */
uint64_t ee_us_to_ticks(uint64_t us, uint32_t hz);

#endif /* EE_RUNTIME_H */
