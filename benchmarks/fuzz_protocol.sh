#!/usr/bin/env bash
# Long fuzzing run of the HIL protocol parser (firmware/fuzz/fuzz_protocol.c) with libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer. On demand; CI runs a few seconds of it
# (tests/test_firmware_c.py::test_fuzz_protocol_short_run).
#
#   benchmarks/fuzz_protocol.sh [RUNS] [JOBS]      RUNS defaults to 1000000 per job, JOBS to 1
#
# Needs clang with libFuzzer (Debian: clang libclang-rt-14-dev). The working corpus lives in
# $FUZZ_WORK (default: a fresh temporary directory), seeded from firmware/fuzz/corpus; crash
# reproducers land there too. Prints libFuzzer's final stats; exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-1000000}"
JOBS="${2:-1}"
CC="${FUZZ_CC:-clang}"
WORK="${FUZZ_WORK:-$(mktemp -d -t eenn-fuzz-XXXXXX)}"
mkdir -p "$WORK/corpus"
cp firmware/fuzz/corpus/* "$WORK/corpus/"
BIN="$WORK/fuzz_protocol"
"$CC" -g -O1 -std=c99 -Wall -Wextra -Werror \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -Ifirmware/include -Ifirmware/ports/host \
    firmware/src/*.c firmware/ports/host/*.c firmware/fuzz/fuzz_protocol.c -o "$BIN"
echo "fuzz_protocol: $RUNS runs x $JOBS job(s), work dir $WORK" >&2
start=$(date +%s)
cd "$WORK"
if [ "$JOBS" -gt 1 ]; then
    "$BIN" -runs="$RUNS" -jobs="$JOBS" -workers="$JOBS" -dict="$OLDPWD/firmware/fuzz/protocol.dict" \
        -max_len=4096 -print_final_stats=1 corpus
else
    "$BIN" -runs="$RUNS" -dict="$OLDPWD/firmware/fuzz/protocol.dict" -max_len=4096 -print_final_stats=1 corpus
fi
echo "fuzz_protocol: done in $(( $(date +%s) - start )) s" >&2
