"""eenn.hil.input_types: the EEMBC input types, and the generated firmware's start type per model id."""
from __future__ import annotations

import ast
import re

import numpy as np
import pytest

from eenn.errors import EennError
from eenn.hil.input_types import BENCHMARK_INPUT, encode, parse_input_line, start_input_type, to_int8

TEMPLATE = "templates/project/shared/include/ee_config.h.j2"


def test_generated_config_starts_each_benchmark_in_its_input_type():
    """ee_config.h's EE_CFG_INPUT_TYPE mapping is the one the virtual board uses (start_input_type)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / TEMPLATE).read_text()
    m = re.search(r"#define EE_CFG_INPUT_TYPE \{\{ (\{.*?\})\.get\(m\.firmware\.model_id, "
                  r"\"(EE_INPUT_\w+)\"\) \}\}", text)
    assert m, "EE_CFG_INPUT_TYPE is not the expected mapping"
    mapping, default = ast.literal_eval(m.group(1)), m.group(2)
    c_name = {"int8": "EE_INPUT_INT8", "uint8": "EE_INPUT_UINT8", "float32": "EE_INPUT_FLOAT32"}
    for model_id in [*BENCHMARK_INPUT, "eenn", "kws01x"]:
        assert mapping.get(model_id, default) == c_name[start_input_type(model_id)], model_id
    assert start_input_type("ic01") == "uint8" and start_input_type("ad01") == "float32"
    assert start_input_type("kws01") == "int8" and start_input_type("eenn") == "int8"


def test_conversions():
    assert to_int8(bytes([0, 127, 128, 255]), "uint8").tolist() == [-128, -1, 0, 127]
    assert to_int8(bytes([0x80, 0x7F]), "int8").tolist() == [-128, 127]
    f = encode(np.array([0.25, -0.25, 1e30, np.nan, -np.inf, 0.7499999]), "float32")
    assert to_int8(f, "float32", 0.5, -3).tolist() == [-2, -4, 127, -3, -128, -2]
    assert encode(np.array([1, 255]), "uint8") == b"\x01\xff"
    with pytest.raises(EennError):
        encode(np.array([256]), "uint8")
    with pytest.raises(EennError):
        to_int8(b"\x00\x00\x00", "float32", 0.5, 0)
    with pytest.raises(EennError):
        to_int8(b"\x00", "int16")


def test_parse_input_line():
    assert parse_input_line("int8") == ("int8", None, None)
    assert parse_input_line("uint8 -128") == ("uint8", None, None)
    assert parse_input_line("float32 scale 0x1.47ae14p-6 zero-point -128") == (
        "float32", float(np.float32(0.02)), -128)
    with pytest.raises(EennError):
        parse_input_line("float32 scale x")
