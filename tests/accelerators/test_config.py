"""Loading presets and rejecting malformed descriptions with one line naming the key path."""

import copy
import dataclasses

import pytest
import yaml

import accelerators
import hwsim
from accelerators.systolic import SystolicArray


def test_every_preset_loads_and_names_its_sources():
    assert accelerators.available() == ["bitfusion", "bitfusion_tokens", "int8_systolic", "loom", "loom_tokens", "stripes"]
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
    # the simulator charges no fill/drain and streams DRAM traffic (no per-transfer beat rounding);
    # every other preset rounds each transfer up to whole beats
    assert bitfusion.array.params.fill_drain_cycles == 0 and bitfusion.dram.transfer_bits == 1
    assert [accelerators.load(name).dram.ticks_per_cycle for name in ("int8_systolic", "loom", "stripes")] == [1] * 3
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
        (("memory", "psum_in"), ["sram"], "memory.psum_in[0] must be one of buffer, dram, got 'sram'"),
        (("memory", "storage_bits", "a"), [3, 16], "memory.storage_bits.a lists 3-bit storage, which a 'bitfusion' "
                                                   "array cannot read; use widths from [1, 2, 4, 8, 16]"),
        (("memory", "storage_bits", "b"), [2, 4, 8], "memory.storage_bits.b has no width for 16-bit operands; "
                                                     "add a width >= 16"),
        (("buffers", "ofmap"), 4, "buffers.ofmap (4 bytes) cannot hold one 32-bit partial sum double-buffered; "
                                  "set buffers.ofmap >= 8"),
        (("memory", "output_bits"), "wide", "memory.output_bits must be an integer, got 'wide', or must be one of op"),
        (("memory", "onchip"), ["registers"], "memory.onchip[0] must be one of activations, weights, got 'registers'"),
        (("memory", "psum_bits"), KeyError, "memory.psum_bits is missing; add it"),
        (("dram", "transfer_bits"), 7, "dram.transfer_bits (7) must divide dram.bandwidth_bits_per_cycle (192) "
                                       "into a whole number of units"),
        (("dram", "transfer_bits"), 384, "dram.transfer_bits (384) must divide"),
        (("dram", "transfer_bits"), 0, "dram.transfer_bits must be"),
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


def test_pe_arrays_hold_typed_parameters_not_raw_dicts():
    for name in accelerators.available():
        array = accelerators.load(name).array
        assert dataclasses.is_dataclass(array.params) and dataclasses.is_dataclass(array.mac_energy)
        assert not any(isinstance(value, dict) for value in vars(array).values()), name
    systolic = accelerators.load("int8_systolic")
    assert systolic.dataflow == systolic.array.params.dataflow == "ws"
    # bitfusion's fill/drain is 0 (its public simulator charges none); stripes states 16
    assert accelerators.load("bitfusion").array.params.fill_drain_cycles == 0
    assert accelerators.load("stripes").array.params.fill_drain_cycles == 16


class HalfFoldSystolic(SystolicArray):
    """A made-up array: every fold of the SCALE-Sim closed form takes half the cycles (rounded up)."""

    def tile_cycles(self, m, k, n, op, stream_start=True):
        return -(-super().tile_cycles(m, k, n, op, stream_start) // 2)


def test_register_pe_model_makes_a_new_kind_loadable():
    accelerators.register_pe_model("half_fold_systolic")(HalfFoldSystolic)
    try:
        config = {**accelerators.load("int8_systolic").config, "kind": "half_fold_systolic"}
        op = hwsim.Gemm("g", 64, 64, 64, 8, 8)
        half = hwsim.estimate(op, accelerators.from_dict(config)).compute_cycles
        assert half == -(-hwsim.estimate(op, accelerators.load("int8_systolic")).compute_cycles // 2)
    finally:
        del accelerators.PE_MODELS["half_fold_systolic"]
    with pytest.raises(TypeError, match="needs a hwsim.PEArray subclass"):
        accelerators.register_pe_model("nothing")(dict)


def test_third_party_pe_model_comes_from_the_pmq_pe_models_entry_point(tmp_path, monkeypatch):
    """A real installed-distribution layout on sys.path, found by importlib.metadata."""
    (tmp_path / "third_party_pe.py").write_text(
        "from accelerators.systolic import SystolicArray\n\n\nclass WideSystolic(SystolicArray):\n"
        "    def peak_macs_per_cycle(self, op):\n        return 2 * super().peak_macs_per_cycle(op)\n")
    info = tmp_path / "third_party_pe-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: third-party-pe\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pmq.pe_models]\nwide_systolic = third_party_pe:WideSystolic\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        accel = accelerators.from_dict({**accelerators.load("int8_systolic").config, "kind": "wide_systolic"})
        op = hwsim.Gemm("g", 8, 8, 8, 8, 8)
        assert type(accel.array).__name__ == "WideSystolic" and accel.array.peak_macs_per_cycle(op) == 2 * 32 * 32
    finally:
        accelerators.PE_MODELS.pop("wide_systolic", None)
