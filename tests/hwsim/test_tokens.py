"""Token-precision capabilities: the token-aware presets price patch-wise groups by their hardware, and only them."""

import copy
import dataclasses

import pytest

import accelerators
import hwsim
from hwsim import token_groups
from hwsim.mapper import onchip
from hwsim.tokens import CAPABILITIES
from tests.hwsim.test_row_groups import chain

TOKEN_PRESETS = {"bitfusion_tokens": "bitfusion", "loom_tokens": "loom"}


def without(accel: hwsim.Accelerator, *capabilities: str) -> hwsim.Accelerator:
    config = copy.deepcopy(accel.config)
    for name in capabilities:
        config["tokens"][name] = None
        config["sources"].pop(f"tokens.{name}", None)
    return accelerators.from_dict(config)


def block_ops(batch: int = 1) -> list:
    """One DeiT-S attention block at ρ = 0.5 @ 8/4 on q, k, v and the attention rows (as pmq.patchwise emits it)."""
    count, tokens, hd = 6 * batch, 197, 64
    return [
        hwsim.Gemm("qk.class_rows", 1, hd, tokens, 8, 8, count=count, kind="matmul"),
        hwsim.VectorOp("token_score", "token_score", batch * (6 * 196 + 196 * 8)),
        hwsim.VectorOp("regroup", "regroup", 3 * batch * tokens * 384),
        hwsim.Gemm("qk", 196, hd, tokens, 8, 8, count=count, kind="matmul",
                   row_groups=((98, 8), (98, 4)), col_groups=((99, 8), (98, 4))),
        hwsim.VectorOp("softmax", "softmax", count * tokens * tokens,
                       groups=((count * tokens * 99, 8), (count * tokens * 98, 4))),
        hwsim.Gemm("av", tokens, tokens, hd, 8, 8, count=count, kind="matmul",
                   row_groups=((99, 8), (98, 4)), depth_groups=((99, 8), (98, 4))),
    ]


def test_token_presets_are_their_base_plus_a_tokens_section(presets):
    for name, base in TOKEN_PRESETS.items():
        derived, original = presets[name].config, presets[base].config
        for key in original:
            if key not in ("name", "description", "tokens", "sources"):
                assert derived[key] == original[key], (name, key)
        assert original["sources"].items() <= derived["sources"].items()
        assert set(hwsim.tokens.capabilities(presets[name])) == set(CAPABILITIES)
        assert {f"tokens.{cap}" for cap in CAPABILITIES} <= set(derived["sources"])
        added = sum(cap["area_um2"] for cap in derived["tokens"].values()) / 1e6
        assert hwsim.area(presets[name]).total_mm2 == pytest.approx(hwsim.area(presets[base]).total_mm2 + added)


def test_plain_workloads_cost_the_same_on_a_token_aware_preset(presets):
    ops = [hwsim.Gemm("qkv", 197, 384, 1152, 8, 8), hwsim.Gemm("qk", 197, 64, 197, 8, 8, count=6, kind="matmul"),
           hwsim.VectorOp("softmax", "softmax", 6 * 197 * 197),
           hwsim.Gemm("av", 197, 197, 64, 4, 8, count=6, kind="matmul",
                      row_groups=((99, 4), (98, 4)))]  # groups at the op's own bits: the plain GEMM
    for name, base in TOKEN_PRESETS.items():
        a, b = hwsim.simulate(chain(*ops), presets[name]), hwsim.simulate(chain(*ops), presets[base])
        assert [row.as_row() | {"energy_pj": 0} for row in a.ops] == [row.as_row() | {"energy_pj": 0} for row in b.ops]


