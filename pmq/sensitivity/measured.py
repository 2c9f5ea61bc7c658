"""Ground truth: quantize ONE operand of ONE component at b bits, the rest float, and measure the
increase of the mean cross-entropy on the given (held-out) images.

One evaluation per (component, operand, bits) — 2·C·|bits| forwards over the image set — so it is
the slow reference the cheap metrics are judged against, not a search metric. The loss changes are
signed (quantization noise can lower the loss); Ω clips them at 0 for the Pareto search, and
``details`` keeps the signed values and the standard error of each (paired over images:
std(ℓ_q,n − ℓ_n)/√N) so that callers can tell signal from noise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from pmq.allocation import Bits
from pmq.quant import QuantViT
from pmq.sensitivity.operands import PassCounter, chunks, per_sample_loss
from pmq.sensitivity.registry import MetricOutput, register_metric


def _losses(qv: QuantViT, images: Tensor, labels: Tensor, batch_size: int, counter: PassCounter) -> Tensor:
    out = []
    with torch.no_grad():
        for part in chunks(len(images), batch_size):
            out.append(per_sample_loss(qv(images[part]), labels[part]).double())
    counter.add_forward(len(images))
    return torch.cat(out)


@register_metric("measured", {"batch_size": 256}, version=1,
                 summary="ground truth: loss increase with one operand of one component quantized")
def measured_metric(qv: QuantViT, images: Tensor, labels: Tensor, bits: list[int], counter: PassCounter,
                    progress: bool, *, batch_size: int) -> MetricOutput:
    names = qv.component_names()
    float_bits = qv.allocation  # all float here (compute_sensitivity runs metrics in float mode)
    reference = _losses(qv, images, labels, batch_size, counter)
    signed = {"w": {}, "a": {}}
    stderr = {"w": {}, "a": {}}
    jobs = [(name, op, b) for name in names for op in ("w", "a") for b in bits]
    try:
        for name, op, b in tqdm(jobs, desc="measured sensitivity", unit="eval", disable=not progress):
            setting = Bits(w=b, a=None) if op == "w" else Bits(w=None, a=b)
            qv.apply(float_bits.replace({name: setting}))
            diff = _losses(qv, images, labels, batch_size, counter) - reference
            signed[op].setdefault(name, {})[b] = float(diff.mean())
            se = float(diff.std()) / math.sqrt(len(diff)) if len(diff) > 1 else 0.0
            stderr[op].setdefault(name, {})[b] = se
    finally:
        qv.apply(float_bits)
    clipped = {op: {n: {b: max(v, 0.0) for b, v in row.items()} for n, row in table.items()}
               for op, table in signed.items()}
    details = {"images": len(images), "float_loss": float(reference.mean()),
               "signed": {"weights": _str_keys(signed["w"]), "activations": _str_keys(signed["a"])},
               "stderr": {"weights": _str_keys(stderr["w"]), "activations": _str_keys(stderr["a"])}}
    return MetricOutput(clipped["w"], clipped["a"], details)


def _str_keys(table: dict[str, dict[int, float]]) -> dict[str, dict[str, float]]:
    """JSON object keys are strings: bits as "2", "3", … (as in the result's own tables)."""
    return {name: {str(b): v for b, v in row.items()} for name, row in table.items()}
