"""Pieces of code generation on their own: linking the feature-map quantization across cores,
the flatbuffer patch, the arena search, resolver calls, headers, C float literals."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eenn.codegen import render, sizes
from eenn.augment.quant import quantize_multiplier, requantize
from eenn.codegen.subgraphs import ALIGN_RTOL, link_quantization
from eenn.augment.tflite_model import TensorInfo, TfliteModel, set_input_quantization
from eenn.errors import EennError


@pytest.fixture(scope="module")
def stage1_bytes(digits_project):
    return (digits_project.out / "eenn/models/stage1.tflite").read_bytes()


def _fm(scale: float, zp: int) -> TensorInfo:
    return TensorInfo(index=0, name="fm", shape=(1, 8, 8, 8), dtype="int8", scale=scale, zero_point=zp)


def test_link_quantization_equal_ulp_and_far(stage1_bytes):
    cin = TfliteModel(stage1_bytes).inputs[0]
    # equal: the consumer is used as it is
    data, rq, aligned = link_quantization(_fm(cin.scale, cin.zero_point), stage1_bytes)
    assert data == stage1_bytes and rq is None and not aligned
    # one float32 step away: the consumer takes the producer's exact scale, no requantization
    near = float(np.nextafter(np.float32(cin.scale), np.float32(1.0)))
    data, rq, aligned = link_quantization(_fm(near, cin.zero_point), stage1_bytes)
    assert aligned and rq is None and len(data) == len(stage1_bytes)
    patched = TfliteModel(data).inputs[0]
    assert np.float32(patched.scale) == np.float32(near) and patched.zero_point == cin.zero_point
    # only the 4 bytes of the scale changed: weights and alignment untouched
    assert sum(a != b for a, b in zip(data, stage1_bytes)) <= 4
    # far away (or another zero point): requantization constants from quant.py
    far = cin.scale * 1.7
    data, rq, aligned = link_quantization(_fm(far, cin.zero_point + 3), stage1_bytes)
    assert data == stage1_bytes and not aligned
    m, s = quantize_multiplier(far / cin.scale)
    assert rq == {"multiplier": m, "shift": s, "in_zero_point": cin.zero_point + 3, "out_zero_point": cin.zero_point}
    assert ALIGN_RTOL < 0.7


def test_patched_consumer_still_runs(stage1_bytes):
    from tflite_micro.python.tflite_micro import runtime

    cin = TfliteModel(stage1_bytes).inputs[0]
    data = set_input_quantization(stage1_bytes, cin.scale * (1 + 2**-20), cin.zero_point)
    interp = runtime.Interpreter.from_bytes(data)
    interp.set_input(np.zeros(cin.shape, dtype=np.int8), 0)
    interp.invoke()
    assert np.asarray(interp.get_output(0)).shape == (1, 10)


@settings(max_examples=200, deadline=None)
@given(ratio=st.floats(0.05, 4.0), zp_in=st.integers(-128, 127), zp_out=st.integers(-128, 127),
       q=st.lists(st.integers(-128, 127), min_size=1, max_size=64))
def test_requant_constants_approximate_the_scale_ratio(ratio, zp_in, zp_out, q):
    """Whatever link_quantization emits, requantizing is within one step of the exact mapping."""
    prod = _fm(0.01 * ratio, zp_in)
    m, s = quantize_multiplier(prod.scale / 0.01)
    got = requantize(np.array(q), m, s, zp_in, zp_out).astype(int)
    exact = np.clip(np.round((np.array(q) - zp_in) * ratio) + zp_out, -128, 127)
    assert np.all(np.abs(got - exact) <= 1)


def test_arena_search_finds_the_smallest_size(stage1_bytes):
    found = sizes.measure_arena(stage1_bytes)
    assert found % 16 == 0
    probe = sizes._Prober(stage1_bytes)
    try:
        assert probe(found) and not probe(found - 16)
    finally:
        probe.close()
    sz = sizes.subgraph_sizes(stage1_bytes)
    assert sz.arena_measured == found
    assert sz.arena_bytes == sizes.target_arena(found, sz.cmsis_scratch) >= found + sizes.ARENA_MARGIN_FIXED


def test_resolver_calls_and_unknown_ops():
    assert sizes.resolver_calls(["CONV_2D", "MEAN", "SOFTMAX"]) == ["AddConv2D()", "AddMean()", "AddSoftmax()"]
    assert sizes.resolver_calls(["CONV_2D", "MEAN", "SOFTMAX"], int8_kernels=True) == [
        "AddConv2D(tflite::Register_CONV_2D_INT8())", "AddMean()", "AddSoftmax(tflite::Register_SOFTMAX_INT8())"]
    with pytest.raises(EennError, match="NON_MAX_SUPPRESSION_V4"):
        sizes.resolver_calls(["CONV_2D", "NON_MAX_SUPPRESSION_V4"])
    # every method named exists in TFLite Micro's resolver (spelling checked against the header's list)
    assert all(m.startswith("Add") and m[3].isupper() for m in sizes.RESOLVER_METHODS.values())


def test_cmsis_scratch_bound_covers_convolutions(digits_project):
    tm = TfliteModel((digits_project.out / "eenn/models/stage1.tflite").read_bytes())
    # stage 1 of the digits model: depthwise 3x3 over 8 channels, 1x1 conv, 3x3 conv over 16 channels
    assert sizes.cmsis_nn_scratch_bytes(tm) == 4 * 16 * 3 * 3


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_c_float_literal_reads_back_exactly(v):
    lit = render.c_float(v)
    assert lit.endswith("f")
    assert np.float32(float(lit[:-1])) == np.float32(v)


def test_headers_by_file_kind():
    h = "ab" * 32
    assert render.with_header("x.c", "int a;\n", h, "what").startswith("/*\n * Generated by eenn")
    assert render.with_header("proj/Makefile", "A=1", h, "what").startswith("# Generated by eenn")
    assert render.with_header("README.md", "# T", h, "what").startswith("<!--\n")
    assert render.with_header("a.ld", "", h, "w").count(h) == 1
    with pytest.raises(ValueError):
        render.with_header("deps/x.mtb", "line", h, "what")
