/* The handoff state machines (transition tables in ee_handoff.h). */
#include "ee_handoff.h"

static uint64_t deadline_from(uint64_t now, uint64_t timeout)
{
    return (now > UINT64_MAX - timeout) ? UINT64_MAX : now + timeout;
}

void ee_hs_init(ee_handoff_t *h, uint64_t timeout_ticks)
{
    h->state = EE_HS_IDLE;
    h->error = EE_OK;
    h->timeout_ticks = timeout_ticks;
    h->deadline = 0;
    h->transitions = 0;
}

static ee_hs_state_t hs_fail(ee_handoff_t *h, ee_status_t why)
{
    h->state = EE_HS_ERROR;
    h->error = why;
    return h->state;
}

ee_hs_state_t ee_hs_event(ee_handoff_t *h, ee_hs_event_t ev, uint64_t now, ee_status_t remote)
{
    if (ev == EE_HS_EV_RESET) {
        h->state = EE_HS_IDLE;
        h->error = EE_OK;
        h->deadline = 0;
        h->transitions++;
        return h->state;
    }
    switch (h->state) {
    case EE_HS_IDLE:
    case EE_HS_DONE:
        if (ev == EE_HS_EV_START) {
            h->state = EE_HS_LOCAL;
            h->transitions++;
            return h->state;
        }
        break;
    case EE_HS_LOCAL:
        if (ev == EE_HS_EV_EXIT) {
            h->state = EE_HS_DONE;
            h->transitions++;
            return h->state;
        }
        if (ev == EE_HS_EV_PASS) {
            h->state = EE_HS_NOTIFY;
            h->deadline = deadline_from(now, h->timeout_ticks);
            h->transitions++;
            return h->state;
        }
        if (ev == EE_HS_EV_FAIL) {
            h->transitions++;
            return hs_fail(h, EE_ERR_STAGE);
        }
        break;
    case EE_HS_NOTIFY:
        if (ev == EE_HS_EV_NOTIFIED) {
            h->state = EE_HS_WAIT;
            h->transitions++;
            return h->state;
        }
        if (ev == EE_HS_EV_BUSY) {
            h->transitions++;
            return now >= h->deadline ? hs_fail(h, EE_ERR_TIMEOUT) : h->state;
        }
        if (ev == EE_HS_EV_IPC_FAIL) {
            h->transitions++;
            return hs_fail(h, EE_ERR_IPC);
        }
        break;
    case EE_HS_WAIT:
        if (ev == EE_HS_EV_ANSWER) {
            h->state = EE_HS_DONE;
            h->transitions++;
            return h->state;
        }
        if (ev == EE_HS_EV_REMOTE_ERROR) {
            h->transitions++;
            return hs_fail(h, remote == EE_OK ? EE_ERR_PROTOCOL : remote);
        }
        if (ev == EE_HS_EV_POLL) {
            h->transitions++;
            return now >= h->deadline ? hs_fail(h, EE_ERR_TIMEOUT) : h->state;
        }
        break;
    case EE_HS_ERROR:
    default:
        break;
    }
    /* not allowed here: remember the first error; an ERROR stays ERROR */
    if (h->state != EE_HS_ERROR) {
        return hs_fail(h, EE_ERR_STATE);
    }
    return h->state;
}

void ee_rs_init(ee_responder_t *r, uint64_t timeout_ticks)
{
    r->state = EE_RS_SLEEP;
    r->error = EE_OK;
    r->timeout_ticks = timeout_ticks;
    r->deadline = 0;
    r->transitions = 0;
}

static ee_rs_state_t rs_reply(ee_responder_t *r, uint64_t now, ee_status_t status)
{
    r->state = EE_RS_REPLY;
    r->error = status;
    r->deadline = deadline_from(now, r->timeout_ticks);
    r->transitions++;
    return r->state;
}

static ee_rs_state_t rs_fail(ee_responder_t *r, ee_status_t why)
{
    r->state = EE_RS_ERROR;
    r->error = why;
    return r->state;
}

ee_rs_state_t ee_rs_event(ee_responder_t *r, ee_rs_event_t ev, uint64_t now)
{
    if (ev == EE_RS_EV_RESET) {
        r->state = EE_RS_SLEEP;
        r->error = EE_OK;
        r->deadline = 0;
        r->transitions++;
        return r->state;
    }
    switch (r->state) {
    case EE_RS_SLEEP:
        if (ev == EE_RS_EV_REQUEST) {
            r->state = EE_RS_RUN;
            r->error = EE_OK;
            r->transitions++;
            return r->state;
        }
        if (ev == EE_RS_EV_BAD_REQUEST) {
            return rs_reply(r, now, EE_ERR_PROTOCOL);
        }
        break;
    case EE_RS_RUN:
        if (ev == EE_RS_EV_DONE) {
            return rs_reply(r, now, EE_OK);
        }
        if (ev == EE_RS_EV_FAIL) {
            return rs_reply(r, now, EE_ERR_STAGE);
        }
        break;
    case EE_RS_REPLY:
        if (ev == EE_RS_EV_SENT) {
            r->state = EE_RS_SLEEP;
            r->transitions++;
            return r->state;
        }
        if (ev == EE_RS_EV_BUSY) {
            r->transitions++;
            return now >= r->deadline ? rs_fail(r, EE_ERR_TIMEOUT) : r->state;
        }
        if (ev == EE_RS_EV_IPC_FAIL) {
            r->transitions++;
            return rs_fail(r, EE_ERR_IPC);
        }
        break;
    case EE_RS_ERROR:
    default:
        break;
    }
    if (r->state != EE_RS_ERROR) {
        return rs_fail(r, EE_ERR_STATE);
    }
    return r->state;
}

const char *ee_hs_state_name(ee_hs_state_t s)
{
    switch (s) {
    case EE_HS_IDLE: return "IDLE";
    case EE_HS_LOCAL: return "LOCAL";
    case EE_HS_NOTIFY: return "NOTIFY";
    case EE_HS_WAIT: return "WAIT";
    case EE_HS_DONE: return "DONE";
    case EE_HS_ERROR: return "ERROR";
    default: return "?";
    }
}

const char *ee_rs_state_name(ee_rs_state_t s)
{
    switch (s) {
    case EE_RS_SLEEP: return "SLEEP";
    case EE_RS_RUN: return "RUN";
    case EE_RS_REPLY: return "REPLY";
    case EE_RS_ERROR: return "ERROR";
    default: return "?";
    }
}
