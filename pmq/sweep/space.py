"""The space file of a sweep: schema, validation, grid expansion and seeded random sampling.

See :mod:`pmq.sweep` for the YAML layout. Every design is validated (``accelerators.from_dict`` and
``hwsim.area``) while the file is read, so a bad value fails before any work. The optional
``patchwise`` section crosses every accelerator with patch-wise (ρ, levels) settings (torch-free:
only :mod:`pmq.patchwise.spec` is read).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import accelerators
import hwsim
from hwsim.errors import HwsimError
from pmq.errors import PMQError
from pmq.io import read_text
from pmq.patchwise.spec import LayerSetting, PatchwiseSpec, check_levels, check_rho
from pmq.search import HARDWARE_OBJECTIVES

SPACE_KEYS = ("designs", "base", "grid", "random", "budgets", "objective", "patchwise")
PATCHWISE_KEYS = ("rho", "levels", "apply_to", "score")
ENTRY_KEYS = ("base", "grid", "random")
RANDOM_KEYS = ("samples", "seed", "parameters")
RANGE_KEYS = ("min", "max", "log")
FIXED_KEYS = ("name", "kind", "description", "sources")  # not sweepable: `base` picks the kind


@dataclass(frozen=True)
class Design:
    """One accelerator of the sweep: its base, the key paths changed from it, the full description, and
    the patch-wise setting applied to every block of the chosen allocations (None: no patch-wise
    section; ``rho = 1`` with no levels: the plain allocation)."""

    id: int
    base: str
    params: dict[str, Any]
    config: dict[str, Any]
    patchwise: dict[str, Any] | None = None

    @property
    def columns(self) -> dict[str, Any]:
        """The table's ρ / levels cells ("1" and "" for the plain setting); none without patch-wise."""
        if self.patchwise is None:
            return {}
        rho = self.patchwise["rho"]
        return {"rho": "/".join(f"{r:g}" for r in (rho if isinstance(rho, list) else [rho])),
                "levels": "/".join(map(str, self.patchwise.get("levels", [])))}


@dataclass
class Space:
    """The validated space: designs in id order, the key paths any design varies, optional defaults."""

    source: str
    designs: list[Design]
    parameters: list[str]
    budgets: list[str] | None
    objective: str | None
    data: dict[str, Any]


