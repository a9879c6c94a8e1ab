/*
 * Host unit tests of the portable runtime: integer rules, both handoff state machines
 * (every transition, timeouts, the error state) and ee_infer()/ee_serve() through the
 * host port with fake stages. Built (with ASan and UBSan where available) and run by
 * tests/test_firmware_c.py, from the sources under src/ and ports/host/.
 */
#include <stdio.h>
#include <string.h>

#include "ee_crc32.h"
#include "ee_handoff.h"
#include "ee_host.h"
#include "ee_quant.h"
#include "ee_runtime.h"
#include "ee_port.h"

static int g_checks;
static int g_failures;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        g_checks++;                                                                 \
        if (!(cond)) {                                                              \
            g_failures++;                                                           \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                  \
        }                                                                           \
    } while (0)

#define CHECK_EQ(a, b)                                                              \
    do {                                                                            \
        long long va_ = (long long)(a), vb_ = (long long)(b);                       \
        g_checks++;                                                                 \
        if (va_ != vb_) {                                                           \
            g_failures++;                                                           \
            printf("FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, \
                   #b, va_, vb_);                                                   \
        }                                                                           \
    } while (0)

/* ------------------------------------------------------------------ integer rules */

static void test_quant(void)
{
    int8_t s[4] = {5, 9, 9, -3};
    int8_t m[3] = {7, 7, 1};
    int8_t buf[3] = {-128, 0, 127};
    ee_requant_t half = {1, 1073741824, 0, -128, -128}; /* ratio 0.5 */
    ee_requant_t off = {0, 0, 0, 0, 0};

    CHECK_EQ(ee_srdhm(-2147483647 - 1, -2147483647 - 1), 2147483647);
    CHECK_EQ(ee_srdhm(1073741824, 1073741824), 536870912);
    CHECK_EQ(ee_srdhm(-3, 1073741824), -1);     /* -1.5 rounds away from zero */
    CHECK_EQ(ee_rdbpot(5, 1), 3);               /* 2.5 -> 3 */
    CHECK_EQ(ee_rdbpot(-5, 1), -3);             /* -2.5 -> -3 */
    CHECK_EQ(ee_rdbpot(-4, 1), -2);
    CHECK_EQ(ee_rdbpot(7, 0), 7);
    CHECK_EQ(ee_rdbpot(-2147483647 - 1, 31), -1);
    CHECK_EQ(ee_argmax(s, 4), 1);               /* tie: lowest index */
    CHECK_EQ(ee_confidence_q(s, 4, EE_CONF_MAX), 9);
    CHECK_EQ(ee_confidence_q(s, 4, EE_CONF_MARGIN), 0);
    CHECK_EQ(ee_confidence_q(m, 3, EE_CONF_MARGIN), 0);
    CHECK_EQ(ee_confidence_q(m + 1, 2, EE_CONF_MARGIN), 6);
    CHECK(ee_exit_taken(s, 4, 9, EE_CONF_MAX));
    CHECK(!ee_exit_taken(s, 4, 10, EE_CONF_MAX));
    CHECK(ee_exit_taken(s, 4, -128, EE_CONF_MAX));
    CHECK(!ee_exit_taken(s, 4, 128, EE_CONF_MAX));
    ee_requant(buf, buf, 3, &half); /* (q + 128) / 2 - 128, half away from zero */
    CHECK_EQ(buf[0], -128);
    CHECK_EQ(buf[1], -64);
    CHECK_EQ(buf[2], 0);            /* 255 / 2 = 127.5 -> 128 -> 0 */
    ee_requant(buf, buf, 3, &off);
    CHECK_EQ(buf[2], 0);
    CHECK_EQ(ee_crc32_update(0, "123456789", 9), 0xCBF43926u);
    CHECK_EQ(ee_crc32_update(ee_crc32_update(0, "1234", 4), "56789", 5), 0xCBF43926u);
    CHECK_EQ(ee_ticks_to_us(150000000u, 150000000u), 1000000);
    CHECK_EQ(ee_us_to_ticks(1500000u, 100000000u), 150000000);
    CHECK_EQ(ee_ticks_to_us(UINT64_MAX, 1000000u), UINT64_MAX);
}

/* ------------------------------------------------------------------ requester machine */

static ee_hs_state_t hs_from(ee_hs_state_t start, ee_hs_event_t ev, uint64_t now)
{
    ee_handoff_t h;
    ee_hs_init(&h, 100);
    /* drive to `start` through allowed transitions */
    switch (start) {
    case EE_HS_IDLE:
        break;
    case EE_HS_LOCAL:
        ee_hs_event(&h, EE_HS_EV_START, 0, EE_OK);
        break;
    case EE_HS_NOTIFY:
        ee_hs_event(&h, EE_HS_EV_START, 0, EE_OK);
        ee_hs_event(&h, EE_HS_EV_PASS, 0, EE_OK);
        break;
    case EE_HS_WAIT:
        ee_hs_event(&h, EE_HS_EV_START, 0, EE_OK);
        ee_hs_event(&h, EE_HS_EV_PASS, 0, EE_OK);
        ee_hs_event(&h, EE_HS_EV_NOTIFIED, 0, EE_OK);
        break;
    case EE_HS_DONE:
        ee_hs_event(&h, EE_HS_EV_START, 0, EE_OK);
        ee_hs_event(&h, EE_HS_EV_EXIT, 0, EE_OK);
        break;
    case EE_HS_ERROR:
        ee_hs_event(&h, EE_HS_EV_START, 0, EE_OK);
        ee_hs_event(&h, EE_HS_EV_FAIL, 0, EE_OK);
        break;
    }
    if (h.state != start) {
        return (ee_hs_state_t)99;
    }
    return ee_hs_event(&h, ev, now, EE_ERR_STAGE);
}

static void test_requester_table(void)
{
    /* expected[state][event] at now = 0 (before the deadline of 100 ticks) */
    static const ee_hs_state_t E = EE_HS_ERROR;
    static const ee_hs_state_t expected[6][11] = {
        /*            START        EXIT         PASS           FAIL NOTIFIED     BUSY           IPC_FAIL ANSWER       REMOTE POLL         RESET */
        /* IDLE   */ {EE_HS_LOCAL, E,           E,             E,   E,           E,             E,       E,           E,     E,           EE_HS_IDLE},
        /* LOCAL  */ {E,           EE_HS_DONE,  EE_HS_NOTIFY,  E,   E,           E,             E,       E,           E,     E,           EE_HS_IDLE},
        /* NOTIFY */ {E,           E,           E,             E,   EE_HS_WAIT,  EE_HS_NOTIFY,  E,       E,           E,     E,           EE_HS_IDLE},
        /* WAIT   */ {E,           E,           E,             E,   E,           E,             E,       EE_HS_DONE,  E,     EE_HS_WAIT,  EE_HS_IDLE},
        /* DONE   */ {EE_HS_LOCAL, E,           E,             E,   E,           E,             E,       E,           E,     E,           EE_HS_IDLE},
        /* ERROR  */ {E,           E,           E,             E,   E,           E,             E,       E,           E,     E,           EE_HS_IDLE},
    };
    int s;
    int e;
    for (s = 0; s < 6; ++s) {
        for (e = 0; e < 11; ++e) {
            ee_hs_state_t got = hs_from((ee_hs_state_t)s, (ee_hs_event_t)e, 0);
            if (got != expected[s][e]) {
                printf("  requester %s + event %d -> %s, expected %s\n", ee_hs_state_name((ee_hs_state_t)s), e,
                       ee_hs_state_name(got), ee_hs_state_name(expected[s][e]));
            }
            CHECK_EQ(got, expected[s][e]);
        }
    }
}

static void test_requester_errors_and_timeouts(void)
{
    ee_handoff_t h;
    ee_hs_init(&h, 100);
    /* an event out of place is a state error and sticks until RESET */
    CHECK_EQ(ee_hs_event(&h, EE_HS_EV_ANSWER, 0, EE_OK), EE_HS_ERROR);
    CHECK_EQ(h.error, EE_ERR_STATE);
    CHECK_EQ(ee_hs_event(&h, EE_HS_EV_START, 0, EE_OK), EE_HS_ERROR);
    CHECK_EQ(h.error, EE_ERR_STATE);
    CHECK_EQ(ee_hs_event(&h, EE_HS_EV_RESET, 0, EE_OK), EE_HS_IDLE);
    CHECK_EQ(h.error, EE_OK);

    /* stage failure */
    ee_hs_event(&h, EE_HS_EV_START, 0, EE_OK);
    CHECK_EQ(ee_hs_event(&h, EE_HS_EV_FAIL, 5, EE_OK), EE_HS_ERROR);
    CHECK_EQ(h.error, EE_ERR_STAGE);
    ee_hs_event(&h, EE_HS_EV_RESET, 0, EE_OK);

    /* the deadline counts from PASS: BUSY retries until it, then TIMEOUT */
    ee_hs_event(&h, EE_HS_EV_START, 1000, EE_OK);
    ee_hs_event(&h, EE_HS_EV_PASS, 1000, EE_OK);
    CHECK_EQ(h.deadline, 1100);
    CHECK_EQ(ee_hs_event(&h, EE_HS_EV_BUSY, 1099, EE_OK), EE_HS_NOTIFY);
    CHECK_EQ(ee_hs_event(&h, EE_HS_EV_BUSY, 1100, EE_OK), EE_HS_ERROR);
    CHECK_EQ(h.error, EE_ERR_TIMEOUT);
    ee_hs_event(&h, EE_HS_EV_RESET, 0, EE_OK);

    /* core 1 never answers: POLL times out at the deadline */
    ee_hs_event(&h, EE_HS_EV_START, 0, EE_OK);
    ee_hs_event(&h, EE_HS_EV_PASS, 10, EE_OK);
    ee_hs_event(&h, EE_HS_EV_NOTIFIED, 20, EE_OK);
    CHECK_EQ(ee_hs_event(&h, EE_HS_EV_POLL, 109, EE_OK), EE_HS_WAIT);
    CHECK_EQ(ee_hs_event(&h, EE_HS_EV_POLL, 110, EE_OK), EE_HS_ERROR);
    CHECK_EQ(h.error, EE_ERR_TIMEOUT);
    /* a late answer does not revive it */
    CHECK_EQ(ee_hs_event(&h, EE_HS_EV_ANSWER, 111, EE_OK), EE_HS_ERROR);
    CHECK_EQ(h.error, EE_ERR_TIMEOUT);
    ee_hs_event(&h, EE_HS_EV_RESET, 0, EE_OK);

    /* remote error carries the remote status; IPC failure */
    ee_hs_event(&h, EE_HS_EV_START, 0, EE_OK);
    ee_hs_event(&h, EE_HS_EV_PASS, 0, EE_OK);
    ee_hs_event(&h, EE_HS_EV_NOTIFIED, 0, EE_OK);
    CHECK_EQ(ee_hs_event(&h, EE_HS_EV_REMOTE_ERROR, 0, EE_ERR_STAGE), EE_HS_ERROR);
    CHECK_EQ(h.error, EE_ERR_STAGE);
    ee_hs_event(&h, EE_HS_EV_RESET, 0, EE_OK);
    ee_hs_event(&h, EE_HS_EV_START, 0, EE_OK);
    ee_hs_event(&h, EE_HS_EV_PASS, 0, EE_OK);
    CHECK_EQ(ee_hs_event(&h, EE_HS_EV_IPC_FAIL, 0, EE_OK), EE_HS_ERROR);
    CHECK_EQ(h.error, EE_ERR_IPC);

    /* the deadline saturates instead of wrapping */
    ee_hs_init(&h, UINT64_MAX);
    ee_hs_event(&h, EE_HS_EV_START, 5, EE_OK);
    ee_hs_event(&h, EE_HS_EV_PASS, 5, EE_OK);
    CHECK(h.deadline == UINT64_MAX);
    CHECK_EQ(ee_hs_event(&h, EE_HS_EV_BUSY, UINT64_MAX - 1u, EE_OK), EE_HS_NOTIFY);
}

static void test_responder(void)
{
    ee_responder_t r;
    ee_rs_init(&r, 50);
    CHECK_EQ(ee_rs_event(&r, EE_RS_EV_REQUEST, 0), EE_RS_RUN);
    CHECK_EQ(ee_rs_event(&r, EE_RS_EV_DONE, 10), EE_RS_REPLY);
    CHECK_EQ(r.error, EE_OK);
    CHECK_EQ(r.deadline, 60);
    CHECK_EQ(ee_rs_event(&r, EE_RS_EV_BUSY, 59), EE_RS_REPLY);
    CHECK_EQ(ee_rs_event(&r, EE_RS_EV_SENT, 59), EE_RS_SLEEP);
    CHECK_EQ(ee_rs_event(&r, EE_RS_EV_BAD_REQUEST, 0), EE_RS_REPLY);
    CHECK_EQ(r.error, EE_ERR_PROTOCOL);
    CHECK_EQ(ee_rs_event(&r, EE_RS_EV_BUSY, 50), EE_RS_ERROR);
    CHECK_EQ(r.error, EE_ERR_TIMEOUT);
    CHECK_EQ(ee_rs_event(&r, EE_RS_EV_SENT, 51), EE_RS_ERROR); /* sticks */
    CHECK_EQ(ee_rs_event(&r, EE_RS_EV_RESET, 0), EE_RS_SLEEP);
    CHECK_EQ(ee_rs_event(&r, EE_RS_EV_REQUEST, 0), EE_RS_RUN);
    CHECK_EQ(ee_rs_event(&r, EE_RS_EV_FAIL, 0), EE_RS_REPLY);
    CHECK_EQ(r.error, EE_ERR_STAGE);
    CHECK_EQ(ee_rs_event(&r, EE_RS_EV_IPC_FAIL, 0), EE_RS_ERROR);
    CHECK_EQ(r.error, EE_ERR_IPC);
    ee_rs_event(&r, EE_RS_EV_RESET, 0);
    CHECK_EQ(ee_rs_event(&r, EE_RS_EV_DONE, 0), EE_RS_ERROR); /* not running */
    CHECK_EQ(r.error, EE_ERR_STATE);
    ee_rs_event(&r, EE_RS_EV_RESET, 0);
    CHECK_EQ(ee_rs_event(&r, EE_RS_EV_SENT, 0), EE_RS_ERROR);
}

/* ------------------------------------------------------------------ runtime on the host port */

/* Fake stages: stage k writes scores[c] = in[c] (so the input picks class and confidence),
 * its feature map = in[i] + 1, and records what it was given. */
static int g_fail_stage = -1;
static int8_t g_seen[EE_MAX_STAGES][8];
static int g_calls[EE_MAX_STAGES];
static char g_out[8192];
static size_t g_out_len;

static int fake_stage(uint32_t stage, const int8_t *in, size_t in_len, int8_t *fm, size_t fm_len, int8_t *scores,
                      size_t n_scores, void *user)
{
    size_t i;
    (void)user;
    g_calls[stage]++;
    for (i = 0; i < in_len && i < 8; ++i) {
        g_seen[stage][i] = in[i];
    }
    if ((int)stage == g_fail_stage) {
        return 7;
    }
    for (i = 0; i < n_scores; ++i) {
        scores[i] = in[i % in_len];
    }
    for (i = 0; i < fm_len; ++i) {
        fm[i] = (int8_t)(in[i % in_len] < 127 ? in[i % in_len] + 1 : 127);
    }
    return 0;
}

static void capture(const char *data, size_t len, void *user)
{
    (void)user;
    if (g_out_len + len < sizeof(g_out)) {
        memcpy(g_out + g_out_len, data, len);
        g_out_len += len;
        g_out[g_out_len] = '\0';
    }
}

/* 100 MHz / 150 MHz; stage 0 runs 10 ms, the handoff 2 ms, stage 1 20 ms, stage 2 30 ms */
static const char *setup(uint32_t n_stages, int requant)
{
    uint32_t k;
    ee_host_reset();
    ee_host_set_callbacks(capture, fake_stage, 0, 0);
    g_fail_stage = -1;
    memset(g_calls, 0, sizeof(g_calls));
    memset(g_seen, 0, sizeof(g_seen));
    g_out_len = 0;
    g_out[0] = '\0';
    ee_host_set_model(n_stages, EE_CONF_MAX, 500000u, "abc123", "test01", "virtual: test");
    for (k = 0; k < n_stages; ++k) {
        int last = (k + 1u == n_stages);
        ee_host_set_stage(k, 4, last ? 0u : 4u, 4, 100, 1.0f / 256.0f, -128,
                          (requant && k > 0u) ? 1 : 0, 1073741824, 0, -128, -128, k == 0u ? 100000000u : 150000000u,
                          (uint64_t)(k + 1u) * 10000000u, k == 0u ? 0u : 2000000u);
    }
    return ee_host_start(0, 0);
}

static void test_infer_exit_and_pass(void)
{
    ee_result_t r;
    int8_t confident[4] = {1, 120, 3, 4};
    int8_t unsure[4] = {1, 50, 98, 4}; /* stage 1 sees +1: 99 < 100 */
    int8_t unsure1[4] = {1, 99, 3, 4}; /* stage 1 sees 100 at index 1: answers there */
    ee_runtime_t *rt;

    CHECK(setup(2, 0) == 0);
    rt = ee_host_runtime();
    CHECK_EQ(ee_infer(rt, confident, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 0);
    CHECK_EQ(r.cls, 1);
    CHECK_EQ(r.confidence, 120);
    CHECK_EQ(r.ticks[0], 1000000);    /* 10 ms at 100 MHz */
    CHECK_EQ(r.ticks[1], 0);
    CHECK_EQ(r.elapsed_ticks, 1000000);
    CHECK_EQ(g_calls[1], 0);
    CHECK_EQ(rt->hs.state, EE_HS_DONE);

    CHECK_EQ(ee_infer(rt, unsure1, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 1);
    CHECK_EQ(r.cls, 1);
    CHECK_EQ(r.confidence, 100);
    CHECK_EQ(g_seen[1][1], 100);
    CHECK_EQ(r.ticks[0], 1000000);
    CHECK_EQ(r.ticks[1], 3000000);    /* 20 ms at 150 MHz */
    CHECK_EQ(r.elapsed_ticks, 3200000); /* 10 + 2 + 20 ms at 100 MHz */
    CHECK_EQ(r.n_scores, 4);

    /* the last stage always answers, even unsure */
    CHECK_EQ(ee_infer(rt, unsure, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 1);
    CHECK_EQ(r.cls, 2);
    CHECK_EQ(r.confidence, 99);

    /* wrong input length */
    CHECK_EQ(ee_infer(rt, unsure, 3, &r), EE_ERR_SIZE);
}

static void test_infer_requant(void)
{
    ee_result_t r;
    int8_t x[4] = {-128, 0, 90, 98}; /* not confident; stage 1 gets fm = x+1 requantized by 0.5 */
    CHECK(setup(2, 1) == 0);
    CHECK_EQ(ee_infer(ee_host_runtime(), x, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 1);
    /* (q + 128) / 2 - 128, halves away from zero: -127 -> 0.5 -> 1; 1 -> 64.5 -> 65; ... */
    CHECK_EQ(g_seen[1][0], -127);
    CHECK_EQ(g_seen[1][1], -63);
    CHECK_EQ(g_seen[1][2], -18);
    CHECK_EQ(g_seen[1][3], -14);
    CHECK_EQ(r.cls, 3);
}

static void test_infer_timeout_and_recovery(void)
{
    ee_result_t r;
    int8_t unsure[4] = {1, 50, 60, 4};
    ee_runtime_t *rt;
    uint32_t old_seq;
    CHECK(setup(2, 0) == 0);
    rt = ee_host_runtime();
    ee_host_set_core_alive(1, 0);
    CHECK_EQ(ee_infer(rt, unsure, 4, &r), EE_ERR_TIMEOUT);
    CHECK_EQ(rt->hs.state, EE_HS_ERROR);
    CHECK_EQ(rt->hs.error, EE_ERR_TIMEOUT);
    CHECK_EQ(g_calls[1], 0);
    /* waited 500 ms (the timeout) after the pass at 10 ms, in 1 ms steps */
    CHECK(r.elapsed_ticks >= 51000000u && r.elapsed_ticks <= 51300000u);
    old_seq = rt->seq;

    /* a stale answer (old sequence number) is not taken for the next request */
    ee_host_runtime()->buf->mailbox->resp_seq = old_seq;
    ee_host_runtime()->buf->mailbox->status = EE_OK;
    CHECK_EQ(ee_infer(rt, unsure, 4, &r), EE_ERR_TIMEOUT);

    /* the core comes back: the runtime leaves ERROR by itself */
    ee_host_set_core_alive(1, 1);
    CHECK_EQ(ee_infer(rt, unsure, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 1);
    CHECK_EQ(rt->hs.state, EE_HS_DONE);
}

static void test_infer_busy_and_failures(void)
{
    ee_result_t r;
    int8_t unsure[4] = {1, 50, 60, 4};
    ee_runtime_t *rt;
    CHECK(setup(2, 0) == 0);
    rt = ee_host_runtime();
    ee_host_set_notify_busy(3); /* the channel frees up after three tries */
    CHECK_EQ(ee_infer(rt, unsure, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 1);
    CHECK_EQ(r.elapsed_ticks, 3500000); /* + three 1 ms waits */
    ee_host_set_notify_busy(1000000u);  /* never frees: timeout */
    CHECK_EQ(ee_infer(rt, unsure, 4, &r), EE_ERR_TIMEOUT);
    ee_host_set_notify_busy(0);

    g_fail_stage = 1;
    CHECK_EQ(ee_infer(rt, unsure, 4, &r), EE_ERR_STAGE);
    CHECK_EQ(rt->hs.error, EE_ERR_STAGE);
    g_fail_stage = 0;
    CHECK_EQ(ee_infer(rt, unsure, 4, &r), EE_ERR_STAGE);
    g_fail_stage = -1;
    CHECK_EQ(ee_infer(rt, unsure, 4, &r), EE_OK);
}

static void test_serve_rejects_bad_requests(void)
{
    ee_mailbox_t *mb;
    ee_result_t r;
    int8_t unsure[4] = {1, 50, 60, 4};
    CHECK(setup(2, 0) == 0);
    CHECK_EQ(ee_infer(ee_host_runtime(), unsure, 4, &r), EE_OK);
    mb = ee_host_runtime()->buf->mailbox;
    /* called from the test (core 0's context), so the answer's notification back to
     * "itself" fails (EE_ERR_IPC); what matters is the answer written to the mailbox */
    mb->stage = 0; /* not core 1's */
    mb->req_seq = 77;
    CHECK(ee_serve(ee_host_config(), 1, mb) != EE_OK);
    CHECK_EQ(mb->status, EE_ERR_PROTOCOL);
    CHECK_EQ(mb->resp_seq, 77);
    CHECK_EQ(g_calls[1], 1);  /* the stage did not run again */
    mb->stage = 1;
    mb->fm_len = 3; /* does not match stage 1's input */
    mb->req_seq = 78;
    CHECK(ee_serve(ee_host_config(), 1, mb) != EE_OK);
    CHECK_EQ(mb->status, EE_ERR_PROTOCOL);
    CHECK_EQ(mb->resp_seq, 78);
    CHECK_EQ(g_calls[1], 1);
    mb->magic = 0;
    CHECK_EQ(ee_serve(ee_host_config(), 1, mb), EE_ERR_PROTOCOL);
    CHECK_EQ(ee_serve(ee_host_config(), 0, mb), EE_ERR_PROTOCOL);
    CHECK_EQ(ee_serve(0, 1, mb), EE_ERR_PROTOCOL);
}

static void test_three_stage_chain(void)
{
    ee_result_t r;
    int8_t at2[4] = {1, 50, 97, 4}; /* stage 1 sees 98, stage 2 sees 99 */
    int8_t at1[4] = {1, 50, 98, 4}; /* stage 1 sees 99... no: 99 < 100 -> stage 2 sees 100 */
    int8_t ex1[4] = {1, 50, 99, 4}; /* stage 1 sees 100: answers */
    CHECK(setup(3, 0) == 0);
    CHECK_EQ(ee_infer(ee_host_runtime(), at2, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 2);
    CHECK_EQ(g_seen[2][2], 99);
    CHECK_EQ(r.ticks[2], ee_host_ns_to_ticks(30000000u, 150000000u));
    CHECK_EQ(r.elapsed_ticks, 6400000); /* 10 + 2 + 20 + 2 + 30 ms */
    CHECK_EQ(ee_infer(ee_host_runtime(), at1, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 2);
    CHECK_EQ(ee_infer(ee_host_runtime(), ex1, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 1);
    CHECK_EQ(r.ticks[2], 0);
}

static void test_config_check(void)
{
    ee_config_t c;
    memset(&c, 0, sizeof(c));
    CHECK(ee_config_check(0, 0) != 0);
    CHECK(ee_config_check(&c, 0) != 0); /* n_stages 0 */
    CHECK(setup(2, 1) == 0);
    c = *ee_host_config();
    CHECK(ee_config_check(&c, 0) == 0);
    c.stages[1].input_len = 5;
    CHECK(ee_config_check(&c, 0) != 0);
    c = *ee_host_config();
    c.stages[0].requant.enabled = 1;
    CHECK(ee_config_check(&c, 0) != 0);
    c = *ee_host_config();
    c.stages[1].fm_len = 2;
    CHECK(ee_config_check(&c, 0) != 0);
    c = *ee_host_config();
    c.confidence = EE_CONF_MARGIN;
    c.stages[1].n_scores = 1;
    CHECK(ee_config_check(&c, 0) != 0);
    c = *ee_host_config();
    c.stages[1].requant.shift = 31;
    CHECK(ee_config_check(&c, 0) != 0);
    c = *ee_host_config();
    c.handoff_timeout_us = 0;
    CHECK(ee_config_check(&c, 0) != 0);
    c = *ee_host_config();
    c.input_type = 3u;
    CHECK(ee_config_check(&c, 0) != 0);
    c = *ee_host_config();
    c.input_type = EE_INPUT_FLOAT32; /* no input_scale */
    CHECK(ee_config_check(&c, 0) != 0);
    c.input_scale = 0.25f;
    CHECK(ee_config_check(&c, 0) == 0);
    c.input_scale = -0.25f;
    CHECK(ee_config_check(&c, 0) != 0);
    c.input_scale = 0.25f;
    c.input_zero_point = 128;
    CHECK(ee_config_check(&c, 0) != 0);
}

static void test_port_init(void)
{
    ee_config_t c;
    CHECK(ee_port_init(0) == EE_ERR_ARG);
    CHECK(setup(2, 0) == 0);
    c = *ee_host_config();
    CHECK(ee_port_init(&c) == EE_OK);
    c.handoff_timeout_us = 0; /* a configuration ee_config_check rejects */
    CHECK(ee_port_init(&c) == EE_ERR_ARG);
}

static void test_protocol_smoke(void)
{
    static const char cmd[] = "name%db load 4%db 0178%db 0204%db crc f641270a%infer 1 0%bogus%";
    CHECK(setup(2, 0) == 0);
    ee_host_feed((const uint8_t *)cmd, sizeof(cmd) - 1u);
    CHECK(strstr(g_out, "m-name-dut-[eenn]\r\nm-ready\r\n") == g_out);
    CHECK(strstr(g_out, "m-[Expecting 4 bytes]\r\nm-ready\r\n") != 0);
    CHECK(strstr(g_out, "m-load-done\r\n") != 0);
    CHECK(strstr(g_out, "m-eenn-exit-[0]\r\n") != 0); /* 0x78 = 120 >= 100 */
    CHECK(strstr(g_out, "m-eenn-class-[1]\r\n") != 0);
    CHECK(strstr(g_out, "m-eenn-ticks-[1000000,0]\r\n") != 0);
    CHECK(strstr(g_out, "m-eenn-handoffs-[0]\r\n") != 0);
    CHECK(strstr(g_out, "e-[Unknown command: bogus]\r\nm-ready\r\n") != 0);
    if (g_failures != 0) {
        printf("output:\n%s\n", g_out);
    }
}

/* Feed one or more commands with a fresh output buffer. */
static void send(const char *cmds)
{
    g_out_len = 0;
    g_out[0] = '\0';
    ee_host_feed((const uint8_t *)cmds, strlen(cmds));
}

#define CHECK_OUT(want)                                                             \
    do {                                                                            \
        g_checks++;                                                                 \
        if (strcmp(g_out, (want)) != 0) {                                           \
            g_failures++;                                                           \
            printf("FAIL %s:%d: got\n%s\nwant\n%s\n", __FILE__, __LINE__, g_out, (want)); \
        }                                                                           \
    } while (0)

static void test_protocol_no_stale_input_or_result(void)
{
    CHECK(setup(2, 0) == 0);
    send("db load 4%db 0178%db 0204%");
    CHECK(strstr(g_out, "m-load-done\r\n") != 0);
    /* a refused `db load` discards the loaded input: infer is an error, never the old sample */
    send("db load 5%");
    CHECK_OUT("e-[db load: 5 bytes, the model input is 4 bytes (4 int8 values); input discarded]\r\nm-ready\r\n");
    send("infer 1 0%");
    CHECK_OUT("e-[infer: no input loaded]\r\nm-ready\r\n");
    send("db print%");
    CHECK_OUT("m-ready\r\n");
    send("db 00%");
    CHECK_OUT("e-[db: no load in progress; send 'db load N' first]\r\nm-ready\r\n");
    /* so does every other refused form */
    send("db load 4%db 0178%db 0204%db load x%infer 1 0%");
    CHECK(strstr(g_out, "e-[db load: 'x' is not a byte count]\r\nm-ready\r\ne-[infer: no input loaded]\r\n") != 0);
    send("db load 4%db 0178%db 0204%db load%infer 1 0%");
    CHECK(strstr(g_out, "requires the # of bytes]\r\nm-ready\r\ne-[infer: no input loaded]\r\n") != 0);
    send("db load 4%db 0178%db 0204%db load 4 4%infer 1 0%");
    CHECK(strstr(g_out, "e-[Too many arguments for 'db load']\r\nm-ready\r\ne-[infer: no input loaded]\r\n") != 0);
    /* fewer bytes than announced */
    send("db load 4%db 0178%infer 1 0%");
    CHECK(strstr(g_out, "e-[infer: input incomplete (2 of 4 bytes loaded)]\r\nm-ready\r\n") != 0);
    /* a result exists only after a successful infer on the input now loaded */
    send("db 0204%infer 1 0%results%");
    CHECK(strstr(g_out, "m-eenn-class-[1]\r\n") != 0 && strstr(g_out, "e-[") == 0);
    send("infer 0 0%");
    CHECK_OUT("e-[infer: '0' is not an iteration count (1..1000000)]\r\nm-ready\r\n");
    send("results%");
    CHECK_OUT("e-[results: no result for the loaded input (no successful 'infer' since it was loaded)]\r\nm-ready\r\n");
    send("infer 1 0%infer 1 x%results%");
    CHECK(strstr(g_out, "e-[infer: 'x' is not a warmup count (0..1000000)]\r\nm-ready\r\ne-[results: no result") != 0);
    send("infer 1 0%db load 4%results%");
    CHECK(strstr(g_out, "m-[Expecting 4 bytes]\r\nm-ready\r\ne-[results: no result") != 0);
    send("db 0178%db 0204%infer 1 0%db load 9%results%");
    CHECK(strstr(g_out, "input discarded]\r\nm-ready\r\ne-[results: no result") != 0);
    send("db load 4%db 0178%db 0204%infer 1 0%db crc 00000000%results%");
    CHECK(strstr(g_out, "input discarded]\r\nm-ready\r\ne-[results: no result") != 0);
}

static void test_protocol_input_types(void)
{
    /* float32 values, little-endian: 0.25 (0.25 / 0.5 = 0.5 -> 1, halves away from zero), -0.25,
     * 1e30 (saturates), NaN (the zero point): 0000803e 000080be caf24971 0000c07f */
    const int8_t *buf;
    CHECK(setup(2, 0) == 0);
    /* no input scale in this configuration: float32 is refused, the type stays */
    send("eenn-input float32%");
    CHECK_OUT("e-[eenn-input: float32 needs the model input's scale; this firmware's configuration has none]\r\n"
              "m-ready\r\n");
    send("eenn-input%");
    CHECK_OUT("m-eenn-input-[int8]\r\nm-eenn-input-bytes-[4]\r\nm-ready\r\n");
    send("eenn-input int16%");
    CHECK_OUT("e-[eenn-input: expected 'int8', 'uint8' or 'float32']\r\nm-ready\r\n");
    send("eenn-input int8 uint8%");
    CHECK_OUT("e-[Too many arguments for 'eenn-input']\r\nm-ready\r\n");

    /* uint8: q = b - 128; the same answer as the int8 load of the converted bytes */
    send("db load 4%db 81f8%");
    send("eenn-input uint8%");
    CHECK_OUT("m-eenn-input-[uint8 -128]\r\nm-eenn-input-bytes-[4]\r\nm-ready\r\n");
    send("infer 1 0%");
    CHECK_OUT("e-[infer: no input loaded]\r\nm-ready\r\n"); /* switching the type discarded the partial load */
    send("db load 4%db 81f88284%db print%infer 1 0%");
    CHECK(strstr(g_out, "m-buffer-01-78-02-04\r\n") != 0);
    CHECK(strstr(g_out, "m-eenn-class-[1]\r\nm-eenn-exit-[0]\r\nm-eenn-confidence-q-[120]\r\n") != 0);
    CHECK(strstr(g_out, "m-eenn-crc32-[2c1691da]\r\n") != 0); /* zlib.crc32(bytes.fromhex('81f88284')): as sent */
    buf = ee_host_runtime()->buf->input;
    CHECK_EQ(buf[0], 1);
    CHECK_EQ(buf[1], 120);
    send("db load 4%db 007f80ff%db print%");
    CHECK(strstr(g_out, "m-buffer-80-ff-00-7f\r\n") != 0);
    send("profile%");
    CHECK(strstr(g_out, "m-eenn-input-[uint8 -128]\r\nm-eenn-input-bytes-[4]\r\n") != 0);

    /* float32: 4 bytes a value, little-endian, round(x / scale) + zero point, saturated */
    ee_host_reset();
    CHECK(setup(2, 0) == 0);
    ee_host_set_input(0.5f, -3, EE_INPUT_INT8);
    CHECK(ee_host_start(0, 0) == 0);
    send("eenn-input float32%");
    CHECK_OUT("m-eenn-input-[float32 scale 0x1.000000p-1 zero-point -3]\r\nm-eenn-input-bytes-[16]\r\nm-ready\r\n");
    send("db load 4%");
    CHECK_OUT("e-[db load: 4 bytes, the model input is 16 bytes (4 float32 values); input discarded]\r\nm-ready\r\n");
    send("db load 16%");
    /* chunks that split values: 3 + 6 + 7 bytes */
    send("db 000080%db print%");
    CHECK_OUT("m-ready\r\nm-ready\r\n"); /* no complete value yet */
    send("db 3e000080beca%db print%");
    CHECK_OUT("m-ready\r\nm-buffer-fe-fc\r\nm-ready\r\n"); /* 1 - 3 = -2, -1 - 3 = -4; 0xca waits */
    send("infer 1 0%");
    CHECK_OUT("e-[infer: input incomplete (9 of 16 bytes loaded)]\r\nm-ready\r\n");
    send("db f249710000c07f%");
    CHECK_OUT("m-load-done\r\nm-eenn-crc32-[0bd60e11]\r\nm-ready\r\n"); /* the CRC of the bytes as sent */
    send("db print%");
    CHECK_OUT("m-buffer-fe-fc-7f-fd\r\nm-ready\r\n");
    buf = ee_host_runtime()->buf->input;
    CHECK_EQ(buf[0], -2);
    CHECK_EQ(buf[1], -4);
    CHECK_EQ(buf[2], 127);
    CHECK_EQ(buf[3], -3);
    send("infer 1 0%");
    CHECK(strstr(g_out, "m-infer-done\r\n") != 0 && strstr(g_out, "e-[") == 0);
    send("profile%");
    CHECK(strstr(g_out, "m-eenn-input-[float32 scale 0x1.000000p-1 zero-point -3]\r\nm-eenn-input-bytes-[16]\r\n") != 0);
    /* the configuration's input_type is the start value */
    ee_host_reset();
    CHECK(setup(2, 0) == 0);
    ee_host_set_input(0.5f, -3, EE_INPUT_FLOAT32);
    CHECK(ee_host_start(0, 0) == 0);
    send("eenn-input%");
    CHECK_OUT("m-eenn-input-[float32 scale 0x1.000000p-1 zero-point -3]\r\nm-eenn-input-bytes-[16]\r\nm-ready\r\n");
    ee_host_set_input(0.0f, 0, EE_INPUT_FLOAT32); /* float32 without a scale: refused at start */
    CHECK(ee_host_start(0, 0) != 0);
    ee_host_set_input(0.0f, 0, EE_INPUT_UINT8);
    CHECK(ee_host_start(0, 0) == 0);
    send("db load 4%db 817eb300%db print%");
    CHECK(strstr(g_out, "m-buffer-01-fe-33-80\r\n") != 0);
    /* back to int8: the input is gone, N is the element count again */
    send("eenn-input int8%infer 1 0%");
    CHECK_OUT("m-eenn-input-[int8]\r\nm-eenn-input-bytes-[4]\r\nm-ready\r\ne-[infer: no input loaded]\r\nm-ready\r\n");
}

static void test_quantize_f32(void)
{
    CHECK_EQ(ee_quantize_f32(0.25f, 0.5f, 0), 1);     /* 0.5: away from zero */
    CHECK_EQ(ee_quantize_f32(-0.25f, 0.5f, 0), -1);
    CHECK_EQ(ee_quantize_f32(0.7499999f, 0.5f, 0), 1); /* 1.4999998 */
    CHECK_EQ(ee_quantize_f32(0.75f, 0.5f, 0), 2);      /* 1.5 */
    CHECK_EQ(ee_quantize_f32(0.2499999f, 0.5f, 0), 0); /* 0.4999998: no +0.5 rounding error */
    CHECK_EQ(ee_quantize_f32(63.5f, 0.5f, 0), 127);
    CHECK_EQ(ee_quantize_f32(63.75f, 0.5f, 0), 127);   /* 127.5 -> 128 saturates */
    CHECK_EQ(ee_quantize_f32(-64.0f, 0.5f, 0), -128);
    CHECK_EQ(ee_quantize_f32(-1.0f, 1.0f, -128), -128);
    CHECK_EQ(ee_quantize_f32(3.0e38f, 1.0e-3f, 0), 127); /* the quotient overflows to inf */
    CHECK_EQ(ee_quantize_f32(-3.0e38f, 1.0e-3f, 5), -128);
    CHECK_EQ(ee_quantize_f32(10.0f, 1.0f, 127), 127);
    CHECK_EQ(ee_quantize_f32(0.0f, 0.0f, 7), 7);          /* no scale: the zero point */
    CHECK_EQ(ee_quantize_f32(1.0f, 1.0f, 300), 127);      /* zero point out of range: saturated */
}

/* ------------------------------------------------------------------ placement: stages on any core */

static const uint32_t k_core_hz[EE_MAX_CORES] = {100000000u, 150000000u, 200000000u, 50000000u};

/* n_stages stages on cores[k] of n_cores; stage k runs (k + 1) * 10 ms; every stage's handoff
 * is 2 ms (the host port charges it only when a request carries that stage to another core). */
static const char *setup_placed(uint32_t n_stages, uint32_t n_cores, const uint32_t *cores)
{
    uint32_t k;
    ee_host_reset();
    ee_host_set_callbacks(capture, fake_stage, 0, 0);
    g_fail_stage = -1;
    memset(g_calls, 0, sizeof(g_calls));
    memset(g_seen, 0, sizeof(g_seen));
    g_out_len = 0;
    g_out[0] = '\0';
    ee_host_set_model(n_stages, EE_CONF_MAX, 500000u, "abc123", "test01", "virtual: test");
    for (k = 0; k < n_stages; ++k) {
        int last = (k + 1u == n_stages);
        ee_host_set_stage(k, 4, last ? 0u : 4u, 4, 100, 1.0f / 256.0f, -128, 0, 0, 0, 0, 0, k_core_hz[cores[k]],
                          (uint64_t)(k + 1u) * 10000000u, 2000000u);
    }
    if (ee_host_set_placement(n_cores, cores, k_core_hz) != 0) {
        return "set_placement refused";
    }
    return ee_host_start(0, 0);
}

static void test_placed_several_stages_on_core0(void)
{
    static const uint32_t cores[3] = {0u, 0u, 1u};
    ee_result_t r;
    int8_t to_final[4] = {1, 50, 97, 4}; /* stages see 97, 98, 99: the final classifier answers */
    int8_t at1[4] = {1, 50, 99, 4};      /* stage 1 sees 100: answers on core 0 */
    int8_t at0[4] = {1, 120, 3, 4};
    ee_runtime_t *rt;
    CHECK(setup_placed(3, 2, cores) == 0);
    rt = ee_host_runtime();
    CHECK_EQ(ee_infer(rt, to_final, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 2);
    CHECK_EQ(r.cls, 2);
    CHECK_EQ(r.handoffs, 1);
    CHECK_EQ(g_seen[1][2], 98);                      /* stage 1 ran on core 0 on stage 0's feature map */
    CHECK_EQ(g_seen[2][2], 99);
    CHECK_EQ(r.ticks[0], 3000000);                   /* stages 0 and 1: 30 ms at 100 MHz */
    CHECK_EQ(r.ticks[1], 4500000);                   /* stage 2: 30 ms at 150 MHz */
    CHECK_EQ(r.elapsed_ticks, 6200000);              /* 10 + 20 + one 2 ms handoff + 30 ms */
    CHECK_EQ(ee_infer(rt, at1, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 1);
    CHECK_EQ(r.handoffs, 0);                         /* never left core 0 */
    CHECK_EQ(r.elapsed_ticks, 3000000);
    CHECK_EQ(r.ticks[1], 0);
    CHECK_EQ(g_calls[2], 1);
    CHECK_EQ(ee_infer(rt, at0, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 0);
    CHECK_EQ(r.handoffs, 0);
    CHECK_EQ(g_calls[1], 2);
    g_fail_stage = 1;                                /* a local failure after a local stage */
    CHECK_EQ(ee_infer(rt, to_final, 4, &r), EE_ERR_STAGE);
    g_fail_stage = -1;
    CHECK_EQ(ee_infer(rt, to_final, 4, &r), EE_OK);

    /* stage 1 on the same core requantizes its input in place, as a stage on another core would */
    CHECK_EQ(ee_host_set_stage(1, 4, 4, 4, 100, 1.0f / 256.0f, -128, 1, 1073741824, 0, -128, -128, 100000000u,
                               20000000u, 2000000u), 0);
    CHECK(ee_host_start(0, 0) == 0);
    {
        int8_t x[4] = {-128, 0, 90, 98};
        CHECK_EQ(ee_infer(ee_host_runtime(), x, 4, &r), EE_OK);
        CHECK_EQ(g_seen[1][0], -127);
        CHECK_EQ(g_seen[1][1], -63);
        CHECK_EQ(g_seen[1][2], -18);
        CHECK_EQ(g_seen[1][3], -14);
        CHECK_EQ(g_seen[2][3], -13);                 /* stage 2 gets stage 1's map as it is */
        CHECK_EQ(r.exit_stage, 2);
        CHECK_EQ(r.handoffs, 1);
    }
}

static void test_placed_stage0_on_core1(void)
{
    static const uint32_t cores[2] = {1u, 1u};
    static const char cmd[] = "profile%db load 4%db 01326104%infer 1 0%";
    ee_result_t r;
    int8_t to_final[4] = {1, 50, 97, 4};
    int8_t at0[4] = {1, 120, 3, 4};
    ee_runtime_t *rt;
    CHECK(setup_placed(2, 2, cores) == 0);
    rt = ee_host_runtime();
    CHECK_EQ(ee_infer(rt, to_final, 4, &r), EE_OK); /* not the `db` buffer: copied into it first */
    CHECK_EQ(g_seen[0][1], 50);
    CHECK_EQ(g_seen[0][2], 97);
    CHECK_EQ(r.exit_stage, 1);
    CHECK_EQ(r.handoffs, 1);                         /* core 0 -> core 1, and the answer back */
    CHECK_EQ(r.ticks[0], 0);                         /* core 0 only waited */
    CHECK_EQ(r.ticks[1], 4500000);                   /* both stages on the CM4: 30 ms at 150 MHz */
    CHECK_EQ(r.elapsed_ticks, 3200000);              /* 2 ms handoff + 10 + 20 ms, at core 0's 100 MHz */
    CHECK_EQ(ee_infer(rt, at0, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 0);
    CHECK_EQ(r.handoffs, 1);
    CHECK_EQ(r.cls, 1);
    CHECK_EQ(r.elapsed_ticks, 1200000);
    CHECK_EQ(g_calls[1], 1);
    ee_host_set_core_alive(1, 0);                    /* every inference needs core 1 now */
    CHECK_EQ(ee_infer(rt, at0, 4, &r), EE_ERR_TIMEOUT);
    ee_host_set_core_alive(1, 1);
    g_fail_stage = 1;                                /* a remote failure after a remote stage */
    CHECK_EQ(ee_infer(rt, to_final, 4, &r), EE_ERR_STAGE);
    g_fail_stage = -1;

    g_out_len = 0;
    ee_host_feed((const uint8_t *)cmd, sizeof(cmd) - 1u);
    CHECK(strstr(g_out, "m-eenn-stages-[2]\r\n") != 0);
    CHECK(strstr(g_out, "m-eenn-cores-[2]\r\n") != 0);
    CHECK(strstr(g_out, "m-eenn-stage-cores-[1,1]\r\n") != 0);
    CHECK(strstr(g_out, "m-eenn-tick-hz-[150000000,150000000]\r\n") != 0);
    CHECK(strstr(g_out, "m-eenn-core-tick-hz-[100000000,150000000]\r\n") != 0);
    CHECK(strstr(g_out, "m-eenn-exit-[1]\r\n") != 0); /* 01 32 61 04: stage 1 sees 98 */
    CHECK(strstr(g_out, "m-eenn-handoffs-[1]\r\n") != 0);
    CHECK(strstr(g_out, "m-eenn-ticks-[0,4500000]\r\n") != 0);
    CHECK(strstr(g_out, "m-eenn-elapsed-us-[32000]\r\n") != 0);
    if (g_failures != 0) {
        printf("output:\n%s\n", g_out);
    }
}

static void test_placed_three_cores(void)
{
    static const uint32_t cores[4] = {0u, 1u, 1u, 2u};
    static const uint32_t skip[2] = {0u, 2u};
    ee_result_t r;
    int8_t to_final[4] = {1, 50, 96, 4}; /* stages see 96..99 */
    int8_t at2[4] = {1, 50, 98, 4};      /* stage 2 (core 1) sees 100 */
    int8_t at0[4] = {1, 120, 3, 4};
    CHECK(setup_placed(4, 3, cores) == 0);
    CHECK_EQ(ee_infer(ee_host_runtime(), to_final, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 3);
    CHECK_EQ(r.handoffs, 2);                         /* 0 -> 1 -> 2: core 1 forwards to core 2 */
    CHECK_EQ(g_seen[3][2], 99);
    CHECK_EQ(r.ticks[0], 1000000);
    CHECK_EQ(r.ticks[1], 7500000);                   /* stages 1 and 2: 50 ms at 150 MHz */
    CHECK_EQ(r.ticks[2], 8000000);                   /* stage 3: 40 ms at 200 MHz */
    CHECK_EQ(r.elapsed_ticks, 10400000);             /* 10 + 2 + 20 + 30 + 2 + 40 ms */
    CHECK_EQ(ee_infer(ee_host_runtime(), at2, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 2);
    CHECK_EQ(r.handoffs, 1);
    CHECK_EQ(r.ticks[2], 0);
    CHECK_EQ(r.elapsed_ticks, 6200000);
    CHECK_EQ(ee_infer(ee_host_runtime(), at0, 4, &r), EE_OK);
    CHECK_EQ(r.handoffs, 0);
    ee_host_set_core_alive(2, 0);                    /* the forward is lost: core 0 times out */
    CHECK_EQ(ee_infer(ee_host_runtime(), to_final, 4, &r), EE_ERR_TIMEOUT);

    /* a skipped core: stage 1 goes from core 0 straight to core 2 */
    CHECK(setup_placed(2, 3, skip) == 0);
    CHECK_EQ(ee_infer(ee_host_runtime(), to_final, 4, &r), EE_OK);
    CHECK_EQ(r.exit_stage, 1);
    CHECK_EQ(r.handoffs, 1);
    CHECK_EQ(r.ticks[1], 0);
    CHECK_EQ(r.ticks[2], 4000000);
}

static void test_placed_config_check(void)
{
    static const uint32_t cores[3] = {0u, 1u, 1u};
    ee_config_t c;
    CHECK(setup_placed(3, 2, cores) == 0);
    c = *ee_host_config();
    CHECK(ee_config_check(&c, 0) == 0);
    CHECK_EQ(ee_n_cores(&c), 2);
    CHECK_EQ(ee_stage_core(&c, 2), 1);
    CHECK_EQ(ee_core_tick_hz(&c, 1), 150000000);
    c.stages[1].core = 0;
    c.stages[0].core = 1;                            /* decreasing */
    c.stages[0].tick_hz = 150000000u;
    c.stages[1].tick_hz = 100000000u;
    CHECK(ee_config_check(&c, 0) != 0);
    c = *ee_host_config();
    c.stages[2].core = 2;                            /* not below n_cores */
    CHECK(ee_config_check(&c, 0) != 0);
    c = *ee_host_config();
    c.stages[2].tick_hz = 100000000u;                /* disagrees with its core */
    CHECK(ee_config_check(&c, 0) != 0);
    c = *ee_host_config();
    c.stages[0].core = 1;                            /* core 0 runs no stage ... */
    c.stages[0].tick_hz = 150000000u;
    CHECK(ee_config_check(&c, 0) == 0);
    c.core_tick_hz[0] = 0u;                          /* ... and its tick rate is unknown */
    CHECK(ee_config_check(&c, 0) != 0);
    c = *ee_host_config();
    c.n_cores = EE_MAX_CORES + 1u;
    CHECK(ee_config_check(&c, 0) != 0);
    c = *ee_host_config();
    c.n_cores = 0u;                                  /* one core per stage: 3 cores */
    c.stages[2].tick_hz = 150000000u;
    CHECK(ee_config_check(&c, 0) == 0);
    CHECK_EQ(ee_n_cores(&c), 3);
    CHECK_EQ(ee_stage_core(&c, 2), 2);
    CHECK(ee_host_set_placement(EE_MAX_CORES + 1u, cores, k_core_hz) != 0);
}

int main(void)
{
    test_quant();
    test_requester_table();
    test_requester_errors_and_timeouts();
    test_responder();
    test_infer_exit_and_pass();
    test_infer_requant();
    test_infer_timeout_and_recovery();
    test_infer_busy_and_failures();
    test_serve_rejects_bad_requests();
    test_three_stage_chain();
    test_config_check();
    test_port_init();
    test_protocol_smoke();
    test_protocol_no_stale_input_or_result();
    test_protocol_input_types();
    test_quantize_f32();
    test_placed_several_stages_on_core0();
    test_placed_stage0_on_core1();
    test_placed_three_cores();
    test_placed_config_check();
    printf("%d checks, %d failures\n", g_checks, g_failures);
    return g_failures == 0 ? 0 : 1;
}
