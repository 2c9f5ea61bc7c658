"""Loading presets and rejecting malformed descriptions with one line naming the key path."""

import copy

import pytest
import yaml

import accelerators
import hwsim


def test_every_preset_loads_and_names_its_sources():
    assert accelerators.available() == ["bitfusion", "int8_systolic", "loom", "stripes"]
    for name in accelerators.available():
        accel = accelerators.load(name)
        assert isinstance(accel, hwsim.Accelerator) and accel.name == name
        assert accel.sources, name
        assert {"energy.sram_pj_per_bit", "dram.energy_pj_per_bit"} <= set(accel.sources)


def test_preset_values_match_the_published_configurations():
    systolic = accelerators.load("int8_systolic")
    assert (systolic.array.rows, systolic.array.cols, systolic.dataflow) == (32, 32, "ws")
    assert (systolic.buffers.ifmap, systolic.buffers.filter, systolic.buffers.ofmap) == (65536,) * 3
    assert systolic.dram.bandwidth_bits_per_cycle == 10 * 8
    bitfusion = accelerators.load("bitfusion")
    assert bitfusion.array.units == 512 and bitfusion.clock_hz == 500e6
    assert (bitfusion.buffers.filter, bitfusion.buffers.ifmap, bitfusion.buffers.ofmap) == (65536, 32768, 16384)
    assert bitfusion.memory.psum_bits == 32 and bitfusion.dram.bandwidth_bits_per_cycle == 192
    # the BitFusion simulator writes outputs back at oprec = 32 and sizes tiles at the operand precision
    assert bitfusion.memory.output_bits == 32 and bitfusion.memory.storage_bits(1, "a") == 1
    assert bitfusion.memory.storage_bits(3, "b") == 4 and bitfusion.memory.psum_in == ("buffer", "dram")
    assert bitfusion.sram_energy.read_pj_per_bit == {"ifmap": 0.059, "filter": 0.021, "ofmap": 0.033}
    stripes = accelerators.load("stripes").config["array"]
    assert [stripes[key] for key in ("tiles", "filters", "windows", "lanes")] == [16, 16, 16, 16]


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(hwsim.UnknownAcceleratorError, match="unknown accelerator 'tpu'; use one of bitfusion, "):
        accelerators.load("tpu")


def write(tmp_path, data, name="x.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def mutate(path_keys, value):
    data = copy.deepcopy(accelerators.load("bitfusion").config)
    node = data
    for key in path_keys[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path_keys[-1]]
    else:
        node[path_keys[-1]] = value
    return data


@pytest.mark.parametrize(
    "keys, value, message",
    [
        (("dram", "bandwidth_bits_per_cycle"), 0, "dram.bandwidth_bits_per_cycle must be > 0, got 0"),
        (("buffers", "ifmap"), -4, "buffers.ifmap must be > 0, got -4"),
        (("buffers", "colour"), 3, "buffers.colour is not a known key; allowed here: ifmap, filter, ofmap"),
        (("energy", "sram_pj_per_bit", "ofmap", "read"), "cheap", "energy.sram_pj_per_bit.ofmap.read must be a number"),
        (("array", "rows"), 2.5, "array.rows must be an integer, got 2.5"),
        (("array", "dataflow"), "ws", "array.dataflow is not a known key"),
        (("energy", "mac", "array_pj_per_cycle"), KeyError, "energy.mac.array_pj_per_cycle is missing; add it"),
        (("kind",), "tpu", "kind must be one of bitfusion, loom, stripes, systolic, got 'tpu'"),
        (("sources", "energy.nothing"), "x", "sources.energy.nothing names no key of this description"),
        (("energy", "static_power_w"), -1, "energy.static_power_w must be >= 0, got -1"),
    ],
)
def test_bad_values_raise_config_error_with_the_key_path(tmp_path, keys, value, message):
    path = write(tmp_path, mutate(keys, value))
    with pytest.raises(hwsim.ConfigError) as err:
        accelerators.load(path)
    text = str(err.value)
    assert text.startswith(f"accelerator '{path}': ") and message in text and "\n" not in text


def test_malformed_yaml_and_missing_file(tmp_path):
    path = write(tmp_path, "name: [unclosed\nkind: systolic\n")
    with pytest.raises(hwsim.ConfigError, match=r"malformed YAML at line \d+"):
        accelerators.load(path)
    with pytest.raises(hwsim.ConfigError, match="must be a mapping"):
        accelerators.load(write(tmp_path, "- 1\n- 2\n", "list.yaml"))
    with pytest.raises(hwsim.ConfigError, match="no such file"):
        accelerators.load(tmp_path / "nope.yaml")


def test_yaml_round_trip_of_a_preset(tmp_path):
    config = accelerators.load("loom").config
    again = accelerators.load(write(tmp_path, config, "loom_copy.yaml"))
    op = hwsim.Gemm("g", 197, 384, 384, 4, 4)
    assert hwsim.estimate(op, again) == hwsim.estimate(op, accelerators.load("loom"))