def load_space(path: str | os.PathLike) -> Space:
    """Read and validate a space YAML file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise PMQError(f"space file {path} not found: name a YAML file (its format: `pydoc pmq.sweep`)",
                       param="space")
    try:
        data = yaml.safe_load(read_text(path, "space file"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PMQError(f"space '{path}': malformed YAML{where}; fix the syntax") from None
    return space_from_dict(data, str(path))


def space_from_dict(data: Any, source: str = "<space>") -> Space:
    """Validate a parsed space; every error is one line that names the key and the fix."""
    def fail(message: str) -> PMQError:
        return PMQError(f"space '{source}': {message}")

    if not isinstance(data, dict):
        raise fail(f"the document must be a mapping with 'designs' (or 'base') and 'budgets', got {type(data).__name__}")
    _check_keys(data, SPACE_KEYS, "the top level", fail)
    if "designs" in data:
        inline = [key for key in ENTRY_KEYS if key in data]
        if inline:
            raise fail(f"'{inline[0]}' at the top level and 'designs' both given: put it inside a designs entry")
        entries = data["designs"]
        if not isinstance(entries, list) or not entries:
            raise fail("designs must be a non-empty list of entries with a 'base'")
    elif "base" in data:
        entries = [{key: data[key] for key in ENTRY_KEYS if key in data}]
    else:
        raise fail("no designs: give 'base' (with 'grid' or 'random') or a 'designs' list")

    settings = _patchwise_settings(data["patchwise"], fail) if "patchwise" in data else [None]
    designs: list[Design] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        entry_fail = fail if "designs" not in data else (
            lambda message, number=number: fail(f"designs[{number}]: {message}"))
        for base, params in _expand_entry(entry, entry_fail):
            config = _with_params(base.config, params)
            identity = json.dumps({key: value for key, value in config.items() if key != "name"}, sort_keys=True)
            if identity in seen:
                continue
            seen.add(identity)
            shown = ", ".join(f"{key}={value!r}" for key, value in params.items()) or "as given"
            try:
                accel = accelerators.from_dict({**config, "name": base.config["name"]},
                                               source=f"{base.name} ({shown})")
                hwsim.area(accel)
            except HwsimError as err:
                raise fail(str(err)) from None
            for setting in settings:
                design_id = len(designs)
                named = {**accel.config, "name": f"{base.config['name']}#{design_id}"}
                designs.append(Design(design_id, base.name, params, named, setting))

    budgets = data.get("budgets")
    if budgets is not None and (not isinstance(budgets, list) or not budgets
                                or not all(isinstance(b, str) and b.strip() for b in budgets)):
        raise fail(f"budgets must be a non-empty list of strings like \"0.5x:W8A8\", got {budgets!r}")
    objective = data.get("objective")
    if objective is not None:
        try:
            check_sweep_objective(objective)
        except PMQError as err:
            raise fail(str(err)) from None
    parameters = sorted({key for design in designs for key in design.params})
    return Space(source, designs, parameters, budgets, objective, data)


def _patchwise_settings(spec: Any, fail: Callable[[str], PMQError]) -> list[dict[str, Any]]:
    """The (ρ, levels) settings of a ``patchwise`` section, the candidates of ``pmq search --patchwise``:
    ρ = 1 once (plain), every 2-level set at each ρ < 1, every n-level set at each rising (n-1)-tuple of ρ < 1."""
    if not isinstance(spec, dict):
        raise fail("patchwise must be a mapping with rho and levels, e.g. {rho: [1.0, 0.5], levels: [\"8/4\"]}")
    _check_keys(spec, PATCHWISE_KEYS, "patchwise", fail)
    rhos, level_sets = spec.get("rho"), spec.get("levels")
    if not isinstance(rhos, list) or not rhos:
        raise fail(f"patchwise.rho must be a non-empty list of fractions in (0, 1], e.g. [1.0, 0.5, 0.25], got {rhos!r}")
    if not isinstance(level_sets, list) or not level_sets:
        raise fail(f"patchwise.levels must be a non-empty list of bit levels such as \"8/4\" or [8, 4, 2], "
                   f"got {level_sets!r}")
    try:
        fractions = sorted({check_rho(rho, (8, 4), "patchwise.rho")[0] for rho in rhos})
        levels = [check_levels(_levels(value), "patchwise.levels") for value in level_sets]
        options = PatchwiseSpec.from_dict({key: spec[key] for key in ("apply_to", "score") if key in spec})
    except PMQError as err:
        raise fail(str(err)) from None
    extra = {"score": options.score, "apply_to": list(options.apply_to)}
    settings = [{"rho": 1.0, **extra}] if 1.0 in fractions else []
    for level_set in dict.fromkeys(levels):
        combos = list(itertools.combinations([r for r in fractions if r < 1], len(level_set) - 1))
        if not combos:
            raise fail(f"patchwise.levels {'/'.join(map(str, level_set))} needs {len(level_set) - 1} distinct "
                       f"rho value(s) below 1 (cumulative fractions), got {fractions}")
        settings += [{**LayerSetting(rho, level_set).to_dict(), **extra} for rho in combos]
    return settings


def _levels(value: Any) -> Any:
    """\"8/4/2\" → [8, 4, 2]; a list is checked as it is."""
    if isinstance(value, str):
        try:
            return [int(part) for part in value.split("/")]
        except ValueError:
            return value
    return value


@dataclass(frozen=True)
class _Base:
    name: str
    config: dict[str, Any]


def _check_keys(data: dict, allowed: Sequence[str], where: str, fail: Callable[[str], PMQError]) -> None:
    unknown = [str(key) for key in data if key not in allowed]
    if unknown:
        raise fail(f"unknown key '{unknown[0]}' in {where}; allowed: {', '.join(allowed)}")


def _expand_entry(entry: Any, fail: Callable[[str], PMQError]) -> Iterator[tuple[_Base, dict]]:
    if not isinstance(entry, dict):
        raise fail("an entry must be a mapping with 'base' and optionally 'grid' or 'random'")
    _check_keys(entry, ENTRY_KEYS, "a designs entry", fail)
    if "base" not in entry:
        raise fail(f"no 'base': name a preset ({', '.join(accelerators.available())}) or a YAML file")
    names = entry["base"] if isinstance(entry["base"], list) else [entry["base"]]
    if not names or not all(isinstance(name, str) and name.strip() for name in names):
        raise fail("base must be a preset name, a YAML path or a non-empty list of them")
    if "grid" in entry and "random" in entry:
        raise fail("both 'grid' and 'random' given: use one per entry (add another entry for the other)")
    for name in names:
        try:
            base = _Base(name, accelerators.load(name).config)
        except HwsimError as err:
            raise fail(str(err)) from None
        if "random" in entry:
            yield from ((base, params) for params in _random(entry["random"], base, fail))
        else:
            yield from ((base, params) for params in _grid(entry.get("grid") or {}, base, fail))


def _grid(grid: Any, base: _Base, fail: Callable[[str], PMQError]) -> Iterator[dict]:
    if not isinstance(grid, dict):
        raise fail("grid must map key paths (e.g. array.rows) to lists of values")
    axes = {key: values if isinstance(values, list) else [values] for key, values in grid.items()}
    for key, values in axes.items():
        if not values:
            raise fail(f"grid {key} is an empty range; give at least one value")
        for value in values:
            _check_value(base, key, value, fail)
    combos: list[list[tuple[str, Any]]] = [[]]
    for key, values in axes.items():
        combos = [combo + [(key, value)] for combo in combos for value in values]
    return (dict(combo) for combo in combos)


