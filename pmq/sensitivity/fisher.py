"""The PMQ global metric: a second-order estimate of the loss increase, from one backward pass.

For an operand x (a weight, or an input activation) quantized at b bits, Δ_b = Q_b(x) − x, and

    Ω(b) = ½ Σ_i F_ii · Δ_{b,i}²        (fisher="diagonal", the default)

with the empirical Fisher F_ii = E_n[g_{n,i}²], g_n = ∂ℓ_n/∂x the gradient of image n's loss.
It is "global" because g is the gradient of the final loss, not of the layer's own output; it is
"lightweight" because one forward and one backward over the calibration images give every g, and
every candidate b is then priced from the recorded tensors alone (no pass per candidate):

- activations belong to one image, so the gradient of the summed loss *is* the per-image gradient;
  Ω_a(b) = (1/N) Σ_n ½ Σ_j g_{n,j}² Δ_{b,n,j}²;
- Linear/Conv weights are shared: their per-image gradients G_n = Σ_t g^out_{n,t} ⊗ a_{n,t} come
  from the recorded input a and the gradient at the component's output (one batched matmul, no
  extra pass); ``grad_group=k`` sums them over groups of k images first (per-micro-batch Fisher,
  F = (1/N) Σ_m G_m², which adds (k−1)·ḡ² to the per-image estimate).

``fisher="outer"`` keeps the whole per-image rank-1 Fisher g_n g_nᵀ instead of its diagonal:
Ω(b) = (1/N) Σ_n ½ (g_n · Δ_{b,n})², i.e. the errors' actual alignment with the gradient instead of
its expectation under independent errors. ``first_order=True`` adds the first Taylor term
(1/N) Σ_n g_n · Δ_{b,n} (ḡ · Δ_b for shared weights) and clips the sum at 0; it matters when the
float model is not at a minimum of the loss being measured (e.g. trained with label smoothing but
scored by plain cross-entropy), and ``details["signed"]`` keeps the unclipped estimate.
``target`` picks the labels of the loss: the true ones ("label", the empirical Fisher), the float
model's own top-1 ("argmax"), or labels drawn from its softmax ("sampled", a one-sample
Monte-Carlo estimate of the true Fisher, whose quadratic form is the second-order expansion of
the KL divergence between float and quantized predictions).
All terms come from the same products g ⊙ Δ_b, so every option costs one forward and one backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from pmq.errors import PMQError
from pmq.methods import OKABE_ITO, MethodStyle
from pmq.quant import QuantComponent, QuantConv2d, QuantModel
from pmq.sensitivity.operands import (
    PassCounter,
    capture_outputs,
    chunks,
    is_parameter_operand,
    per_sample_loss,
    quant_errors,
)
from pmq.sensitivity.registry import MetricOutput, register_metric

TARGETS = ("label", "argmax", "sampled")
FISHERS = ("diagonal", "outer")
_CHUNK_ELEMENTS = 1 << 24  # per-image weight gradients formed at most ~64 MB at a time


def loss_targets(logits: Tensor, labels: Tensor, target: str, generator: torch.Generator) -> Tensor:
    if target == "label":
        return labels
    if target == "argmax":
        return logits.detach().argmax(dim=-1)
    probs = logits.detach().float().softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def per_group_weight_grads(component: QuantComponent, a: Tensor, g_out: Tensor, group: int) -> Tensor:
    """Σ over each group of ``group`` images of ∂ℓ_n/∂W, shape (B/group, *W.shape), from input and output grad."""
    conv_groups = 1
    if isinstance(component, QuantConv2d):
        cols = F.unfold(a, component.kernel_size, dilation=component.dilation, padding=component.padding,
                        stride=component.stride)  # (B, C·k·k, L), channel-major: conv groups are blocks
        a_rows = cols.transpose(1, 2)  # (B, L, C·k·k)
        g_rows = g_out.flatten(2).transpose(1, 2)  # (B, L, out)
        conv_groups = component.groups
    else:
        a_rows = a.reshape(a.shape[0], -1, a.shape[-1])
        g_rows = g_out.reshape(g_out.shape[0], -1, g_out.shape[-1])
    n_groups = a_rows.shape[0] // group
    if conv_groups > 1:  # each conv group's outputs see only its own input channels (depthwise: one each)
        a_rows = a_rows.reshape(n_groups, -1, conv_groups, a_rows.shape[-1] // conv_groups)
        g_rows = g_rows.reshape(n_groups, -1, conv_groups, g_rows.shape[-1] // conv_groups)
        return torch.einsum("nrgo,nrgi->ngoi", g_rows, a_rows).reshape(n_groups, *component.weight.shape)
    a_rows = a_rows.reshape(n_groups, -1, a_rows.shape[-1])
    g_rows = g_rows.reshape(n_groups, -1, g_rows.shape[-1])
    return (g_rows.transpose(1, 2) @ a_rows).reshape(n_groups, *component.weight.shape)


@dataclass
class _Terms:
    """Per-candidate sums over images: first order Σ g·Δ, diagonal ½ Σ g²Δ², outer ½ Σ_n (g_n·Δ_n)².

    Kept as float64 tensors on the model's device and read once at the end: no host sync per
    candidate (thousands of them on a GPU would cost more than the forward and backward).
    """

    first: Tensor
    diagonal: Tensor
    outer: Tensor

    @classmethod
    def zeros(cls, n: int, device: torch.device) -> _Terms:
        return cls(*(torch.zeros(n, dtype=torch.float64, device=device) for _ in range(3)))

    def add(self, products: Tensor) -> None:
        """``products`` = g ⊙ Δ_b stacked over candidates (dim 0), images (or image groups) along dim 1."""
        per_image = products.flatten(2).sum(dim=2).double()
        self.first += per_image.sum(dim=1)
        self.diagonal += 0.5 * products.pow(2).flatten(1).sum(dim=1).double()
        self.outer += 0.5 * per_image.pow(2).sum(dim=1)


@register_metric(
    "pmq", {"batch_size": 16, "target": "label", "fisher": "diagonal", "first_order": False, "grad_group": 1,
            "seed": 0}, version=3,
    summary="½ Σ F_ii Δ_i², empirical Fisher from one forward/backward; every bit candidate from the same pass",
    style=MethodStyle("PMQ", "PMQ", OKABE_ITO["blue"], "o", order=10, linestyle="-"))
def pmq_metric(qv: QuantModel, images: Tensor, labels: Tensor, bits: list[int], counter: PassCounter,
               progress: bool, *, batch_size: int, target: str, fisher: str, first_order: bool, grad_group: int,
               seed: int) -> MetricOutput:
    if target not in TARGETS:
        raise PMQError(f"unknown target {target!r} for the pmq metric: use one of {', '.join(TARGETS)}")
    if fisher not in FISHERS:
        raise PMQError(f"unknown fisher {fisher!r} for the pmq metric: use one of {', '.join(FISHERS)}")
    n_images = len(images)
    if grad_group < 1 or batch_size % grad_group or n_images % grad_group:
        raise PMQError(f"grad_group={grad_group} must be ≥ 1 and divide both batch_size={batch_size} and "
                       f"the number of images {n_images}")
    components = qv.components()
    names = list(components)
    shared = [n for n in names if is_parameter_operand(components[n])]
    per_image = [(n, "a") for n in names] + [(n, "w") for n in names if n not in shared]
    terms = {key: _Terms.zeros(len(bits), images.device) for key in [(n, "a") for n in names] + [(n, "w") for n in names]}
    weight_errors = {n: quant_errors(components[n], "w", components[n].weight, bits) for n in shared}
    weight_fisher = {n: torch.zeros_like(components[n].weight) for n in shared}
    generator = torch.Generator(images.device).manual_seed(seed)

    for part in tqdm(chunks(n_images, batch_size), desc="pmq sensitivity", unit="batch", disable=not progress):
        x = images[part].detach().clone().requires_grad_(True)
        with qv.recording() as operands, capture_outputs(qv, shared) as outputs:
            logits = qv(x)
        loss = per_sample_loss(logits, loss_targets(logits, labels[part], target, generator)).sum()
        tensors = [getattr(operands[n], op) for n, op in per_image] + [outputs[n] for n in shared]
        grads = torch.autograd.grad(loss, tensors)
        counter.add_forward(len(x))
        counter.add_backward(len(x))
        with torch.no_grad():
            for (name, op), value, grad in zip(per_image, tensors, grads, strict=False):  # outputs follow
                terms[(name, op)].add(grad * quant_errors(components[name], op, value, bits))
            for name, grad_out in zip(shared, grads[len(per_image):], strict=True):
                _accumulate_weight(components[name], operands[name].a.detach(), grad_out, grad_group,
                                   weight_errors[name], terms[(name, "w")], weight_fisher[name])

    for name in shared:  # the diagonal of the weights' Fisher, (1/N) Σ_m G_m², meets Δ once at the end
        terms[(name, "w")].diagonal = 0.5 * (weight_fisher[name] * weight_errors[name].pow(2)).flatten(1).sum(
            dim=1, dtype=torch.float64)
    tables: dict[str, dict[str, dict[int, float]]] = {"w": {}, "a": {}}
    signed: dict[str, dict[str, dict[str, float]]] = {"weights": {}, "activations": {}}
    for (name, op), t in terms.items():
        second = t.diagonal if fisher == "diagonal" else t.outer
        estimate = ((second + t.first if first_order else second) / n_images).tolist()
        tables[op][name] = {b: max(float(v), 0.0) for b, v in zip(bits, estimate, strict=True)}
        if first_order:
            signed["weights" if op == "w" else "activations"][name] = {str(b): float(v) for b, v in zip(bits, estimate, strict=True)}
    details = {"images": n_images, **({"signed": signed} if first_order else {})}
    ordered = {op: {n: tables[op][n] for n in names} for op in tables}
    return MetricOutput(ordered["w"], ordered["a"], details)


def _accumulate_weight(component: QuantComponent, a: Tensor, grad_out: Tensor, group: int, errors: Tensor,
                       terms: _Terms, fisher_sum: Tensor) -> None:
    """Per-group weight gradients G_m, chunk by chunk: Σ G_m² into ``fisher_sum``, G_m·Δ into ``terms``."""
    per_chunk = max(1, _CHUNK_ELEMENTS // component.weight.numel()) * group
    for part in chunks(a.shape[0], per_chunk):
        grads = per_group_weight_grads(component, a[part], grad_out[part], group)
        fisher_sum += grads.pow(2).sum(dim=0)
        dots = (grads.flatten(1) @ errors.flatten(1).T).double()  # (groups, candidates): G_m · Δ_b
        terms.first += dots.sum(dim=0)
        terms.outer += 0.5 * dots.pow(2).sum(dim=0)
