"""The PMQ search on the real demo model: exact against an ILP, budgets, CLI outputs."""

from __future__ import annotations

import json

import pytest

import accelerators
from pmq.allocation import BitAllocation
from pmq.cli import main
from pmq.errors import PMQError
from pmq.experiment import Experiment
from pmq.pareto import frontier
from pmq.runs import read_run
from pmq.search import ModelSearch, SearchProblem, bit_pairs, cost_table, pareto_table, resolve_budget
from pmq.sensitivity import compute_sensitivity
from tests.pmq.test_pareto import ilp_best_under


@pytest.fixture(scope="module")
def demo_tables(tmp_path_factory):
    experiment = Experiment("demo", calibration_images=16)
    choices = bit_pairs((2, 4, 8))
    names = experiment.component_names
    images, labels = experiment.calibration_set
    sens = compute_sensitivity(experiment.qv, images, labels, metric="pmq", bits=(2, 4, 8),
                               cache_dir=tmp_path_factory.mktemp("cache"), progress=False)
    omega = {name: {b: sens.omega(name, b) for b in choices} for name in names}
    # Ω is ~1e-6 per choice; rescale (argmins unchanged) so HiGHS' absolute tolerances don't blur it
    top = max(v for row in omega.values() for v in row.values())
    omega = {name: {b: v / top for b, v in row.items()} for name, row in omega.items()}
    workload = experiment.trace.workload(BitAllocation.uniform("W8A8", names))
    params = sum(p.numel() for p in experiment.loaded.model.parameters())
    costs = cost_table(experiment.costs, params, choices, ("bops", "latency"), workload, accelerators.load("bitfusion"))
    return experiment, omega, costs


@pytest.mark.parametrize("objective", ["bops", "latency"])
def test_frontier_choice_equals_ilp_optimum_at_five_budgets(demo_tables, objective):
    experiment, omega, costs = demo_tables
    table = pareto_table(omega, costs, (objective,))
    front = frontier(table, (objective,))
    lo, hi = front.cost_min[0], front.cost_max[0]
    for fraction in (0.05, 0.2, 0.4, 0.6, 0.9):
        budget = lo + fraction * (hi - lo)
        best = front.best_under(budget)
        ilp_omega, _ = ilp_best_under(table, objective, budget)
        assert best.omega == pytest.approx(ilp_omega, rel=1e-9, abs=1e-12)
        assert best.cost <= budget * (1 + 1e-12)


def test_relative_budget_and_feasible_range(demo_tables):
    experiment, omega, costs = demo_tables
    names = experiment.component_names
    w8a8 = costs.total("bops", BitAllocation.uniform("W8A8", names))
    assert resolve_budget(costs, "bops", "0.5x:W8A8", names) == pytest.approx(0.5 * w8a8)
    with pytest.raises(PMQError, match=r"below the cheapest allocation .* use a budget in \["):
        resolve_budget(costs, "bops", "0.01x:W8A8", names)
    with pytest.raises(PMQError, match="above the dearest allocation"):
        resolve_budget(costs, "bops", "3x:W8A8", names)
    # the chosen allocation respects the whole-model budget, fixed costs included
    problem = SearchProblem.build(omega, costs, ("latency",))
    budget = resolve_budget(costs, "latency", "0.8x:W8A8", names)
    chosen = problem.choose("0.8x:W8A8")
    assert costs.total("latency", chosen) <= budget * (1 + 1e-9)
    assert problem.choose(budget) == chosen


def test_one_problem_answers_every_budget(demo_tables):
    """The frontier is built once; each budget picks the least-Ω point whose whole-model cost fits."""
    experiment, omega, costs = demo_tables
    problem = SearchProblem.build(omega, costs, ("bops",))
    front, fixed = problem.frontier, costs.fixed["bops"]
    picked = []
    for text in ("0.1x:W8A8", "0.25x:W8A8", "0.5x:W8A8", "1x:W8A8"):
        budget = problem.resolve(text)
        chosen = problem.choose(text)
        affordable = front.omega[front.costs[:, 0] + fixed <= budget * (1 + 1e-12)]
        assert problem.omega_of(chosen) == pytest.approx(affordable.min(), rel=1e-12)
        assert costs.total("bops", chosen) <= budget * (1 + 1e-12)
        picked.append(problem.omega_of(chosen))
    assert picked == sorted(picked, reverse=True) and picked[0] > picked[-1]
    assert problem.frontier is front  # choosing never rebuilt it
    with pytest.raises(PMQError, match="multiple of a base allocation"):
        problem.choose("0.5x")


