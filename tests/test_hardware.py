"""Hardware profiles: built-ins and validation of users' files."""
import pytest

from eenn.augment.hardware import BUILTIN_PROFILES, HardwareProfile, load_profile, read_profile
from eenn.errors import EennError

GOOD = """
name = "two-core"
[[processor]]
name = "a"
core = "cortex-m0plus"
clock_hz = 48e6
macs_per_s = 4e6
sram_bytes = 65536
flash_bytes = 262144
active_w = 0.01
sleep_w = 0.0001
wakeup_s = 0.0
[[processor]]
name = "b"
core = "cortex-m4"
clock_hz = 96e6
macs_per_s = 40e6
sram_bytes = 131072
flash_bytes = 524288
active_w = 0.03
sleep_w = 0.0001
wakeup_s = 1e-5
[[link]]
from = "a"
to = "b"
bytes_per_s = 1e8
latency_s = 1e-6
j_per_byte = 1e-10
"""


def write(tmp_path, text):
    p = tmp_path / "hw.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", BUILTIN_PROFILES)
def test_builtin_profiles_load(name):
    profile = load_profile(name)
    assert len(profile.links) == len(profile.processors) - 1
    assert profile.to_dict()["name"] == name


def test_psoc6_figures():
    """The file's figures are the reference clocks'; what the search runs on is a plan's."""
    ref = read_profile("psoc6")
    cm0p, cm4 = ref.processors
    assert (cm0p.name, cm0p.clock_hz, cm0p.macs_per_s) == ("cm0p", 100e6, 10e6)
    assert (cm4.name, cm4.clock_hz, cm4.macs_per_s) == ("cm4", 150e6, 75e6)
    assert cm0p.sram_bytes == 1 << 20 and cm0p.flash_bytes == 2 << 20
    assert ref.shared_memory and ref.exclusive
    assert ref.plan_names() == ["bsp-default", "cm4-150"]


PLAN_CLOCKS = {"bsp-default": {"cm0p": 100e6, "cm4": 100e6}, "cm4-150": {"cm0p": 75e6, "cm4": 150e6}}


@pytest.mark.parametrize("plan", sorted(PLAN_CLOCKS))
def test_psoc6_plans_scale_mac_rates_and_power_with_the_clock(plan):
    ref = read_profile("psoc6")
    p = load_profile("psoc6", plan)
    assert p.clock_plan == plan and p.to_dict()["clock_plan"] == plan
    for r, q in zip(ref.processors, p.processors):
        assert q.clock_hz == PLAN_CLOCKS[plan][q.name]
        k = q.clock_hz / r.clock_hz
        assert q.macs_per_s == pytest.approx(r.macs_per_s * k, rel=1e-12)
        assert q.active_w == pytest.approx(r.active_w * k, rel=1e-12)
        assert (q.sleep_w, q.wakeup_s, q.sram_bytes) == (r.sleep_w, r.wakeup_s, r.sram_bytes)
    assert p.links[0].bytes_per_s == pytest.approx(ref.links[0].bytes_per_s * PLAN_CLOCKS[plan]["cm0p"] / 100e6)


def test_default_plan_is_the_bsp_one_and_prices_the_cm4_at_100_mhz():
    p = load_profile("psoc6")
    assert p.clock_plan == "bsp-default"
    cm4 = p.processor("cm4")
    assert (cm4.clock_hz, cm4.macs_per_s) == (100e6, pytest.approx(50e6, rel=1e-12))
    assert load_profile("psoc6", "cm4-150").processor("cm4").macs_per_s == pytest.approx(75e6, rel=1e-12)


def test_a_solutions_profile_round_trips_with_its_plan():
    p = load_profile("psoc6", "cm4-150")
    q = HardwareProfile.from_dict(p.to_dict())
    assert q.clock_plan == "cm4-150" and q.processors == p.processors and q.links == p.links
    with pytest.raises(EennError, match="already"):
        q.with_clock_plan("bsp-default")


def test_unknown_plan_names_the_plans():
    with pytest.raises(EennError, match=r"unknown clock plan 'cm4-200': expected one of bsp-default, cm4-150"):
        load_profile("psoc6", "cm4-200")


