"""Stages placed on processors: the two search spaces, and a cost model that charges a hand-off
only where the processor changes, the input's transfer off the first processor, and the base
model on its cheapest processor."""
import itertools
from math import comb

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eenn.augment.architectures import (
    Architecture,
    ExitCost,
    count_architectures,
    enumerate_architectures,
    input_bytes,
    prune,
    stage_loads,
)
from eenn.augment.block_graph import build_block_graph
from eenn.augment.cost import CostModel, StageLoad
from eenn.augment.hardware import HardwareProfile, load_profile
from eenn.augment.layer_graph import build_layer_graph
from eenn.augment.search import base_candidates
from eenn.errors import EennError
from tests import models


def _old_enumeration(n_locations: int, n_processors: int) -> list[Architecture]:
    """The enumeration before stages were placed (main before issue 13): cut i on processor i."""
    last = n_processors - 1
    return [Architecture(cuts=tuple(c), processors=tuple(range(k)) + (last,))
            for k in range(min(n_locations, last) + 1) for c in itertools.combinations(range(n_locations), k)]


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 7), st.integers(1, 4), st.integers(0, 4))
def test_enumeration_matches_the_count_and_the_rules(n_loc, n_proc, max_exits):
    anyp = enumerate_architectures(n_loc, n_proc, "any", max_exits)
    assert len(anyp) == count_architectures(n_loc, n_proc, "any", max_exits)
    assert len(set(anyp)) == len(anyp)
    assert count_architectures(n_loc, n_proc, "any", max_exits) == sum(
        comb(n_loc, k) * comb(n_proc + k, k + 1) for k in range(min(n_loc, max_exits) + 1))
    for a in anyp:
        assert list(a.cuts) == sorted(set(a.cuts)) and len(a.cuts) <= max_exits
        assert len(a.processors) == len(a.cuts) + 1
        assert list(a.processors) == sorted(a.processors) and 0 <= a.processors[0] and a.processors[-1] < n_proc
    # every placement of every cut set is there: non-decreasing sequences of processors
    for cuts in {a.cuts for a in anyp}:
        placed = {a.processors for a in anyp if a.cuts == cuts}
        assert placed == set(itertools.combinations_with_replacement(range(n_proc), len(cuts) + 1))
    # the paper's space is today's, exactly (bounded by the processors, not by --max-exits when larger)
    boundary = enumerate_architectures(n_loc, n_proc, "boundary", max(max_exits, n_proc))
    assert boundary == _old_enumeration(n_loc, n_proc)
    assert len(boundary) == count_architectures(n_loc, n_proc, "boundary")
    assert set(enumerate_architectures(n_loc, n_proc, "boundary", max_exits)) <= set(anyp)


def test_space_sizes_quoted_in_the_docs():
    # 5 locations, 2 processors, 2 exits: the base on either, 5 cuts × 3 placements, 10 pairs × 4
    assert count_architectures(5, 2, "any", 2) == 2 + 5 * 3 + 10 * 4 == 57
    assert count_architectures(74, 3, "boundary") == 2776
    assert count_architectures(74, 3, "any", 2) == 3 + 74 * 6 + comb(74, 2) * 10
    with pytest.raises(EennError, match="placement 'anywhere'"):
        count_architectures(5, 2, "anywhere")


@pytest.fixture(scope="module")
def bg():
    return build_block_graph(build_layer_graph(models.cnn2d()))


@pytest.fixture(scope="module")
def psoc6():
    return load_profile("psoc6")


def _two_stages(bg, p0, p1, exit_macs=1000):
    cut = bg.candidates[0]
    first = tuple(bg.blocks[: cut.block + 1])
    rest = tuple(bg.blocks[cut.block + 1:]) + (bg.head,)
    return [StageLoad(p0, first, exit_macs=exit_macs, exit_layers=3, exit_param_bytes=100, exit_peak_bytes=64,
                      out_bytes=cut.activation_bytes), StageLoad(p1, rest)], cut


def test_no_hand_off_between_stages_on_one_processor(bg, psoc6):
    cm = CostModel(psoc6)
    stages, cut = _two_stages(bg, 1, 1)
    n_in = input_bytes(bg)
    same = cm.mapping(stages, n_in)
    rate = psoc6.processors[1].macs_per_s  # the CM4F under the default clock plan
    s0 = sum(b.macs for b in stages[0].blocks) / rate + 1000 / rate
    s1 = sum(b.macs for b in stages[1].blocks) / rate
    link, cm4 = psoc6.links[0], psoc6.processors[1]
    into = link.latency_s + n_in / link.bytes_per_s + cm4.wakeup_s  # the CM0+ passes the input on, once
    assert same.handoff_s == [0.0]
    assert same.input_s == pytest.approx(into)
    assert same.latency_s == pytest.approx([into + s0, into + s0 + s1], rel=1e-12)
    p = cm.active_power_w(1)
    e_in = n_in * link.j_per_byte + (link.latency_s + n_in / link.bytes_per_s) * cm.active_power_w(0) + \
        cm4.wakeup_s * p
    assert same.energy_j == pytest.approx([e_in + s0 * p, e_in + (s0 + s1) * p], rel=1e-12)
    # the same cut across the cores pays the feature map's transfer and the wake-up
    across = cm.mapping(_two_stages(bg, 0, 1)[0], n_in)
    assert across.input_s == 0.0 and across.handoff_s[0] == pytest.approx(
        link.latency_s + cut.activation_bytes / link.bytes_per_s + cm4.wakeup_s)
    # memory on one processor: weights add up, one arena for the largest stage (+ the handed-on map)
    flash = sum(st.weights_bytes for st in stages)
    assert same.flash_bytes == [0, flash]
    assert same.sram_bytes == [0, max(st.arena_bytes for st in stages) + cut.activation_bytes]


