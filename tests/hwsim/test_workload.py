import subprocess
import sys

import pytest

import hwsim


def test_gemm_counts_macs_and_bops_over_instances():
    op = hwsim.Gemm("attn.matmul_qk", 197, 64, 197, 4, 8, count=6, kind="matmul")
    assert op.macs == 197 * 64 * 197 * 6
    assert op.bops == op.macs * 4 * 8
    assert op.out_bits == 4


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"m": 0}, "m must be a positive integer"),
        ({"bits_a": 0}, "bits_a must be an integer in 1..16"),
        ({"bits_b": 17}, "bits_b must be an integer in 1..16"),
        ({"kind": "conv"}, "kind must be one of"),
        ({"count": -1}, "count must be a positive integer"),
    ],
)
def test_gemm_rejects_bad_fields_with_one_line(kwargs, needle):
    fields = {"name": "fc", "m": 4, "k": 4, "n": 4, "bits_a": 8, "bits_b": 8, **kwargs}
    with pytest.raises(hwsim.WorkloadError, match=needle) as err:
        hwsim.Gemm(**fields)
    assert "\n" not in str(err.value) and "'fc'" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_vector_op_kinds_are_a_registry():
    with pytest.raises(hwsim.WorkloadError, match="unknown vector kind"):
        hwsim.VectorOp("x", "relu", 10)
    assert {"softmax", "layernorm", "gelu", "add"} <= set(hwsim.VECTOR_KINDS)
    assert hwsim.VECTOR_KINDS["add"].inputs == 2


def test_workload_orders_ops_topologically_and_checks_names():
    w = hwsim.Workload()
    w.add(hwsim.Gemm("a", 2, 2, 2, 8, 8))
    w.add(hwsim.Gemm("c", 2, 2, 2, 8, 8), after=["a"])
    w.add(hwsim.Gemm("b", 2, 2, 2, 8, 8), after=["a"])
    w.add(hwsim.VectorOp("d", "add", 4), after=["b", "c"])
    assert [op.name for op in w.ops] == ["a", "c", "b", "d"]
    assert len(w) == 4 and w.graph.has_edge("c", "d")
    with pytest.raises(hwsim.WorkloadError, match="already in the workload"):
        w.add(hwsim.Gemm("a", 2, 2, 2, 8, 8))
    with pytest.raises(hwsim.WorkloadError, match="predecessor 'zz' is not in the workload"):
        w.add(hwsim.Gemm("e", 2, 2, 2, 8, 8), after=["zz"])


def test_topology_csv_follows_scalesim_gemm_meaning(tmp_path):
    path = tmp_path / "topo.csv"
    path.write_text("Layer, M, N, K,\nqkv, 197, 1152, 384,\nqk, 197, 197, 64,\n")
    w = hwsim.Workload.from_topology_csv(path, bits_a=4, bits_b=2)
    qkv, qk = w.ops
    assert (qkv.m, qkv.k, qkv.n, qkv.bits_a, qkv.bits_b) == (197, 384, 1152, 4, 2)
    assert list(w.graph.predecessors("qk")) == ["qkv"]
    out = w.to_topology_csv(tmp_path / "again.csv")
    again = hwsim.Workload.from_topology_csv(out, bits_a=4, bits_b=2)
    assert again.ops == w.ops


def test_topology_csv_expands_counts_and_rejects_garbage(tmp_path):
    w = hwsim.Workload()
    w.add(hwsim.Gemm("qk", 3, 4, 5, 8, 8, count=2, kind="matmul"))
    text = w.to_topology_csv(tmp_path / "t.csv").read_text().splitlines()
    assert text == ["Layer, M, N, K,", "qk#0, 3, 5, 4,", "qk#1, 3, 5, 4,"]
    bad = tmp_path / "bad.csv"
    bad.write_text("Layer,M,N,K,\nfc, x, 2, 3,\n")
    with pytest.raises(hwsim.WorkloadError, match="line 2: M,N,K must be integers"):
        hwsim.Workload.from_topology_csv(bad)
    with pytest.raises(hwsim.WorkloadError, match="no such file"):
        hwsim.Workload.from_topology_csv(tmp_path / "missing.csv")


def test_import_is_torch_free():
    code = "import sys, hwsim, accelerators; sys.exit(1 if any(m.split('.')[0] in ('torch', 'pmq') for m in sys.modules) else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
