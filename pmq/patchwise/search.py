"""ρ per layer on the exact Pareto frontier: each layer's choices are (ρ, levels) settings.

For a base allocation (e.g. the one ``pmq search`` picked), every layer ``blocks.i`` offers the
settings of :func:`patchwise_choices` (ρ = 1 is "off"). Each choice gets

- Ω, the loss increase it causes, estimated from the base allocation's operands by one of
  ``OMEGA_METHODS``: ``"fisher"`` (default) — ½ Σ g² Δ² over the demoted rows, where g is the
  gradient of the loss with respect to the operand (one forward + backward over the images, the PMQ
  metric's empirical Fisher) and Δ the change the token bits make to the quantized operand; every
  choice is then priced from the recorded tensors alone; ``"loss"`` — the measured loss increase
  with only that layer patch-wise (one forward per layer and choice);
- a cost: the layer's ops priced by ``hwsim.estimate`` (latency, energy) or their BOPs, from the
  workload the setting produces (grouped GEMMs plus token ranking and regrouping).

Costs add up over layers (a layer's ops depend on its own setting only), so
:func:`pmq.pareto.frontier` gives the exact (Ω, cost) frontier and the least-Ω point under the budget.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

import hwsim
from pmq.allocation import BitAllocation
from pmq.defaults import DEFAULT_SENSITIVITY_IMAGES
from pmq.errors import PMQError
from pmq.experiment import Experiment
from pmq.pareto import Frontier
from pmq.patchwise.runtime import SCORES, ScoreInputs, assign_groups, token_bits
from pmq.patchwise.spec import (
    DEFAULT_APPLY_TO,
    OPERANDS,
    LayerSetting,
    PatchwiseSpec,
    allocated_bits,
    layer_names,
)
from pmq.quant import QuantModel
from pmq.records import PatchwiseSummary, Simulated
from pmq.search import CostTable, SearchProblem, SearchResult, resolve_budget
from pmq.trace import ModelTrace

OBJECTIVES = ("bops", "latency", "energy")
OMEGA_METHODS = ("fisher", "loss")
DEFAULT_LEVEL_SETS = ((8, 4), (8, 2), (8, 4, 2))
DEFAULT_RHOS = (1.0, 0.75, 0.5, 0.35, 0.25, 0.15, 0.1)
DEFAULT_SHARE = 0.9  # no budget given: 0.9x of the base's own cost, or the cheapest reachable cost above it
Key = tuple[tuple[float, ...], tuple[int, ...]]


def patchwise_choices(level_sets: Iterable[Sequence[int]] = DEFAULT_LEVEL_SETS,
                      rhos: Sequence[float] = DEFAULT_RHOS) -> list[LayerSetting]:
    """Every layer's candidate settings: "off" (ρ = 1) first, then each 2-level set at each ρ < 1 and
    each 3-level set at each pair ρ₀ < ρ₁ < 1 (cumulative)."""
    off: list[LayerSetting] = []
    choices: list[LayerSetting] = []
    for levels in level_sets:
        levels = tuple(levels)
        depth = len(levels) - 1
        for rho in itertools.combinations_with_replacement(sorted(set(rhos)), depth):
            if depth > 1 and (len(set(rho)) < depth or rho[-1] == 1):
                continue  # a level left empty: a smaller level set covers it
            if all(r == 1 for r in rho):
                off = off or [LayerSetting(rho, levels)]  # "off" is listed once, first
            else:
                choices.append(LayerSetting(rho, levels))
    return off + choices


@dataclass
class PatchwiseSearch:
    """The allocation with ``patchwise`` filled, the frontier it came from, and the per-layer tables."""

    allocation: BitAllocation
    frontier: Frontier
    omega: dict[str, dict[Key, float]]
    costs: dict[str, dict[Key, float]]
    fixed_cost: float
    summary: PatchwiseSummary


def _spec_for(layers: dict[str, LayerSetting], score: str, apply_to: Sequence[str], seed: int) -> dict:
    return PatchwiseSpec(layers, score, tuple(apply_to), seed).to_dict()


def _with_patchwise(base: BitAllocation, patchwise: dict) -> BitAllocation:
    return BitAllocation(dict(base.bits), patchwise, dict(base.metadata))


def pricer(objective: str, accelerator: hwsim.Accelerator | None) -> Callable[[hwsim.Gemm | hwsim.VectorOp], float]:
    """Op → its cost in base units: BOPs, or seconds / pJ by ``hwsim.estimate`` on ``accelerator``."""
    if objective not in OBJECTIVES:
        raise PMQError(f"patch-wise objective {objective!r} is not supported: use one of {', '.join(OBJECTIVES)} "
                       "(patch-wise changes activations only, not the model size)")
    if objective != "bops" and accelerator is None:
        raise PMQError(f"objective {objective!r} needs an accelerator to price it: name a preset or a "
                       "YAML file", param="accelerator")

    def price(op: hwsim.Gemm | hwsim.VectorOp) -> float:
        if objective == "bops":
            return float(op.bops)
        cost = hwsim.estimate(op, accelerator)
        return cost.latency_s if objective == "latency" else cost.energy_pj
    return price


def layer_costs(trace: ModelTrace, base: BitAllocation, choices: Sequence[LayerSetting], objective: str,
                accelerator: hwsim.Accelerator | None, score: str = "cls_attention",
                apply_to: Sequence[str] = DEFAULT_APPLY_TO) -> tuple[dict[str, dict[Key, float]], float]:
    """cost[layer][(ρ, levels)] and the cost of everything outside the blocks, in base units.

    One workload per choice with every layer at that choice; each layer's ops are summed
    separately (a layer's ops depend on its own setting only)."""
    price = pricer(objective, accelerator)
    layers = layer_names(base.bits)
    owner = re.compile(r"^(blocks\.\d+)\.")
    table: dict[str, dict[Key, float]] = {layer: {} for layer in layers}
    fixed = 0.0
    for i, setting in enumerate(choices):
        spec = _spec_for(dict.fromkeys(layers, setting), score, apply_to, 0)
        sums = dict.fromkeys(layers, 0.0)
        outside = 0.0
        for op in trace.workload(_with_patchwise(base, spec)).ops:
            match = owner.match(op.name)
            if match and match[1] in sums:
                sums[match[1]] += price(op)
            else:
                outside += price(op)
        for layer in layers:
            table[layer][setting.key] = sums[layer]
        if i == 0:
            fixed = outside
    return table, fixed


def _operand_tensor(operands, component: str, which: str) -> torch.Tensor:
    return operands[component].a if which == "a" else operands[component].w


def _quantizer(qv: QuantModel, component: str, which: str):
    module = qv.component(component)
    return module.quantizer_a if which == "a" else module.quantizer_w


def fisher_omega(qv: QuantModel, images: torch.Tensor, labels: torch.Tensor, choices: Sequence[LayerSetting],
                 score: str = "cls_attention", apply_to: Sequence[str] = DEFAULT_APPLY_TO, seed: int = 0,
                 batch_size: int = 32) -> dict[str, dict[Key, float]]:
    """Ω[layer][(ρ, levels)] = (1/N) Σ_images ½ Σ g² (Q_tokens(x) − Q_base(x))² over the layer's operands.

    ``qv`` runs its current allocation (without patch-wise); g is the gradient of the per-image loss
    with respect to each float operand, from one forward and backward per batch. Operands quantized
    row by row (per-token ranges, or static ones) are priced per token and bit-width once, so a
    choice costs a gather; ``v`` with per-token ranges (ranges per bit group) is priced per choice."""
    layers = layer_names(qv.component_names())
    prefix = qv.trace.prefix_tokens
    generator = torch.Generator().manual_seed(seed)
    omega = {layer: dict.fromkeys((c.key for c in choices), 0.0) for layer in layers}
    slots = [(layer, operand, f"{layer}.{OPERANDS[operand][0]}", OPERANDS[operand][1])
             for layer in layers for operand in apply_to]
    was_training = qv.training
    qv.eval()
    try:
        for start in range(0, len(images), batch_size):
            x, y = images[start:start + batch_size], labels[start:start + batch_size]
            with torch.enable_grad(), qv.recording() as operands:
                loss = F.cross_entropy(qv(x), y, reduction="sum")
                tensors = [_operand_tensor(operands, component, which) for _, _, component, which in slots]
                grads = torch.autograd.grad(loss, tensors)
            with torch.no_grad():
                scores = {}
                for layer in layers:
                    av = operands[f"{layer}.attn.matmul_av"]
                    scores[layer] = SCORES[score](ScoreInputs(av.a.detach(), av.w.detach(), prefix, generator))
                groups: dict[tuple[str, Key], torch.Tensor] = {}
                for (layer, operand, component, which), value, grad in zip(slots, tensors, grads, strict=True):
                    ranked_by = layer if operand != "qkv" else f"blocks.{int(layer.split('.')[1]) - 1}"
                    if ranked_by not in scores:
                        continue  # the first block's qkv has no earlier ranking: it stays plain
                    quantizer = _quantizer(qv, component, which)
                    base = quantizer.bits if isinstance(quantizer.bits, int) else None
                    if base is None:
                        continue  # float operands stay float
                    value, weight = value.detach(), grad.pow(2)
                    plain = quantizer.quantize(value, base)
                    by_row = quantizer.granularity == "tensor" or quantizer.reduce_dim == -1
                    table = _row_error_table(quantizer, value, weight, plain, base, choices) if by_row else None
                    for setting in choices:
                        key = (ranked_by, setting.key)
                        if key not in groups:
                            groups[key] = assign_groups(scores[ranked_by], setting, prefix)
                        bits = token_bits(groups[key], setting, base)
                        if bits is None:
                            continue
                        if table is not None:
                            omega[layer][setting.key] += float(table.gather(0, bits.unsqueeze(0)).sum())
                        else:
                            error = quantizer.quantize(value, bits) - plain
                            omega[layer][setting.key] += 0.5 * float((weight * error.pow(2)).sum(dtype=torch.float64))
    finally:
        qv.train(was_training)
    return {layer: {key: value / len(images) for key, value in row.items()} for layer, row in omega.items()}


def _row_error_table(quantizer, value: torch.Tensor, weight: torch.Tensor, plain: torch.Tensor, base: int,
                     choices: Sequence[LayerSetting]) -> torch.Tensor:
    """``table[b, i, t]`` = ½ Σ g² (Q_b(x) − Q_base(x))² over token t's row(s) of image i (0 at the base bits)."""
    rows = value.shape[:-1]
    table = torch.zeros(base + 1, rows[0], rows[-1], dtype=torch.float64)
    for b in sorted({b for c in choices for b in c.operand_levels(base)} - {base}):
        error = 0.5 * (weight * (quantizer.quantize(value, b) - plain).pow(2)).sum(dim=-1, dtype=torch.float64)
        table[b] = error if error.dim() == 2 else error.sum(dim=1)  # (B, heads, N) → per token
    return table


def loss_omega(qv: QuantModel, images: torch.Tensor, labels: torch.Tensor, choices: Sequence[LayerSetting],
               score: str = "cls_attention", apply_to: Sequence[str] = DEFAULT_APPLY_TO, seed: int = 0,
               batch_size: int = 64) -> dict[str, dict[Key, float]]:
    """Ω[layer][(ρ, levels)] = measured mean loss with only that layer patch-wise − the base loss (≥ 0)."""
    base = qv.allocation
    layers = layer_names(qv.component_names())

    def mean_loss() -> float:
        with torch.no_grad():
            return sum(float(F.cross_entropy(qv(images[i:i + batch_size]), labels[i:i + batch_size], reduction="sum"))
                       for i in range(0, len(images), batch_size)) / len(images)

    was_training = qv.training
    qv.eval()
    try:
        reference = mean_loss()
        omega: dict[str, dict[Key, float]] = {}
        for layer in layers:
            omega[layer] = {}
            for setting in choices:
                qv.apply(_with_patchwise(base, _spec_for({layer: setting}, score, apply_to, seed)))
                omega[layer][setting.key] = max(0.0, mean_loss() - reference)
    finally:
        qv.apply(base).train(was_training)
    return omega


def default_budget(base_total: float, lo: float) -> tuple[float, str]:
    """The budget when none is given, always feasible: 0.9x of the base's cost, or the cheapest patch-wise
    cost when 0.9x lies below it (the base cost is always reachable: ρ = 1 everywhere); and what was picked."""
    share = DEFAULT_SHARE * base_total
    if share >= lo * (1 - 1e-9):
        return share, f"default {DEFAULT_SHARE:g}x of the base"
    return lo, f"default: the cheapest setting ({lo / base_total:.4g}x of the base; {DEFAULT_SHARE:g}x is below it)"


def run_patchwise(experiment: Experiment, allocation: BitAllocation, accelerator: hwsim.Accelerator | None,
                  objective: str, budget: str | float | None = None, *, choices: Sequence[LayerSetting] | None = None,
                  score: str = "cls_attention", apply_to: Sequence[str] = DEFAULT_APPLY_TO,
                  omega_method: str = "fisher", omega_images: int = DEFAULT_SENSITIVITY_IMAGES, seed: int = 0,
                  evaluate: bool = True, evaluate_base: bool = True, limit: int | None = None,
                  progress: bool = True) -> PatchwiseSearch:
    """Search ρ (and levels) per layer for ``allocation`` under ``budget`` on ``objective``.

    ``budget``: ``"0.8x"`` (of ``allocation``'s own cost without patch-wise), ``"0.5x:W8A8"``, an
    absolute value in base units (BOPs, s, pJ), or ``None`` (:func:`default_budget`, always feasible). Returns the allocation with ``patchwise`` filled
    (and metadata), the frontier, and Ω / cost tables; with ``evaluate`` also its top-1 (on
    ``limit`` test images) and simulated cost, next to the base allocation's, in ``summary``
    (``evaluate_base=False`` skips the base's top-1 when the caller has it already).
    """
    if omega_method not in OMEGA_METHODS:
        raise PMQError(f"unknown patch-wise omega method {omega_method!r}: use one of {', '.join(OMEGA_METHODS)}")
    names = experiment.component_names
    base = BitAllocation(dict(allocation.validate(names).bits), {}, dict(allocation.metadata))
    spec = PatchwiseSpec.from_dict({"score": score, "apply_to": list(apply_to), "seed": seed}, layer_names(names))
    choices = list(choices) if choices is not None else patchwise_choices()
    if not choices:
        raise PMQError("no patch-wise choices given: pass settings such as LayerSetting((0.5,), (8, 4))")
    trace = experiment.trace
    trace.check_patchwise()
    price = pricer(objective, accelerator)
    costs, fixed = layer_costs(trace, base, choices, objective, accelerator, spec.score, spec.apply_to)

    def total(alloc: BitAllocation) -> float:
        return sum(price(op) for op in trace.workload(alloc).ops)

    base_total = total(base)
    # "0.8x" is a share of the base allocation's cost; above the dearest setting every layer stays off
    options: dict[str, Any] = {"base_cost": base_total, "clamp_high": True,
                               "uniform_cost": lambda setting: total(BitAllocation.uniform(setting, names))}
    layer_table = CostTable({objective: costs}, {objective: fixed})
    if budget is None:
        target, budget = default_budget(base_total, layer_table.feasible_range(objective)[0])
    else:
        target = resolve_budget(layer_table, objective, budget, list(costs), **options)  # fail before Ω

    experiment.calibrate()
    qv = experiment.qv.apply(base)
    images, labels = experiment.calibration_set
    images, labels = images[:omega_images], labels[:omega_images]
    start = time.perf_counter()
    method = fisher_omega if omega_method == "fisher" else loss_omega
    omega = method(qv, images, labels, choices, spec.score, spec.apply_to, spec.seed)
    omega_s = time.perf_counter() - start

    problem = SearchProblem.build(omega, layer_table, (objective,), **options)
    front, point = problem.frontier, problem.point(target)
    settings = {c.key: c for c in choices}
    patches = next(iter(trace.attention.values()))[1] - trace.prefix_tokens
    chosen = {layer: settings[key] for layer, key in point.allocation.items()  # "off" layers are left out
              if any(settings[key].changes(allocated_bits(base.bits, layer, o), patches) for o in spec.apply_to)}
    patchwise = _spec_for(chosen, spec.score, spec.apply_to, spec.seed)
    result = _with_patchwise(base, patchwise)
    result.validate(names)
    result.metadata.update({"patchwise_objective": objective, "patchwise_budget": str(budget),
                            "patchwise_omega": omega_method, "model": experiment.loaded.tag})
    if accelerator is not None:
        result.metadata["accelerator"] = accelerator.name
    top1 = base_top1 = base_simulated = patchwise_simulated = None
    if evaluate:
        top1 = experiment.evaluate(result, limit, progress=progress).top1
        if evaluate_base:
            base_top1 = experiment.evaluate(base, limit, progress=progress).top1
        if accelerator is not None:
            base_simulated, patchwise_simulated = (
                Simulated.of(hwsim.simulate(trace.workload(alloc), accelerator)) for alloc in (base, result))
    summary = PatchwiseSummary(
        objective=objective, budget=str(budget), budget_base_units=target, base_cost=base_total,
        cost=fixed + point.cost, omega=point.omega, omega_method=omega_method, omega_images=len(images),
        omega_s=omega_s, choices=len(choices), frontier_points=len(front),
        layers={layer: str(setting) for layer, setting in chosen.items()}, top1=top1, base_top1=base_top1,
        base_simulated=base_simulated, patchwise_simulated=patchwise_simulated)
    return PatchwiseSearch(result, front, omega, costs, fixed, summary)


def default_patchwise_objective(objective: str) -> str:
    """The cost a search's patch-wise step minimises by default: the search's own, except that token
    bits change no weight, so a size search hands its patch-wise step to BOPs."""
    return "bops" if objective == "size" else objective


def refine_search(experiment: Experiment, searched: SearchResult, accelerator: hwsim.Accelerator,
                  objective: str | None = None, budget: str | float | None = None, *,
                  limit: int | None = None, progress: bool = True) -> SearchResult:
    """PMQ's patch-wise step on a search's chosen allocation (``pmq search --patchwise``).

    Token bits are reallocated per layer under ``budget`` on ``objective`` (defaults as in
    :func:`default_patchwise_objective` and :func:`run_patchwise`). The result holds the allocation
    with patch-wise filled; its summary measures that allocation, keeps the searched one's numbers
    in ``before_patchwise`` and the step's own record in ``patchwise``."""
    objective = objective or default_patchwise_objective(searched.summary.objective)
    step = run_patchwise(experiment, searched.allocation, accelerator, objective, budget, limit=limit,
                         evaluate_base=False, progress=progress)  # the search measured the base already
    before, simulated = searched.summary.measured, step.summary.patchwise_simulated
    measured = replace(before, top1=step.summary.top1, latency_s=simulated.latency_s,
                       energy_pj=simulated.energy_pj, cycles=simulated.cycles,
                       gbops=experiment.trace.bops(step.allocation) / 1e9)
    summary = replace(searched.summary, measured=measured, before_patchwise=before, patchwise=step.summary)
    return SearchResult(step.allocation, searched.frontier, searched.costs, summary)
