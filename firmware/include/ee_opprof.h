/*
 * eenn firmware runtime: per-operator timing (`eenn-profile on`, docs/protocol.md §2.6).
 *
 * A fixed-size table in memory every core can reach (on the PSoC 6 the .cy_sharedmem region,
 * next to the mailbox). Core 0's application attaches it to the runtime (ee_runtime_set_ops);
 * the runtime clears it at the start of each inference and, around every stage, tells this
 * core which stage runs (ee_op_stage_begin / _end). The stage's interpreter reports each
 * operator it ran through ee_op_record(): on the target a TFLite Micro profiler in the
 * generated per-core C++, on the host the virtual board's timing model. Nothing is recorded
 * unless a table is active, so the cost when profiling is off is one pointer test per operator.
 */
#ifndef EE_OPPROF_H
#define EE_OPPROF_H

#include <stddef.h>
#include <stdint.h>

#define EE_OP_MAX 96u      /* operator invocations one inference may record (all stages) */
#define EE_OP_NAME_MAX 24u /* operator name, NUL included (TFLite builtin names fit) */

typedef struct {
    uint32_t stage;
    uint32_t op_index;          /* position of the operator in its stage's subgraph */
    char name[EE_OP_NAME_MAX];  /* e.g. CONV_2D; cut to EE_OP_NAME_MAX - 1 characters */
    uint64_t ticks;             /* ticks of the core that ran it (m-eenn-core-tick-hz) */
} ee_op_record_t;

typedef struct {
    volatile uint32_t count;    /* records valid in rec[] (<= EE_OP_MAX) */
    volatile uint32_t dropped;  /* invocations that did not fit */
    ee_op_record_t rec[EE_OP_MAX];
} ee_op_table_t;

void ee_op_table_clear(ee_op_table_t *t);

/* This core runs stage `stage` and records into `t` (NULL: nothing is recorded). */
void ee_op_stage_begin(ee_op_table_t *t, uint32_t stage);
void ee_op_stage_end(void);

/* 1 while a stage with an active table runs on this core. */
int ee_op_active(void);

/* One operator invocation of the running stage; 0 recorded, 1 dropped (table full) or inactive. */
int ee_op_record(uint32_t op_index, const char *name, uint64_t ticks);

#endif /* EE_OPPROF_H */
