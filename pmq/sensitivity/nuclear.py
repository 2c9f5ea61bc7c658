"""Liu et al. 2021 (NeurIPS, "Post-Training Quantization for Vision Transformer"): layers whose
attention map / output feature has a larger nuclear norm get more bits.

Exactly, from one forward over the calibration images (no backward):

    ν_c  = mean over images (and heads) of ‖Y_c‖_*      (sum of singular values)
    Ω(b) = ν_c · ‖Q_b(x) − x‖² / ‖x‖²                    (x: the operand; sums over all images)

where Y_c is the component's output as a matrix per image — tokens × channels for Linear, channels ×
patches for the patch-embedding Conv, tokens × head-dim per head for attn·v — except for q·kᵀ, whose
Y is the attention map softmax(q·kᵀ/√d) per head (the input of attn·v), as in the paper. The head's
output per image is a vector, whose nuclear norm is its Euclidean norm. The relative error puts the
operand's own quantization error on a common scale; ν decides how much that error matters.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from pmq.methods import OKABE_ITO, MethodStyle
from pmq.quant import QuantModel
from pmq.sensitivity.operands import (
    PassCounter,
    capture_outputs,
    chunks,
    is_parameter_operand,
    quantize_operand,
)
from pmq.sensitivity.registry import MetricOutput, register_metric


def nuclear_norms(y: Tensor) -> Tensor:
    """Nuclear norm of each matrix in ``y`` (last two dims; a 2-D ``y`` is one row vector per image)."""
    y = y.unsqueeze(-2) if y.dim() == 2 else y
    return torch.linalg.svdvals(y.float()).sum(dim=-1)


def _attention_map_source(name: str) -> str | None:
    return name.replace("matmul_qk", "matmul_av") if name.endswith("attn.matmul_qk") else None


@register_metric("nuclear", {"batch_size": 64}, version=1,
                 summary="Liu et al. 2021: nuclear norm of the output / attention map × relative error",
                 style=MethodStyle("nuclear norm", "NN", OKABE_ITO["purple"], "v", order=30, linestyle=":"))
def nuclear_metric(qv: QuantModel, images: Tensor, labels: Tensor, bits: list[int], counter: PassCounter,
                   progress: bool, *, batch_size: int) -> MetricOutput:
    components = qv.components()
    names = list(components)
    keys = [(n, op) for n in names for op in ("w", "a")]
    nuclear_sum = dict.fromkeys(names, 0.0)
    nuclear_count = dict.fromkeys(names, 0)
    err_sq = {key: torch.zeros(len(bits), dtype=torch.float64) for key in keys}
    norm_sq = dict.fromkeys(keys, 0.0)
    with torch.no_grad():
        for part in tqdm(chunks(len(images), batch_size), desc="nuclear sensitivity", unit="batch",
                         disable=not progress):
            with qv.recording() as operands, capture_outputs(qv, names) as outputs:
                qv(images[part])
            counter.add_forward(part.stop - part.start)
            for name in names:
                source = _attention_map_source(name)
                y = operands[source].a if source else outputs[name]
                if y.dim() == 4 and components[name].kind == "conv":
                    y = y.flatten(2)  # (B, channels, patches)
                norms = nuclear_norms(y)
                nuclear_sum[name] += float(norms.sum(dtype=torch.float64))
                nuclear_count[name] += norms.numel()
            for name, op in keys:
                x = getattr(operands[name], op)
                if op == "w" and is_parameter_operand(components[name]) and norm_sq[(name, op)]:
                    continue  # a weight shared by all batches: once
                norm_sq[(name, op)] += float(x.pow(2).sum(dtype=torch.float64))
                for i, b in enumerate(bits):
                    err = quantize_operand(components[name], op, x, b) - x
                    err_sq[(name, op)][i] += float(err.pow(2).sum(dtype=torch.float64))
    weights, activations = {}, {}
    nu = {n: nuclear_sum[n] / max(nuclear_count[n], 1) for n in names}
    for name, op in keys:
        rel = err_sq[(name, op)] / max(norm_sq[(name, op)], 1e-30)
        (weights if op == "w" else activations)[name] = {b: nu[name] * float(rel[i]) for i, b in enumerate(bits)}
    return MetricOutput(weights, activations, {"images": len(images), "nuclear_norms": nu})
