/*
 * eenn firmware runtime: the handoff between cores as two explicit state machines.
 *
 * Requester (core 0, the always-on core):
 *
 *   IDLE --START--> LOCAL --EXIT--> DONE            (confident, or the only stage)
 *                   LOCAL --PASS--> NOTIFY          (feature map published; deadline = now + timeout)
 *                   LOCAL --FAIL--> ERROR(STAGE)
 *   NOTIFY --NOTIFIED--> WAIT
 *   NOTIFY --BUSY--> NOTIFY, or ERROR(TIMEOUT) once now >= deadline
 *   NOTIFY --IPC_FAIL--> ERROR(IPC)
 *   WAIT --ANSWER--> DONE
 *   WAIT --REMOTE_ERROR--> ERROR(REMOTE status)
 *   WAIT --POLL--> WAIT, or ERROR(TIMEOUT) once now >= deadline
 *   DONE --START--> LOCAL                           (the next inference)
 *   any --RESET--> IDLE                             (the only way out of ERROR)
 *
 * Responder (cores 1..n-1, asleep between requests):
 *
 *   SLEEP --REQUEST--> RUN
 *   SLEEP --BAD_REQUEST--> REPLY                    (answer at once with EE_ERR_PROTOCOL)
 *   RUN --DONE--> REPLY                             (answer or forward to the next core)
 *   RUN --FAIL--> REPLY                             (answer with EE_ERR_STAGE)
 *   REPLY --SENT--> SLEEP
 *   REPLY --BUSY--> REPLY, or ERROR(TIMEOUT) once now >= deadline
 *   REPLY --IPC_FAIL--> ERROR(IPC)
 *   any --RESET--> SLEEP
 *
 * Any other (state, event) pair moves to ERROR with EE_ERR_STATE. Times are the calling
 * core's ticks (ee_port_ticks()); deadlines saturate instead of wrapping.
 */
#ifndef EE_HANDOFF_H
#define EE_HANDOFF_H

#include <stdint.h>

#include "ee_status.h"

typedef enum {
    EE_HS_IDLE = 0,
    EE_HS_LOCAL,  /* running this core's stage */
    EE_HS_NOTIFY, /* feature map published, notifying the next core */
    EE_HS_WAIT,   /* asleep until the answer or the deadline */
    EE_HS_DONE,   /* a result is available */
    EE_HS_ERROR   /* failed; see .error; only RESET leaves */
} ee_hs_state_t;

typedef enum {
    EE_HS_EV_START = 0,
    EE_HS_EV_EXIT,
    EE_HS_EV_PASS,
    EE_HS_EV_FAIL,
    EE_HS_EV_NOTIFIED,
    EE_HS_EV_BUSY,
    EE_HS_EV_IPC_FAIL,
    EE_HS_EV_ANSWER,
    EE_HS_EV_REMOTE_ERROR,
    EE_HS_EV_POLL,
    EE_HS_EV_RESET
} ee_hs_event_t;

typedef struct {
    ee_hs_state_t state;
    ee_status_t error;      /* why ERROR (EE_OK otherwise) */
    uint64_t timeout_ticks; /* handoff budget, from PASS */
    uint64_t deadline;      /* ticks; valid in NOTIFY and WAIT */
    uint32_t transitions;   /* events accepted since init (diagnostics) */
} ee_handoff_t;

void ee_hs_init(ee_handoff_t *h, uint64_t timeout_ticks);

/* Apply one event at time `now`; returns the new state. `remote` is the status the next
 * core answered with (used by REMOTE_ERROR only; EE_ERR_REMOTE-like values pass through). */
ee_hs_state_t ee_hs_event(ee_handoff_t *h, ee_hs_event_t ev, uint64_t now, ee_status_t remote);

typedef enum {
    EE_RS_SLEEP = 0,
    EE_RS_RUN,
    EE_RS_REPLY,
    EE_RS_ERROR
} ee_rs_state_t;

typedef enum {
    EE_RS_EV_REQUEST = 0,
    EE_RS_EV_BAD_REQUEST,
    EE_RS_EV_DONE,
    EE_RS_EV_FAIL,
    EE_RS_EV_SENT,
    EE_RS_EV_BUSY,
    EE_RS_EV_IPC_FAIL,
    EE_RS_EV_RESET
} ee_rs_event_t;

typedef struct {
    ee_rs_state_t state;
    ee_status_t error;  /* why ERROR, or the status being answered in REPLY */
    uint64_t timeout_ticks;
    uint64_t deadline;  /* ticks; valid in REPLY */
    uint32_t transitions;
} ee_responder_t;

void ee_rs_init(ee_responder_t *r, uint64_t timeout_ticks);
ee_rs_state_t ee_rs_event(ee_responder_t *r, ee_rs_event_t ev, uint64_t now);

const char *ee_hs_state_name(ee_hs_state_t s);
const char *ee_rs_state_name(ee_rs_state_t s);

#endif /* EE_HANDOFF_H */