def test_search_cli_writes_a_loadable_allocation(capsys, tmp_path):
    out = tmp_path / "search"
    code = main(["search", "--model", "demo", "--accelerator", "bitfusion", "--objective", "bops",
                 "--budget", "0.4x:W8A8", "--bit-choices", "2,4,8", "--calibration-images", "16",
                 "--limit", "64", "--out", str(out), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    run = read_run(out)  # the manifest checks out: every file it lists has its recorded size and hash
    record = run.summary
    assert run.kind == "search" and set(run.files) == {"frontier.csv", "allocation.json"}
    assert run.provenance["torch"] and run.provenance["model_tag"].startswith("pmq-demo-vit@")
    assert record.accelerator_config["name"] == "bitfusion" and record.allocation_file == "allocation.json"
    assert (out / "frontier.csv").read_text().startswith("omega,")
    assert record.budget_unit == "GBOPs" and record.patchwise is None and record.before_patchwise is None
    assert printed["gbops"] == record.measured.gbops and printed["top1"] == record.measured.top1
    assert 0 < printed["gbops"] <= record.budget_value * (1 + 1e-9)  # the whole-model BOPs fit the budget
    # the allocation it wrote is what `pmq simulate --allocation` reads
    assert main(["simulate", "--model", "demo", "--accelerator", "loom", "--allocation", printed["allocation"],
                 "--out", str(tmp_path / "sim"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cycles"] > 0


def test_search_cli_size_objective_runs_patchwise_on_bops(capsys, tmp_path):
    """Token bits change no weight: after a size search the patch-wise step prices BOPs."""
    out = tmp_path / "search"
    code = main(["search", "--model", "demo", "--accelerator", "bitfusion", "--objective", "size",
                 "--budget", "0.6x:W8A8", "--bit-choices", "4,8", "--calibration-images", "16",
                 "--limit", "64", "--patchwise", "--patchwise-budget", "0.9x", "--out", str(out), "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    record = read_run(out).summary
    assert record.patchwise.objective == "bops"
    assert record.patchwise.base_top1 is None  # the search evaluated the base already
    before = record.before_patchwise.gbops
    assert printed["gbops"] == record.measured.gbops <= 0.9 * before * (1 + 1e-9)
    assert record.measured.size_mb == record.before_patchwise.size_mb  # token bits change no weight
    assert record.measured.latency_s == record.patchwise.patchwise_simulated.latency_s
    allocation = BitAllocation.load(printed["allocation"])
    assert allocation.patchwise["layers"]
    assert main(["simulate", "--model", "demo", "--accelerator", "bitfusion", "--allocation", printed["allocation"],
                 "--out", str(tmp_path / "sim"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cycles"] > 0


def test_model_search_builds_once_for_every_budget(tmp_path, monkeypatch):
    """The demo's path: one cost table per run, Ω once per metric, one frontier per (metric, objective)."""
    monkeypatch.setenv("PMQ_CACHE_DIR", str(tmp_path))
    experiment = Experiment("demo", calibration_images=16)
    search = ModelSearch(experiment, accelerators.load("bitfusion"), ("bops", "latency"), bit_choices=(4, 8),
                         sensitivity_images=8, progress=False)
    assert set(search.costs.per_choice) == {"bops", "latency"}
    tight, loose = (search.run("pmq", ("bops",), budget, limit=16) for budget in ("0.3x:W8A8", "0.6x:W8A8"))
    assert tight.frontier is loose.frontier and search.problem("pmq", ("bops",)).frontier is tight.frontier
    assert search.problem("pmq", ("latency",)).frontier is not tight.frontier
    w8a8 = search.costs.total("bops", BitAllocation.uniform("W8A8", experiment.component_names))
    for result, factor in ((tight, 0.3), (loose, 0.6)):
        assert result.summary.budget_value == pytest.approx(factor * w8a8 * 1e-9, rel=1e-12)
        assert search.costs.total("bops", result.allocation) <= factor * w8a8 * (1 + 1e-12)
        assert result.summary.measured.gbops * 1e9 == pytest.approx(search.costs.total("bops", result.allocation),
                                                                     rel=1e-9)
    assert tight.summary.omega > loose.summary.omega