def test_profiles_without_plans_are_unaffected(tmp_path):
    p = load_profile(write(tmp_path, GOOD))
    assert p.clock_plan == "" and "clock_plan" not in p.to_dict()
    assert p.processors[1].macs_per_s == 40e6
    with pytest.raises(EennError, match=r"declares no \[\[clock_plan\]\]"):
        load_profile(write(tmp_path, GOOD), "fast")
    assert "clock_plan" not in load_profile("rk3588-cloud").to_dict()


def test_user_plans(tmp_path):
    text = GOOD + '[[clock_plan]]\nname = "slow"\nclock_hz = { a = 24e6, b = 48e6 }\n'
    p = load_profile(write(tmp_path, text))
    assert p.clock_plan == "slow" and p.processors[1].macs_per_s == pytest.approx(20e6)
    bad = GOOD + '[[clock_plan]]\nname = "slow"\nclock_hz = { a = 24e6 }\n'
    with pytest.raises(EennError, match=r"clock_plan\[0\]\.clock_hz = \['a'\]: expected a table with one clock"):
        load_profile(write(tmp_path, bad))
    bad = GOOD + '[[clock_plan]]\nname = "slow"\nclock_hz = { a = 0, b = 48e6 }\n'
    with pytest.raises(EennError, match=r"clock_plan\[0\]\.clock_hz\.a = 0: expected a positive number"):
        load_profile(write(tmp_path, bad))


def test_rk3588_cloud_has_a_50_mbit_link():
    p = load_profile("rk3588-cloud")
    assert len(p.processors) == 3
    assert p.links[-1].bytes_per_s == pytest.approx(50e6 / 8)


def test_user_file(tmp_path):
    p = load_profile(write(tmp_path, GOOD))
    assert [x.name for x in p.processors] == ["a", "b"]
    assert p.processors[0].sram_bytes == 65536 and isinstance(p.processors[0].sram_bytes, int)


def test_missing_field_names_file_and_field(tmp_path):
    path = write(tmp_path, GOOD.replace('macs_per_s = 40e6\n', ''))
    with pytest.raises(EennError, match=r"hw\.toml: processor\[1\]: missing field 'macs_per_s'"):
        load_profile(path)


def test_negative_clock(tmp_path):
    path = write(tmp_path, GOOD.replace("clock_hz = 48e6", "clock_hz = -48e6"))
    with pytest.raises(EennError, match=r"processor\[0\]\.clock_hz = -48000000\.0: expected a positive number"):
        load_profile(path)


def test_wrong_type(tmp_path):
    path = write(tmp_path, GOOD.replace("sram_bytes = 65536", 'sram_bytes = "64k"'))
    with pytest.raises(EennError, match=r"sram_bytes = '64k': expected a positive integer"):
        load_profile(path)


def test_unknown_field_is_a_typo(tmp_path):
    path = write(tmp_path, GOOD.replace("wakeup_s = 0.0", "wakeup_s = 0.0\nwake_up = 1"))
    with pytest.raises(EennError, match="unknown field.*wake_up"):
        load_profile(path)


def test_link_must_join_consecutive_processors(tmp_path):
    path = write(tmp_path, GOOD.replace('from = "a"', 'from = "b"'))
    with pytest.raises(EennError, match="link\\[0\\]"):
        load_profile(path)


def test_wrong_number_of_links(tmp_path):
    path = write(tmp_path, GOOD.split("[[link]]")[0])
    with pytest.raises(EennError, match="expected 1 \\[\\[link\\]\\]"):
        load_profile(path)


def test_not_toml(tmp_path):
    with pytest.raises(EennError, match="not valid TOML"):
        load_profile(write(tmp_path, "name = "))


def test_unknown_profile_name():
    with pytest.raises(EennError, match="not found: expected one of psoc6"):
        load_profile("psoc7")


def test_to_dict_round_trips_through_from_dict():
    """The bundle embeds `to_dict()`; code generation reads it back with `from_dict`."""
    from eenn.augment.hardware import HardwareProfile, load_profile

    for name in ("psoc6", "rk3588-cloud"):
        p = load_profile(name)
        q = HardwareProfile.from_dict(p.to_dict())
        assert q == p
        assert q.links[0].source == p.processors[0].name and q.links[0].target == p.processors[1].name