@pytest.mark.parametrize("name", list(TOKEN_PRESETS))
def test_shared_operand_fetches_each_operand_once_and_beats_one_gemm_per_group_pair(presets, name):
    accel = presets[name]
    qk = block_ops()[3]
    unit = hwsim.estimate(qk, accel)
    nominal = hwsim.estimate(dataclasses.replace(qk, row_groups=(), col_groups=()), accel)
    split = hwsim.estimate(qk, without(accel, "shared_operand"))
    if nominal.dram_read_bits:
        # requant on load keeps q and k stored at 8 bits: the unit reads exactly the ungrouped GEMM's operands once
        assert unit.dram_read_bits == qk.count * (qk.m * qk.k + qk.k * qk.n) * 8 <= nominal.dram_read_bits
        assert split.dram_read_bits > unit.dram_read_bits  # one GEMM per group pair re-reads the other side
    else:  # a DaDianNao-style design holds the activations on chip: no DRAM either way
        assert unit.dram_read_bits == split.dram_read_bits == 0
    assert unit.cycles < split.cycles
    assert unit.macs == qk.macs and unit.bops == qk.bops


@pytest.mark.parametrize("name", list(TOKEN_PRESETS))
def test_grouped_reduction_keeps_partial_sums_in_the_output_buffer(presets, name):
    accel = presets[name]
    av = block_ops()[5]
    unit = hwsim.estimate(av, accel)
    assert unit.dram_write_bits == av.count * av.m * av.n * accel.memory.out_bits(av) * ("out" not in onchip(av, accel))
    assert "groups on mk" in unit.tile  # the value-row groups accumulate at their own bits in the output buffer
    without_it = without(accel, "grouped_reduction")
    alone = hwsim.estimate(av, without_it)  # either partial outputs per depth group, or the groups run at 8 bits
    assert alone.cycles > unit.cycles and alone.energy_pj > unit.energy_pj
    split = token_groups.plan_grouped(av, without_it)
    assert split.merges == len(split.loops) - 1  # one nest per depth group: their partial outputs are added


@pytest.mark.parametrize("name", list(TOKEN_PRESETS))
def test_regroup_and_score_move_no_dram_with_the_capabilities_and_do_without_them(presets, name):
    accel = presets[name]
    _, score, regroup, *_ = block_ops()
    on_chip = hwsim.estimate(regroup, accel)
    assert (on_chip.cycles, on_chip.dram_read_bits, on_chip.dram_write_bits, on_chip.energy_pj) == (0, 0, 0, 0)
    dma = hwsim.estimate(regroup, without(accel, "gather_on_chip"))  # rows copied into group order at 8 bits
    plain_regroup = hwsim.estimate(regroup, presets[TOKEN_PRESETS[name]])
    moved = regroup.elements * 8 if plain_regroup.dram_read_bits else 0  # 0: the activations stay on chip
    assert dma.dram_read_bits == dma.dram_write_bits == moved
    assert dma.energy_vector_pj == 0 and (dma.cycles > 0) == (moved > 0)
    vector_pass = hwsim.estimate(regroup, without(accel, "requant_on_load"))
    assert vector_pass.as_row() == plain_regroup.as_row() | {"tile": vector_pass.tile}
    fused = hwsim.estimate(score, accel)
    assert fused.dram_read_bits == fused.dram_write_bits == 0
    assert fused.cycles == fused.compute_cycles == hwsim.estimate(score, presets[TOKEN_PRESETS[name]]).compute_cycles


@pytest.mark.parametrize("name", list(TOKEN_PRESETS))
@pytest.mark.parametrize("batch", [1, 4])
def test_every_capability_pays_for_itself_on_an_attention_block(presets, name, batch):
    """With all capabilities the block is faster than with any one removed, and faster and cheaper than
    on the plain preset; simulation and estimate agree on the token presets too."""
    accel = presets[name]
    workload = chain(*block_ops(batch))
    full = hwsim.estimate_workload(workload, accel)
    simulated = hwsim.simulate(workload, accel)
    assert [op.compute_cycles for op in simulated.ops] == [op.compute_cycles for op in full.ops]
    assert abs(simulated.cycles - full.cycles) <= 0.05 * simulated.cycles
    for capability in CAPABILITIES:
        ablated = hwsim.estimate_workload(workload, without(accel, capability))
        assert full.cycles <= ablated.cycles, capability
    plain = hwsim.estimate_workload(workload, presets[TOKEN_PRESETS[name]])
    assert full.cycles < plain.cycles and full.energy_pj < plain.energy_pj


