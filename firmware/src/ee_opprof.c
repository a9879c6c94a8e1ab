/* Per-operator timing table (ee_opprof.h). One active table per core: each core links its own copy. */
#include "ee_opprof.h"

static ee_op_table_t *s_table; /* this core's active table, NULL when not profiling */
static uint32_t s_stage;

void ee_op_table_clear(ee_op_table_t *t)
{
    if (t != 0) {
        t->count = 0u;
        t->dropped = 0u;
    }
}

void ee_op_stage_begin(ee_op_table_t *t, uint32_t stage)
{
    s_table = t;
    s_stage = stage;
}

void ee_op_stage_end(void)
{
    s_table = 0;
}

int ee_op_active(void)
{
    return s_table != 0;
}

int ee_op_record(uint32_t op_index, const char *name, uint64_t ticks)
{
    ee_op_table_t *t = s_table;
    ee_op_record_t *r;
    uint32_t n;
    uint32_t i = 0;
    if (t == 0) {
        return 1;
    }
    n = t->count;
    if (n >= EE_OP_MAX) {
        t->dropped = t->dropped + 1u;
        return 1;
    }
    r = &t->rec[n];
    r->stage = s_stage;
    r->op_index = op_index;
    if (name != 0) {
        for (; i + 1u < EE_OP_NAME_MAX && name[i] != '\0'; ++i) {
            r->name[i] = name[i];
        }
    }
    r->name[i] = '\0';
    r->ticks = ticks;
    t->count = n + 1u;
    return 0;
}
