"""int8_systolic must reproduce SCALE-Sim 3.0.0's compute cycles (reference from benchmarks/scalesim_peer.py)."""

import json
from pathlib import Path

import accelerators
import hwsim

REFERENCE = Path(__file__).parent / "data" / "scalesim_reference.json"


def test_int8_systolic_compute_cycles_within_1_percent_of_scalesim():
    reference = json.loads(REFERENCE.read_text())
    base = accelerators.load("int8_systolic").config
    assert reference["layers"], "the reference file has no layers"
    for layer in reference["layers"]:
        config = {**base, "array": {**base["array"], "dataflow": layer["dataflow"]}}
        accel = accelerators.from_dict(config, f"int8_systolic/{layer['dataflow']}")
        op = hwsim.Gemm(layer["name"], m=layer["M"], k=layer["K"], n=layer["N"], bits_a=8, bits_b=8)
        ours = hwsim.estimate(op, accel).compute_cycles
        theirs = layer["compute_cycles"]
        assert abs(ours - theirs) <= 0.01 * theirs, (layer["name"], layer["dataflow"], ours, theirs)
