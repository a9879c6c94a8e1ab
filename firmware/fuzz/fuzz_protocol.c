/*
 * libFuzzer target for the HIL protocol parser (and, through `infer`, the runtime and the
 * handoff) on the host port.
 *
 * Input: byte 0 picks the configuration (stages, confidence, requant, energy mode, a dead or
 * busy core 1, a failing stage, whether the input has a scale for `eenn-input float32`); the rest is split at byte 1's value into chunks fed one by
 * one, so that framing across chunk borders is exercised. Every byte the firmware writes is
 * checked against the reply grammar of docs/protocol.md (lines of printable ASCII ending in
 * CRLF, starting `m-` or `e-[` ... `]`), and after the input the parser must answer a fresh
 * `%name%` exactly: whatever came before, it resyncs. A violation aborts (a crash for libFuzzer).
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iports/host \
 *        src/ *.c ports/host/ *.c fuzz/fuzz_protocol.c     (see benchmarks/fuzz_protocol.sh)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ee_host.h"

static char g_line[4096];
static size_t g_line_len;
static int g_in_error;
static char g_last[2][4096]; /* the last two complete lines */

static void fail(void)
{
    abort();
}

static void check_line(void)
{
    /* g_line holds one line without its CRLF */
    if (g_line_len < 2u) {
        fail();
    }
    if (g_line[0] == 'm' && g_line[1] == '-') {
        /* fine */
    } else if (g_line_len >= 4u && memcmp(g_line, "e-[", 3) == 0 && g_line[g_line_len - 1u] == ']') {
        size_t i;
        for (i = 3; i + 1u < g_line_len; ++i) {
            if (g_line[i] == ']' || g_line[i] == '[') {
                fail(); /* the error text must not contain brackets: clients cut at ']' */
            }
        }
    } else {
        fail();
    }
    memcpy(g_last[0], g_last[1], sizeof(g_last[0]));
    memcpy(g_last[1], g_line, g_line_len);
    g_last[1][g_line_len] = '\0';
}

static void on_write(const char *data, size_t len, void *user)
{
    size_t i;
    (void)user;
    for (i = 0; i < len; ++i) {
        unsigned char c = (unsigned char)data[i];
        if (c == '\n') {
            if (g_line_len == 0u || g_line[g_line_len - 1u] != '\r') {
                fail();
            }
            g_line_len--;
            check_line();
            g_line_len = 0;
            continue;
        }
        if ((c < 0x20u || c > 0x7eu) && c != '\r') {
            fail();
        }
        if (g_line_len >= sizeof(g_line) - 1u) {
            fail(); /* no reply line is anywhere near this long with <= 64 scores */
        }
        g_line[g_line_len++] = (char)c;
    }
    (void)g_in_error;
}

static int g_fail_stage;

static int on_stage(uint32_t stage, const int8_t *in, size_t in_len, int8_t *fm, size_t fm_len, int8_t *scores,
                    size_t n_scores, void *user)
{
    size_t i;
    uint32_t h = 2166136261u;
    (void)user;
    if ((int)stage == g_fail_stage) {
        return 1;
    }
    for (i = 0; i < in_len; ++i) {
        h = (h ^ (uint8_t)in[i]) * 16777619u;
    }
    for (i = 0; i < n_scores; ++i) {
        h = h * 1103515245u + 12345u;
        scores[i] = (int8_t)(h >> 24);
    }
    for (i = 0; i < fm_len; ++i) {
        fm[i] = (int8_t)(in[i % in_len] ^ (int8_t)i);
    }
    return 0;
}

static void setup(uint8_t sel)
{
    uint32_t n_stages = 1u + (sel & 3u) % 3u; /* 1..3 */
    uint32_t conf = (sel >> 2) & 1u;
    int requant = (sel >> 3) & 1u;
    uint32_t k;
    ee_host_reset();
    ee_host_set_callbacks(on_write, on_stage, 0, 0);
    ee_host_set_model(n_stages, conf, 20000u, "0123abcd", "fuzz01", "virtual: fuzz");
    for (k = 0; k < n_stages; ++k) {
        int last = (k + 1u == n_stages);
        ee_host_set_stage(k, k == 0u ? 6u : 5u, last ? 0u : 5u, 4u, (int32_t)(sel >> 4) * 16 - 128, 1.0f / 256.0f,
                          -128, (requant && k > 0u) ? 1 : 0, 1518500250, (int32_t)((sel >> 5) & 7u) - 3, -7, 3,
                          100000000u + k, 1000000u, 500000u);
    }
    /* scale 0: float32 input refused; else the board may start in float32 */
    ee_host_set_input((sel & 2u) != 0u ? 0.0f : 0.05f, -7, (sel & 2u) != 0u ? EE_INPUT_UINT8 : (sel & 1u) * 2u);
    g_fail_stage = ((sel >> 6) == 3u) ? (int)(n_stages - 1u) : -1;
    ee_host_set_core_alive(1, (sel >> 7) == 0u || (sel & 0x40u) != 0u);
    ee_host_set_notify_busy((sel & 0x30u) == 0x30u ? 2u : 0u);
    if (ee_host_start((sel >> 4) & 1u, (sel & 1u)) != 0) {
        abort(); /* every selected configuration is valid */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t resync[] = "%name%";
    static const char want[] = "m-name-dut-[" EE_DEVICE_NAME "]";
    size_t i = 2;
    uint8_t split;
    if (size < 2u) {
        return 0;
    }
    g_line_len = 0;
    g_last[0][0] = g_last[1][0] = '\0';
    setup(data[0]);
    split = data[1];
    while (i < size) {
        size_t j = i;
        while (j < size && data[j] != split) {
            ++j;
        }
        if (j < size) {
            ++j; /* the split byte ends the chunk and belongs to it */
        }
        ee_host_feed(data + i, j - i);
        i = j;
    }
    ee_host_feed(resync, sizeof(resync) - 1u);
    if (g_line_len != 0u || strcmp(g_last[0], want) != 0 || strcmp(g_last[1], "m-ready") != 0) {
        abort();
    }
    return 0;
}
