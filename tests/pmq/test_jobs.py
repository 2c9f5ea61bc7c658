"""pmq.jobs: the commands' compositions as library calls (typed settings in, typed records out)."""

import pytest

import accelerators
import hwsim
from pmq.allocation import BitAllocation
from pmq.errors import PMQError
from pmq.jobs import ModelSpec, SimulateJob, allocation_for, simulate
from pmq.records import SimulateSummary
from pmq.runs import read_run

TOPOLOGY = "Layer name, M, N, K,\nqkv, 197, 1152, 384,\nfc1, 197, 1536, 384,\n"


def test_simulate_job_writes_the_record_it_returns_with_hwsim_numbers(tmp_path):
    topology = tmp_path / "two.csv"
    topology.write_text(TOPOLOGY)
    run = simulate(SimulateJob("bitfusion", workload=topology, bits="W4A8"), tmp_path / "out")
    expected = hwsim.simulate(hwsim.Workload.from_topology_csv(topology, bits_a=8, bits_b=4),
                              accelerators.load("bitfusion"))
    assert isinstance(run.summary, SimulateSummary) and run.label == "two"
    assert (run.summary.cycles, run.summary.energy_pj, run.summary.ops) == (expected.cycles, expected.energy_pj, 2)
    assert run.summary.allocation == {"uniform": "W4A8"}
    assert read_run(run.folder).summary == run.summary  # what the folder holds is what the call returned


def test_simulate_job_without_a_folder_writes_nothing(tmp_path):
    topology = tmp_path / "two.csv"
    topology.write_text(TOPOLOGY)
    run = simulate(SimulateJob("int8_systolic", workload=topology))
    assert run.folder is None and run.summary.allocation == {"uniform": "W8A8"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.csv"]


@pytest.mark.parametrize(("job", "param"), [
    (SimulateJob("bitfusion"), "model"),
    (SimulateJob("bitfusion", workload="x.csv", allocation_file="a.json"), "allocation_file"),
    (SimulateJob("bitfusion", workload="x.csv", bits="float"), "bits"),
])
def test_simulate_job_names_the_setting_that_is_wrong(tmp_path, job, param):
    with pytest.raises(PMQError) as raised:
        simulate(job, tmp_path / "out")
    assert raised.value.param == param
    assert not (tmp_path / "out").exists()  # the claimed folder is released empty


def test_allocation_for_is_uniform_bits_a_file_or_float(tmp_path):
    names = ["a", "b"]
    assert allocation_for(names, "W4A8").bits == BitAllocation.uniform("W4A8", names).bits
    assert allocation_for(names).bits == BitAllocation.uniform("float", names).bits
    path = tmp_path / "alloc.json"
    BitAllocation.uniform("W2A4", names).save(path)
    assert allocation_for(names, allocation_file=path).bits == BitAllocation.uniform("W2A4", names).bits
    with pytest.raises(PMQError, match="allocation names unknown component 'b'"):
        allocation_for(["a", "c"], allocation_file=path)


def test_simulate_job_of_a_model_prices_its_trace_at_the_bits(tmp_path):
    run = simulate(SimulateJob("stripes", model=ModelSpec("demo"), bits="W8A4"))
    from pmq.models import load_model
    from pmq.trace import trace_model

    loaded = load_model("demo")
    trace = trace_model(loaded.model, loaded.input_size, name=loaded.name)
    expected = hwsim.simulate(trace.workload(BitAllocation.uniform("W8A4", trace.component_names)),
                              accelerators.load("stripes"))
    assert (run.summary.cycles, run.summary.energy_pj, run.label) == (expected.cycles, expected.energy_pj, "demo")
