"""Hardware profiles: built-ins and validation of users' files."""
import pytest

from eenn.augment.hardware import BUILTIN_PROFILES, load_profile
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
    p = load_profile("psoc6")
    cm0p, cm4 = p.processors
    assert (cm0p.name, cm0p.clock_hz, cm0p.macs_per_s) == ("cm0p", 100e6, 10e6)
    assert (cm4.name, cm4.clock_hz, cm4.macs_per_s) == ("cm4", 150e6, 75e6)
    assert cm0p.sram_bytes == 1 << 20 and cm0p.flash_bytes == 2 << 20
    assert p.shared_memory and p.exclusive


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
