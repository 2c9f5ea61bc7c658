"""The one budget grammar: absolute, a multiple of a uniform setting, a multiple of a base."""

from __future__ import annotations

import pytest

from pmq.budget import Budget
from pmq.errors import PMQError
from pmq.results import budget_factor

PRICES = {"W8A8": 400.0, "W4A4": 100.0}


def test_forms_resolve_to_base_units():
    assert Budget.parse("2.5e9").resolve(PRICES.__getitem__) == 2.5e9
    assert Budget.parse("4.2").resolve(PRICES.__getitem__) == 4.2
    assert Budget.parse(7).resolve(PRICES.__getitem__) == 7.0
    assert Budget.parse("0.5x:W8A8").resolve(PRICES.__getitem__) == 200.0
    assert Budget.parse(" 1.5X : W4A4 ").resolve(PRICES.__getitem__) == 150.0
    assert Budget.parse("0.8x").resolve(PRICES.__getitem__, base=50.0) == 40.0


def test_parsed_parts():
    assert Budget.parse("0.4x:W8A8") == Budget("0.4x:W8A8", factor=0.4, setting="W8A8")
    assert Budget.parse("0.97x") == Budget("0.97x", factor=0.97)
    assert Budget.parse("3e6") == Budget("3e6", value=3e6)
    # the results table's factor is the multiple of a uniform setting only
    assert [budget_factor(b) for b in ("0.4x:W8A8", "0.97x", "3e6", "junk")] == [0.4, None, None, None]


@pytest.mark.parametrize("bad", ["", "abc", "x:W8A8", "0.5x:", "-1", "inf", "nan", "0x:W8A8", "-2x:W8A8", "1e400"])
def test_malformed_budgets_are_refused(bad):
    with pytest.raises(PMQError, match="budget"):
        Budget.parse(bad)


def test_references_that_do_not_exist_are_refused():
    with pytest.raises(PMQError, match="unknown uniform setting 'W9A9'"):
        Budget.parse("0.5x:W9A9").resolve(PRICES.__getitem__)
    with pytest.raises(PMQError, match="multiple of a base allocation, which this search does not have: .*0.5x:W8A8"):
        Budget.parse("0.5x").resolve(PRICES.__getitem__)
