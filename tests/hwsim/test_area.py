"""Area model: every preset is priced, area follows array and buffer sizes, missing constants are named."""

import copy

import pytest

import accelerators
import hwsim


def with_value(accel: hwsim.Accelerator, path: str, value) -> hwsim.Accelerator:
    config = copy.deepcopy(accel.config)
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value
    return accelerators.from_dict(config)


def test_every_preset_has_a_sourced_area(presets):
    for name, accel in presets.items():
        area = hwsim.area(accel)
        parts = area.as_dict()
        assert list(parts) == list(hwsim.AreaBreakdown.columns())
        assert parts["area_mm2"] == pytest.approx(sum(v for k, v in parts.items() if k != "area_mm2"))
        tokens = parts.pop("area_tokens_mm2")
        assert all(value > 0 for value in parts.values()), name
        assert (tokens > 0) == bool(accel.config["tokens"]), name  # token hardware only on token-aware presets
        assert {"area.unit_um2", "area.sram_mm2_per_kib", "area.vector_lane_um2"} <= set(accel.sources), name


def test_stripes_is_32_percent_larger_than_its_bit_parallel_counterpart(presets):
    """The Stripes unit area is calibrated to the published +32% over DaDianNao: a 4096-MAC 16-bit
    array (16-bit mult 4 x 282 + 32-bit add 137 um2, Horowitz 45 nm) with the same memories."""
    stripes = hwsim.area(presets["stripes"])
    dadiannao = stripes.total_mm2 - stripes.array_mm2 + 4096 * (4 * 282 + 137) / 1e6
    assert stripes.total_mm2 / dadiannao == pytest.approx(1.32, abs=0.002)


def test_sram_area_grows_with_buffer_size_linearly_only_under_the_constant_model(presets):
    base = presets["bitfusion"]
    sizes = [32768, 65536, 131072, 262144, 524288]  # 64 B .. 1 KB per weight bank
    areas = [hwsim.area(with_value(base, "buffers.filter", size)) for size in sizes]
    totals = [a.total_mm2 for a in areas]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)
    assert {a.array_mm2 for a in areas} == {areas[0].array_mm2}
    # CACTI: small banks carry more periphery per bit, so 16x the bytes is less than 16x the area
    assert 8 * areas[0].sram_mm2["filter"] < areas[-1].sram_mm2["filter"] < 16 * areas[0].sram_mm2["filter"]
    constant = with_value(base, "sram.table", "constant")
    linear = [hwsim.area(with_value(constant, "buffers.filter", size)).sram_mm2["filter"] for size in sizes]
    assert linear[-1] == pytest.approx(16 * linear[0])


@pytest.mark.parametrize("name, keys", [
    ("int8_systolic", ("array.rows", "array.cols")),
    ("bitfusion", ("array.rows", "array.cols")),
    ("stripes", ("array.tiles", "array.windows", "array.lanes")),
    ("loom", ("array.filters",)),
])
def test_array_area_grows_with_the_array(presets, name, keys):
    base = presets[name]
    for key in keys:
        start = base.config["array"][key.split(".")[1]]
        arrays = [hwsim.area(with_value(base, key, start * factor)).array_mm2 for factor in (1, 2, 4)]
        assert arrays[0] < arrays[1] < arrays[2]
        assert arrays[2] == pytest.approx(4 * arrays[0])


def test_precision_support_is_priced_per_unit(presets):
    """A BitFusion Fusion Unit (2/4/8-bit fusible) costs more than a fixed INT8 MAC PE."""
    fusion = hwsim.area(presets["bitfusion"]).array_mm2 / presets["bitfusion"].array.area_units()
    int8 = hwsim.area(presets["int8_systolic"]).array_mm2 / presets["int8_systolic"].array.area_units()
    assert fusion > int8


def test_summary_reports_area_and_missing_constants_are_named(presets):
    accel = presets["int8_systolic"]
    workload = hwsim.Workload()
    workload.add(hwsim.Gemm("g", 16, 32, 32, 8, 8))
    assert hwsim.estimate_workload(workload, accel).summary()["area_mm2"] == hwsim.area(accel).total_mm2
    config = copy.deepcopy(accel.config)
    del config["area"]
    config["sources"] = {k: v for k, v in config["sources"].items() if not k.startswith("area")}
    bare = accelerators.from_dict(config, "bare")
    assert hwsim.estimate_workload(workload, bare).summary()["area_mm2"] is None
    with pytest.raises(hwsim.ConfigError, match="has no area section; add area.unit_um2"):
        hwsim.area(bare)
    config["area"] = {"unit_um2": 1.0, "sram_mm2_per_kib": {"ifmap": 0.1, "filter": 0.1}, "vector_lane_um2": 0}
    with pytest.raises(hwsim.ConfigError, match=r"area.sram_mm2_per_kib.ofmap is missing"):
        accelerators.from_dict(config, "bad")
