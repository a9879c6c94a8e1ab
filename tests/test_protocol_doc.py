"""docs/protocol.md is the HIL client's only source: its examples must be what the firmware says."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from eenn.codegen.manifest import ProjectManifest
from eenn.hil.virtual_board import HostFirmware

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def _manifest() -> ProjectManifest:
    q = {"scale": 0.02, "zero_point": -128}
    sc = {"shape": [1, 3], "scale": 1 / 256, "zero_point": -128}
    return ProjectManifest.from_dict({
        "schema_version": 1, "generator": "test", "bundle_hash": "ab" * 32, "kit": "x", "num_classes": 3,
        "confidence": "max", "input": {"shape": [1, 4], **q},
        "stages": [
            {"index": 0, "processor": "cm0p", "core": "cortex-m0plus", "model": "m0", "input": {"shape": [1, 4], **q},
             "feature_map": {"output_index": 0, "shape": [1, 4], **q}, "scores": {"output_index": 1, **sc},
             "threshold": 0.9, "threshold_q": 103, "macs": 0, "predicted_s": 0.0021, "tick_hz": 100_000_000},
            {"index": 1, "processor": "cm4", "core": "cortex-m4", "model": "m1", "input": {"shape": [1, 4], **q},
             "scores": {"output_index": 0, **sc}, "macs": 0, "predicted_s": 0.0047, "tick_hz": 150_000_000,
             "handoff": {"link_s": 0.0004, "wakeup_s": 0.0003}},
        ],
        "energy": {"active_w": [0, 0], "sleep_w": [0, 0]},
    })


def _fake(stage, x, fm_len, n_scores):
    # scores: the input's first three bytes (stage 0) or those minus one (stage 1)
    scores = x[:3].astype(np.int16) - stage
    return np.clip(scores, -128, 127).astype(np.int8), (x if fm_len else None)


def _examples(title: str) -> list[tuple[bytes, list[str]]]:
    text = DOC.read_text()
    block = text.split(title, 1)[1].split("\n\n", 2)[1]  # the indented block after the title line
    steps = []
    for line in block.splitlines():
        parts = [p.strip() for p in line.split("←")]
        cmd = parts[0].removeprefix("→").strip()
        cmd = cmd.replace("ÿþ", "\xff\xfe")
        steps.append((cmd.encode("latin-1"), parts[1:]))
    return steps


def test_error_and_recovery_example_is_exact():
    fw = HostFirmware(_fake)
    try:
        fw.configure(_manifest())
        fw.start(banner=False)
        steps = _examples("Errors and recovery:")
        assert len(steps) >= 8
        for cmd, want in steps:
            got = fw.feed(cmd).decode().split("\r\n")[:-1]
            assert got == want, (cmd, got)
    finally:
        fw.close()


def test_input_types_example_is_exact():
    """uint8 and float32 loads (eenn-input) give the int8 input of the first example."""
    fw = HostFirmware(_fake)
    try:
        fw.configure(_manifest())
        fw.start(banner=False)
        steps = _examples("Input types, replayed:")
        assert len(steps) >= 10 and any(b"float32" in cmd for cmd, _ in steps)
        for cmd, want in steps:
            got = fw.feed(cmd).decode().split("\r\n")[:-1]
            assert got == want, (cmd, got)
    finally:
        fw.close()


def test_full_example_is_exact():
    fw = HostFirmware(_fake)
    try:
        fw.configure(_manifest())
        fw.start(banner=False)
        text = DOC.read_text().split("## 4. Examples", 1)[1].split("Errors and recovery:", 1)[0]
        sent = [m.group(1) for m in re.finditer(r"→ (.*%)", text)]
        want = [m.group(1) for m in re.finditer(r"← (.*)", text)]
        got = []
        for cmd in sent:
            got += fw.feed(cmd.encode()).decode().split("\r\n")[:-1]
        assert got == want
    finally:
        fw.close()