def test_requant_on_load_charges_only_the_rows_that_change_bits(presets):
    accel = presets["bitfusion_tokens"]
    qk = block_ops()[3]
    free = copy.deepcopy(accel.config)
    free["tokens"]["requant_on_load"]["energy_pj_per_element"] = 0.0
    free["tokens"]["gather_on_chip"]["energy_pj_per_row"] = 0.0
    extra = hwsim.estimate(qk, accel).energy_vector_pj - hwsim.estimate(qk, accelerators.from_dict(free)).energy_vector_pj
    caps = accel.config["tokens"]
    label = token_groups.plan_grouped(qk, accel).label  # q and k fit their buffers: each fetched once
    grouped = label.rsplit("groups on ", 1)[1]
    assert grouped in ("m", "n", "mn")
    fetched_low = qk.count * (98 * 64 * ("m" in grouped) + 64 * 98 * ("n" in grouped))  # demoted rows only
    rows = qk.count * (196 * ("m" in grouped) + 197 * ("n" in grouped))  # every row of a grouped operand
    assert extra == pytest.approx(fetched_low * caps["requant_on_load"]["energy_pj_per_element"]
                                  + rows * caps["gather_on_chip"]["energy_pj_per_row"])


def test_extends_merges_the_base_and_errors_name_the_problem(tmp_path):
    derived = tmp_path / "big.yaml"
    derived.write_text("extends: bitfusion\nname: big\nbuffers: {ofmap: 32768}\n")
    accel = accelerators.load(derived)
    base = accelerators.load("bitfusion")
    assert (accel.name, accel.buffers.ofmap, accel.buffers.ifmap) == ("big", 32768, base.buffers.ifmap)
    assert accel.sources == base.sources
    nested = tmp_path / "nested.yaml"
    nested.write_text("extends: big.yaml\nname: nested\n")
    assert accelerators.load(nested).buffers.ofmap == 32768
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\nname: loop\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: bitfusion\nname: bad\ntokens: {requant_on_load: {energy_pj_per_element: -1, area_um2: 1}}\n")
    missing = tmp_path / "missing.yaml"
    missing.write_text("extends: no_such_preset\nname: m\n")
    for path, fragment in ((loop, "loops back"), (bad, "tokens.requant_on_load.energy_pj_per_element must be >= 0"),
                           (missing, "extends 'no_such_preset': unknown accelerator")):
        with pytest.raises(hwsim.ConfigError, match=fragment) as info:
            accelerators.load(path)
        assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("name", list(TOKEN_PRESETS))
def test_subword_vector_runs_demoted_softmax_rows_at_their_width_and_nothing_else_changes(presets, name):
    accel, base = presets[name], presets[TOKEN_PRESETS[name]]
    grouped = block_ops()[4]
    plain = dataclasses.replace(grouped, groups=())
    full, half = hwsim.estimate(plain, accel), hwsim.estimate(grouped, accel)
    assert hwsim.estimate(grouped, base).as_row() == hwsim.estimate(plain, base).as_row()  # plain presets ignore groups
    assert full.as_row() == hwsim.estimate(plain, base).as_row()
    # 99 rows at full width, 98 at two per lane-cycle: (99 + 98 / 2) / 197 of the lane-cycles and vector energy
    share = (99 + 98 / 2) / 197
    assert half.compute_cycles == pytest.approx(share * full.compute_cycles, rel=1e-3)  # per-chunk rounding
    assert half.energy_vector_pj == pytest.approx(share * full.energy_vector_pj)
    assert (half.dram_read_bits, half.dram_write_bits) == (full.dram_read_bits, full.dram_write_bits)
    assert hwsim.simulate(chain(grouped), accel).cycles == half.cycles
    with pytest.raises(hwsim.WorkloadError, match="groups sizes"):
        hwsim.VectorOp("s", "softmax", 10, groups=((4, 8), (4, 4)))