def test_stages_must_follow_the_profile_order(bg, psoc6):
    with pytest.raises(ValueError, match="profile's order"):
        CostModel(psoc6).mapping(_two_stages(bg, 1, 0)[0])


def test_input_transfer_relayed_to_a_later_processor(bg):
    rk = load_profile("rk3588-cloud")
    cm = CostModel(rk)
    n_in = input_bytes(bg)
    whole = (StageLoad(2, tuple(bg.blocks) + (bg.head,)),)
    mc = cm.mapping(whole, n_in)
    l0, l1 = rk.links
    t0, t1 = l0.latency_s + n_in / l0.bytes_per_s, l1.latency_s + n_in / l1.bytes_per_s
    assert mc.input_s == pytest.approx(t0 + t1 + rk.processors[2].wakeup_s)
    assert mc.worst_latency_s == pytest.approx(mc.input_s + cm.segment_s(whole[0].blocks, 2))
    # on the device (the first processor): both links' joules per byte, its active power while it
    # sends, its sleep power while the link beyond and the workstation run
    cpu = rk.processors[0]
    device = n_in * (l0.j_per_byte + l1.j_per_byte) + t0 * cpu.active_w + t1 * cpu.sleep_w + \
        (rk.processors[2].wakeup_s + cm.segment_s(whole[0].blocks, 2)) * cpu.sleep_w
    assert mc.device_energy_j == pytest.approx([device], rel=1e-12)
    assert mc.energy_j[0] > mc.device_energy_j[0]
    # the input is free where it arrives; one chip (psoc6) reports the device's energy as the total
    assert cm.mapping([StageLoad(0, whole[0].blocks)], n_in).input_s == 0.0
    ps = CostModel(load_profile("psoc6")).mapping([StageLoad(1, whole[0].blocks)], n_in)
    assert ps.device_energy_j == ps.energy_j


def _profile(first_rate: float, first_w: float, second_rate: float, second_w: float) -> HardwareProfile:
    def proc(name, rate, watts):
        return {"name": name, "core": "cortex-m4", "clock_hz": 1e8, "macs_per_s": rate, "sram_bytes": 1 << 20,
                "flash_bytes": 1 << 21, "active_w": watts, "sleep_w": 0.001, "wakeup_s": 1e-4}

    return HardwareProfile.from_dict({"name": "two", "processor": [proc("a", first_rate, first_w),
                                                                   proc("b", second_rate, second_w)],
                                      "link": [{"from": "a", "to": "b", "bytes_per_s": 1e6, "latency_s": 1e-4,
                                                "j_per_byte": 1e-8}]})


@pytest.mark.parametrize("profile,cheapest", [
    (_profile(50e6, 0.01, 75e6, 0.03), 0),  # the first processor spends less per MAC
    (_profile(10e6, 0.02, 75e6, 0.03), 1),  # the second: even with the input's transfer
])
def test_the_base_is_the_cheapest_single_processor(bg, profile, cheapest):
    cm = CostModel(profile)
    bases = base_candidates(bg, cm, "energy", None)
    assert bases[0]["index"] == cheapest
    n_in = input_bytes(bg)
    for b in bases:
        direct = cm.mapping([StageLoad(b["index"], tuple(bg.blocks) + (bg.head,))], n_in)
        assert b["cost"] == pytest.approx(direct.energy_j[0])
    assert bases[0]["cost"] < bases[1]["cost"]
    # the base on "b" pays the input's transfer and b's wake-up: without them it would be cheaper
    b1 = next(b for b in bases if b["index"] == 1)["mapping"]
    assert b1.input_s == pytest.approx(1e-4 + n_in / 1e6 + 1e-4)
    # a latency bound that the cheaper one misses: the other one, though it costs more
    slow = bases[0]["mapping"].worst_latency_s
    other = bases[1]["mapping"].worst_latency_s
    if other < slow:
        bounded = base_candidates(bg, cm, "energy", (slow + other) / 2)
        assert bounded[0]["index"] == 1 - cheapest and not bounded[1]["within_bound"]


def test_pruning_streams_the_space_and_counts_it(bg, psoc6):
    costs = {i: ExitCost(100, 3, 50, 64) for i in range(len(bg.candidates))}
    cm = CostModel(psoc6)
    from eenn.augment.architectures import iter_architectures

    total = count_architectures(len(bg.candidates), 2, "any", 2)
    p = prune(bg, iter_architectures(len(bg.candidates), 2, "any", 2), costs, cm, None)
    assert p.total == total and not p.pruned
    for arch, mc in p.kept:
        assert mc.worst_latency_s == pytest.approx(cm.mapping(stage_loads(bg, arch, costs), input_bytes(bg))
                                                   .worst_latency_s)
        changes = sum(1 for a, b in zip(arch.processors, arch.processors[1:]) if a != b)
        assert sum(1 for h in mc.handoff_s if h > 0) == changes
