"""Size-dependent SRAM energy/area (hwsim.sram): presets keep their facts, changed geometries follow CACTI."""

import copy
import csv

import pytest

import accelerators
import hwsim
from hwsim import sram


def table_row(capacity, word_bits, ports=1):
    """One row of the committed CACTI table, read straight from the CSV."""
    path = sram.DATA_DIR / f"sram_{sram.DEFAULT_TABLE}.csv"
    rows = csv.DictReader(line for line in path.read_text().splitlines() if not line.startswith("#"))
    for row in rows:
        if (int(row["capacity_bytes"]), int(row["word_bits"]), int(row["ports"])) == (capacity, word_bits, ports):
            return float(row["read_pj"]), float(row["write_pj"]), float(row["area_mm2"])
    raise KeyError((capacity, word_bits, ports))


def with_changes(name, **changes):
    config = copy.deepcopy(accelerators.load(name).config)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    return accelerators.from_dict(config, source=name)


@pytest.mark.parametrize("name", ["bitfusion", "int8_systolic", "stripes", "loom"])
def test_presets_keep_their_stated_figures_at_their_own_geometry(name):
    accel = accelerators.load(name)
    stated = accel.config["energy"]["sram_pj_per_bit"]
    for buffer in hwsim.accelerator.BUFFERS:
        assert accel.sram_energy.read_pj_per_bit[buffer] == pytest.approx(stated[buffer]["read"], rel=1e-12)
        assert accel.sram_energy.write_pj_per_bit[buffer] == pytest.approx(stated[buffer]["write"], rel=1e-12)
        density = accel.config["area"]["sram_mm2_per_kib"][buffer]
        assert hwsim.area(accel).sram_mm2[buffer] == pytest.approx(getattr(accel.buffers, buffer) / 1024 * density)


def test_a_bigger_buffer_costs_what_cacti_says_relative_to_the_stated_one():
    # BitFusion's input buffer: 16 banks of 32-bit words; 32 KB -> 128 KB moves each bank from 2 KB to 8 KB.
    accel = with_changes("bitfusion", buffers__ifmap=131072)
    small, big = table_row(2048, 32), table_row(8192, 32)
    assert accel.sram_energy.read_pj_per_bit["ifmap"] == pytest.approx(0.059 * big[0] / small[0], rel=1e-9)
    assert accel.sram_energy.write_pj_per_bit["ifmap"] == pytest.approx(0.114 * big[1] / small[1], rel=1e-9)
    assert hwsim.area(accel).sram_mm2["ifmap"] == pytest.approx(32 * 0.0047 * big[2] / small[2], rel=1e-9)
    assert accel.sram_energy.read_pj_per_bit["ifmap"] > 2 * 0.059  # per bit, not only per buffer
    # the other buffers keep their facts
    assert accel.sram_energy.read_pj_per_bit["filter"] == pytest.approx(0.021)


def test_energy_per_bit_grows_with_capacity_and_banking_buys_it_back():
    sizes = [32768, 131072, 524288, 2097152]  # 64 B .. 4 KB per bank
    energies = [with_changes("bitfusion", buffers__filter=size).sram_energy.read_pj_per_bit["filter"] for size in sizes]
    assert energies == sorted(energies) and energies[-1] > 3 * energies[0]
    one_bank = with_changes("int8_systolic", buffers__ifmap=1 << 20)
    eight_banks = with_changes("int8_systolic", buffers__ifmap=1 << 20, sram__ifmap={"word_bits": 256, "banks": 8,
                                                                                          "ports": 1})
    assert eight_banks.sram_energy.read_pj_per_bit["ifmap"] < one_bank.sram_energy.read_pj_per_bit["ifmap"]
    assert hwsim.area(eight_banks).sram_mm2["ifmap"] > hwsim.area(one_bank).sram_mm2["ifmap"]


def test_the_table_agrees_with_horowitz_within_a_factor_of_two():
    # Horowitz ISSCC 2014, 45 nm: a 64-bit read costs 10 pJ at 8 KB, 20 pJ at 32 KB, 100 pJ at 1 MB.
    for capacity, published in ((8192, 10.0), (32768, 20.0), (1 << 20, 100.0)):
        read = table_row(capacity, 64)[0]
        assert published / 2 < read < published * 2, (capacity, read)


def test_interpolation_between_grid_points_lies_between_them():
    table = sram.load_table(sram.DEFAULT_TABLE)
    mid = table.array(3 * 1024, 48, 1)
    corners = [table_row(c, w) for c in (2048, 4096) for w in (32, 64)]
    for column in range(3):
        values = [corner[column] for corner in corners]
        assert min(values) < mid[column] < max(values)


def test_constant_table_keeps_the_old_linear_model():
    accel = with_changes("bitfusion", buffers__ifmap=131072, sram__table="constant")
    assert accel.sram_energy.read_pj_per_bit["ifmap"] == 0.059
    assert hwsim.area(accel).sram_mm2["ifmap"] == pytest.approx(128 * 0.0047)


def test_a_description_without_an_sram_section_is_stated_at_its_own_buffers(tmp_path):
    config = copy.deepcopy(accelerators.load("bitfusion").config)
    del config["sram"]
    accel = accelerators.from_dict(config)
    assert accel.config["sram"]["stated_at"]["ifmap"] == {"bytes": 32768, "word_bits": 64, "banks": 1, "ports": 1}
    assert accel.sram_energy.read_pj_per_bit["ifmap"] == pytest.approx(0.059)
    again = accelerators.from_dict(copy.deepcopy(accel.config))  # a validated config loads to the same figures
    assert again.sram_energy == accel.sram_energy


def test_banks_smaller_than_the_table_follow_hwcomponents_depth_scaling():
    table = sram.load_table(sram.DEFAULT_TABLE)
    smallest = table_row(64, 32)
    read, write, area = table.array(16, 32, 1)
    assert (read, write, area) == pytest.approx((smallest[0] * 0.25 ** 0.78, smallest[1] * 0.25 ** 0.78,
                                                 smallest[2] * 0.25))


def test_geometry_outside_the_table_is_one_clear_error():
    with pytest.raises(hwsim.ConfigError, match=r"buffer ifmap \(1073741824 bytes in 16 bank\(s\).*outside SRAM "
                                                r"table 'cacti_45nm'.*change buffers.ifmap or sram.ifmap"):
        with_changes("bitfusion", buffers__ifmap=1 << 30)
    with pytest.raises(hwsim.ConfigError, match="sram.table 'cacti_7nm' is not an SRAM table: use cacti_45nm"):
        with_changes("bitfusion", sram__table="cacti_7nm")


def test_dram_energy_by_technology():
    config = copy.deepcopy(accelerators.load("bitfusion").config)
    config["dram"] = {"bandwidth_bits_per_cycle": 192, "technology": "hbm2"}
    hbm2 = accelerators.from_dict(config)
    assert hbm2.dram.energy_pj_per_bit == 3.97 and "O'Connor et al." in hbm2.sources["dram.technology"]
    assert set(sram.DRAM_TECHNOLOGIES) == {"lpddr4", "ddr4", "hbm2"}
    config["dram"]["energy_pj_per_bit"] = 15.0
    with pytest.raises(hwsim.ConfigError, match="dram needs exactly one of energy_pj_per_bit or technology.*both"):
        accelerators.from_dict(config)
    config["dram"] = {"bandwidth_bits_per_cycle": 192, "technology": "gddr9"}
    with pytest.raises(hwsim.ConfigError, match="dram.technology must be one of lpddr4, ddr4, hbm2, got 'gddr9'"):
        accelerators.from_dict(config)
