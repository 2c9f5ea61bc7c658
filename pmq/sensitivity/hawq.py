"""HAWQ-v2 (Dong et al., NeurIPS 2020): Ω(b) = |Tr(H)|/n · ‖Q_b(x) − x‖², for weights and activations.

H is the Hessian of the mean calibration loss with respect to the operand x (n elements; for an
activation, x spans all calibration images, so Tr(H)/n is the mean Hessian diagonal per element and
‖Δ‖² the summed error: their product is the per-image estimate). The trace comes from Hutchinson's
estimator, Tr(H) ≈ mean over Rademacher v of vᵀHv, with one Hessian-vector product per sample by
double backward, for every operand at once (one HVP over all operands gives each operand's
vᵀ(Hv) — cross-operand terms have zero mean). Attention runs its explicit q·kᵀ path (the wrapped
model never uses fused SDPA, which has no double backward).

Stopping follows PyHessian's ``trace()``: at most ``max_iter`` (100) samples, stop once the running
mean of the total trace (all operands) moves by less than ``tol`` (1e-3) relative. With more images
than ``batch_size``, every sample runs the forward and both backwards again per batch, as PyHessian's
data-loader mode does. Activation Hessians can be indefinite; |Tr| keeps Ω ≥ 0 (the signed traces
are in ``details["traces"]``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from pmq.errors import PMQError
from pmq.methods import OKABE_ITO, MethodStyle
from pmq.quant import QuantModel
from pmq.sensitivity.operands import (
    PassCounter,
    chunks,
    is_parameter_operand,
    per_sample_loss,
    quantize_operand,
)
from pmq.sensitivity.registry import MetricOutput, register_metric


@register_metric("hawq", {"max_iter": 100, "tol": 1e-3, "seed": 0, "batch_size": 64}, version=1,
                 summary="HAWQ-v2: Hutchinson trace of each operand's Hessian × ‖Q_b(x) − x‖² / n",
                 style=MethodStyle("HAWQ-v2", "HAWQ", OKABE_ITO["vermillion"], "^", order=20, linestyle="--"))
def hawq_metric(qv: QuantModel, images: Tensor, labels: Tensor, bits: list[int], counter: PassCounter,
                progress: bool, *, max_iter: int, tol: float, seed: int, batch_size: int) -> MetricOutput:
    if not isinstance(max_iter, int) or max_iter < 1 or not tol >= 0:
        raise PMQError(f"hawq needs max_iter ≥ 1 and tol ≥ 0, got max_iter={max_iter!r}, tol={tol!r}")
    components = qv.components()
    keys = [(n, "a") for n in components] + [(n, "w") for n in components]
    shared_keys = {(n, "w") for n, c in components.items() if is_parameter_operand(c)}
    n_images = len(images)
    parts = chunks(n_images, batch_size)
    generator = torch.Generator(images.device).manual_seed(seed)
    sq_errors = {key: torch.zeros(len(bits), dtype=torch.float64) for key in keys}
    numel = dict.fromkeys(keys, 0)
    traces = dict.fromkeys(keys, 0.0)
    cached_graph = None

    def build(part: slice, first: bool) -> tuple[list[Tensor], list[Tensor | None]]:
        x = images[part].detach().clone().requires_grad_(True)
        with qv.recording() as operands:
            logits = qv(x)
        loss = per_sample_loss(logits, labels[part]).sum() / n_images
        inputs = [getattr(operands[n], op) for n, op in keys]
        grads = torch.autograd.grad(loss, inputs, create_graph=True, allow_unused=True)
        counter.add_forward(len(x))
        counter.add_backward(len(x))
        if first:  # ‖Δ_b‖² and n, once per batch (shared weights once in all)
            with torch.no_grad():
                for (name, op), value in zip(keys, inputs, strict=True):
                    if (name, op) in shared_keys and numel[(name, op)]:
                        continue  # a weight shared by all batches: once
                    value = value.detach()
                    numel[(name, op)] += value.numel()
                    for i, b in enumerate(bits):
                        err = quantize_operand(components[name], op, value, b) - value
                        sq_errors[(name, op)][i] += float(err.pow(2).sum(dtype=torch.float64))
        return inputs, grads

    running_mean, history = math.nan, []
    bar = tqdm(range(max_iter), desc="hawq Hutchinson", unit="sample", disable=not progress)
    for it in bar:
        sample = dict.fromkeys(keys, 0.0)
        shared_v: dict[tuple[str, str], Tensor] = {}
        for part in parts:
            if cached_graph is not None:
                inputs, grads = cached_graph
            else:
                inputs, grads = build(part, first=it == 0)
                if len(parts) == 1:
                    cached_graph = (inputs, grads)
            live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
            vs = []
            for i in live:
                key = keys[i]
                shared = key in shared_keys
                if shared and key in shared_v:
                    vs.append(shared_v[key])
                    continue
                v = _rademacher(inputs[i], generator)
                if shared:
                    shared_v[key] = v
                vs.append(v)
            hvs = torch.autograd.grad([grads[i] for i in live], [inputs[i] for i in live], grad_outputs=vs,
                                      retain_graph=True, allow_unused=True)
            counter.add_backward(part.stop - part.start)
            for i, v, hv in zip(live, vs, hvs, strict=True):
                if hv is not None:
                    sample[keys[i]] += float((v * hv).sum(dtype=torch.float64))
        for key in keys:
            traces[key] += sample[key]
        history.append(sum(sample.values()))
        new_mean = sum(history) / len(history)
        converged = len(history) > 1 and abs(new_mean - running_mean) / (abs(running_mean) + 1e-6) < tol
        running_mean = new_mean
        bar.set_postfix(trace=f"{new_mean:.4g}")
        if converged:
            break
    samples = len(history)
    mean_traces = {key: traces[key] / samples for key in keys}
    weights, activations = {}, {}
    for (name, op) in keys:
        scale = abs(mean_traces[(name, op)]) / max(numel[(name, op)], 1)
        row = {b: scale * float(sq_errors[(name, op)][i]) for i, b in enumerate(bits)}
        (weights if op == "w" else activations)[name] = row
    details = {"images": n_images, "hutchinson_samples": samples, "total_trace_samples": history,
               "traces": {"weights": {n: mean_traces[(n, "w")] for n in components},
                          "activations": {n: mean_traces[(n, "a")] for n in components}}}
    return MetricOutput(weights, activations, details)


def _rademacher(like: Tensor, generator: torch.Generator) -> Tensor:
    v = torch.randint(0, 2, like.shape, generator=generator, device=like.device, dtype=torch.int8)
    return v.to(like.dtype) * 2 - 1
