"""Ground truth: quantize ONE operand of ONE component at b bits, the rest float, and measure the
increase of the loss on the given (held-out) images.

``loss="label"`` (default): the mean cross-entropy with the true labels. ``loss="kl"``: the mean
KL(p_float ‖ p_quantized), i.e. the increase of the log-loss against the float model's own
predictions — the output distortion, which has no first-order term and no sign. Every evaluation
records both; ``loss`` picks the one that becomes Ω.

One evaluation per (component, operand, bits) — 2·C·|bits| forwards over the image set — so it is
the slow reference the cheap metrics are judged against, not a search metric. The cross-entropy
changes are signed (quantization noise can lower the loss, e.g. of a model trained with label
smoothing); Ω clips them at 0 for the Pareto search, and ``details`` keeps the signed values and the
standard error of each (paired over images: std(ℓ_q,n − ℓ_n)/√N) so that callers can tell signal
from noise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from pmq.allocation import Bits
from pmq.errors import PMQError
from pmq.methods import OKABE_ITO, MethodStyle
from pmq.quant import QuantModel
from pmq.sensitivity.operands import PassCounter, chunks, per_sample_loss
from pmq.sensitivity.registry import MetricOutput, register_metric

LOSSES = ("label", "kl")


def _evaluate(qv: QuantModel, images: Tensor, labels: Tensor, batch_size: int,
              counter: PassCounter) -> tuple[Tensor, Tensor]:
    """Per-image cross-entropy and log-probabilities (float64); KL needs the float run's log-probs."""
    losses, log_probs = [], []
    with torch.no_grad():
        for part in chunks(len(images), batch_size):
            logits = qv(images[part])
            losses.append(per_sample_loss(logits, labels[part]).double())
            log_probs.append(logits.double().log_softmax(dim=-1))
    counter.add_forward(len(images))
    return torch.cat(losses), torch.cat(log_probs)


def _mean_and_stderr(values: Tensor) -> tuple[float, float]:
    se = float(values.std()) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean()), se


@register_metric("measured", {"batch_size": 256, "loss": "label"}, version=2,
                 summary="ground truth: loss increase with one operand of one component quantized",
                 style=MethodStyle("measured loss", "meas.", OKABE_ITO["orange"], "P", order=40))
def measured_metric(qv: QuantModel, images: Tensor, labels: Tensor, bits: list[int], counter: PassCounter,
                    progress: bool, *, batch_size: int, loss: str) -> MetricOutput:
    if loss not in LOSSES:
        raise PMQError(f"unknown loss {loss!r} for the measured metric: use one of {', '.join(LOSSES)}")
    names = qv.component_names()
    all_float = qv.allocation  # compute_sensitivity runs metrics with every component float
    float_loss, float_log_probs = _evaluate(qv, images, labels, batch_size, counter)
    records = {key: {"weights": {}, "activations": {}} for key in ("signed", "stderr", "kl", "kl_stderr")}
    jobs = [(name, op, b) for name in names for op in ("weights", "activations") for b in bits]
    try:
        for name, op, b in tqdm(jobs, desc="measured sensitivity", unit="eval", disable=not progress):
            setting = Bits(w=b, a=None) if op == "weights" else Bits(w=None, a=b)
            qv.apply(all_float.replace({name: setting}))
            q_loss, q_log_probs = _evaluate(qv, images, labels, batch_size, counter)
            kl = (float_log_probs.exp() * (float_log_probs - q_log_probs)).sum(dim=-1)
            for (value_key, se_key), values in ((("signed", "stderr"), q_loss - float_loss), (("kl", "kl_stderr"), kl)):
                mean, se = _mean_and_stderr(values)
                records[value_key][op].setdefault(name, {})[str(b)] = mean
                records[se_key][op].setdefault(name, {})[str(b)] = se
    finally:
        qv.apply(all_float)
    source = records["signed" if loss == "label" else "kl"]
    tables = {op: {n: {int(b): max(v, 0.0) for b, v in row.items()} for n, row in source[op].items()}
              for op in ("weights", "activations")}
    details = {"images": len(images), "float_loss": float(float_loss.mean()), **records}
    return MetricOutput(tables["weights"], tables["activations"], details)
