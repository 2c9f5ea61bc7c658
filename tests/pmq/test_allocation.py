"""Bit allocations: parsing, validation against a model, JSON round trip."""

from __future__ import annotations

import json

import pytest

from pmq.allocation import FLOAT, BitAllocation, Bits
from pmq.errors import PMQError

NAMES = ["patch_embed.proj", "blocks.0.attn.qkv", "blocks.0.attn.matmul_qk", "head"]


def test_parse_settings():
    assert Bits.parse("W4A8") == Bits(4, 8)
    assert Bits.parse("w2a3") == Bits(2, 3)
    assert Bits.parse("float") == FLOAT == Bits(None, None)
    assert str(Bits(4, 8)) == "W4A8" and str(FLOAT) == "float" and str(Bits(4, None)) == "W4Af"


@pytest.mark.parametrize("text, fragment", [
    ("banana", "'banana'"), ("W9A8", "weight bits 9"), ("W8A1", "activation bits 1"), ("W4", "'W4'"),
])
def test_parse_errors_name_the_text_and_the_valid_form(text, fragment):
    with pytest.raises(PMQError, match=fragment) as info:
        Bits.parse(text)
    assert "W<w>A<a>" in str(info.value) and "2..8" in str(info.value)
    assert "\n" not in str(info.value)


def test_bits_reject_out_of_range_and_non_integers():
    with pytest.raises(PMQError, match="outside"):
        Bits(1, 8)
    with pytest.raises(PMQError, match="not an integer"):
        Bits(4.0, 8)
    with pytest.raises(PMQError, match="not an integer"):
        Bits(True, 8)


def test_uniform_covers_every_component_in_order():
    allocation = BitAllocation.uniform("W4A8", NAMES)
    assert list(allocation) == NAMES and all(b == Bits(4, 8) for _, b in allocation.items())
    assert BitAllocation.uniform("float", NAMES)["head"] == FLOAT
    assert allocation.validate(NAMES) is allocation


def test_validate_names_the_bad_component():
    allocation = BitAllocation.uniform("W4A8", NAMES)
    with pytest.raises(PMQError, match="'blocks.9.mlp.fc1'"):
        BitAllocation({**allocation.bits, "blocks.9.mlp.fc1": Bits(4, 4)}).validate(NAMES)
    with pytest.raises(PMQError, match="lacks component 'head'"):
        BitAllocation({n: allocation[n] for n in NAMES[:-1]}).validate(NAMES)
    with pytest.raises(PMQError, match="unknown component 'nope'"):
        allocation.replace({"nope": FLOAT})


def test_json_round_trip_is_exact(tmp_path):
    allocation = BitAllocation.uniform("W4A8", NAMES).replace(
        {"blocks.0.attn.matmul_qk": Bits(3, None), "head": FLOAT})
    allocation.patchwise = {"layers": {"blocks.0": {"rho": [0.25, 0.5], "levels": [8, 4, 2]}},
                            "score": "cls_attention", "apply_to": ["q", "k", "v", "attn"]}
    allocation.metadata = {"budget_mb": 1.5}
    path = allocation.save(tmp_path / "sub" / "alloc.json")
    loaded = BitAllocation.load(path)
    assert loaded == allocation and list(loaded) == NAMES
    assert loaded.validate(NAMES).patchwise == allocation.patchwise  # the real schema, checked on load
    assert json.loads(path.read_text())["components"]["head"] == {"w": None, "a": None}
    assert not list(path.parent.glob(".*.tmp"))


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a bit allocation"),
    ('{"components": {"head": {"w": 9, "a": 8}}}', "component 'head'.*9"),
    ('{"components": {"head": [4, 8]}}', "component 'head'"),
])
def test_load_errors_name_the_file(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(PMQError, match=fragment) as info:
        BitAllocation.load(path)
    assert str(path) in str(info.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(PMQError, match="not found"):
        BitAllocation.load(tmp_path / "missing.json")