def _random(spec: Any, base: _Base, fail: Callable[[str], PMQError]) -> Iterator[dict]:
    if not isinstance(spec, dict):
        raise fail("random must be a mapping with samples, seed and parameters")
    _check_keys(spec, RANDOM_KEYS, "random", fail)
    samples, seed, parameters = spec.get("samples"), spec.get("seed", 0), spec.get("parameters")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise fail(f"random.samples must be a positive integer, got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise fail(f"random.seed must be an integer, got {seed!r}")
    if not isinstance(parameters, dict) or not parameters:
        raise fail("random.parameters must map key paths to a list of values or {min, max}")
    draws = {key: _sampler(base, key, parameters[key], fail) for key in sorted(parameters)}
    rng = random.Random(seed)
    return ({key: draw(rng) for key, draw in draws.items()} for _ in range(samples))


def _sampler(base: _Base, key: str, spec: Any, fail: Callable[[str], PMQError]):
    if isinstance(spec, list):
        if not spec:
            raise fail(f"random {key} is an empty range; give at least one value")
        for value in spec:
            _check_value(base, key, value, fail)
        return lambda rng: rng.choice(spec)
    if not isinstance(spec, dict) or not {"min", "max"} <= set(spec):
        raise fail(f"random {key} must be a list of values or {{min: .., max: ..}}, got {spec!r}")
    _check_keys(spec, RANGE_KEYS, f"random {key}", fail)
    lo, hi, log = spec["min"], spec["max"], spec.get("log", False)
    current = _check_value(base, key, lo, fail)
    _check_value(base, key, hi, fail)
    if isinstance(current, str):
        raise fail(f"random {key} takes text values: give a list, not min/max")
    if not isinstance(log, bool):
        raise fail(f"random {key}.log must be true or false, got {log!r}")
    if lo > hi:
        raise fail(f"random {key} is an empty range (min {lo} > max {hi}); swap them")
    if log and lo <= 0:
        raise fail(f"random {key} is log-uniform, so min must be > 0, got {lo}")
    integer = isinstance(current, int) or (isinstance(lo, int) and isinstance(hi, int))

    def draw(rng: random.Random):
        if log:
            value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            return min(max(round(value), lo), hi) if integer else value
        return rng.randint(lo, hi) if integer else rng.uniform(lo, hi)

    return draw


def _check_value(base: _Base, key: str, value: Any, fail: Callable[[str], PMQError]) -> Any:
    """Check that ``key`` is a leaf of the base description and ``value`` has its type; returns the base value."""
    if not isinstance(key, str) or not key:
        raise fail(f"parameter {key!r} must be a key path such as array.rows")
    if key.split(".")[0] in FIXED_KEYS:
        raise fail(f"parameter {key} cannot be swept; choose the accelerator kind with 'base'")
    node: Any = base.config
    for depth, part in enumerate(key.split(".")):
        if not isinstance(node, dict) or part not in node:
            parent = ".".join(key.split(".")[:depth]) or "the top level"
            known = ", ".join(node) if isinstance(node, dict) else "none"
            raise fail(f"parameter {key} is not a key of accelerator '{base.name}' "
                       f"(keys under {parent}: {known})")
        node = node[part]
    if isinstance(node, dict):
        raise fail(f"parameter {key} is a section of '{base.name}', not a value; name one of its "
                   f"keys: {', '.join(f'{key}.{sub}' for sub in node)}")
    if isinstance(node, bool) or node is None:
        ok = isinstance(value, type(node))
        wanted = "true or false" if isinstance(node, bool) else "null"
    elif isinstance(node, int):
        ok, wanted = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(node, float):
        ok, wanted = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    else:
        ok, wanted = isinstance(value, str), "text"
    if not ok:
        raise fail(f"{key} value {value!r} has the wrong type; '{base.name}' needs {wanted} "
                   f"(it has {node!r})")
    return node


def _with_params(config: dict, params: Mapping[str, Any]) -> dict:
    config = copy.deepcopy(config)
    for key, value in params.items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def check_sweep_objective(objective: str | None) -> str:
    if not objective:
        raise PMQError(f"no objective: name one ({' or '.join(HARDWARE_OBJECTIVES)}) or add 'objective' "
                       "to the space file", param="objective")
    if objective not in HARDWARE_OBJECTIVES:
        raise PMQError(f"sweep objective {objective!r}: use one of {', '.join(HARDWARE_OBJECTIVES)} "
                       "(the quantity the chosen allocation minimises Ω under)", param="objective")
    return objective
