"""Which bits each patch got, layer by layer: the data (:func:`token_bit_maps`) and its file record
(:func:`token_bits_record`, what ``pmq plot`` reads; :func:`pmq.plots.tokens.save_token_bits` draws it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pmq.allocation import BitAllocation
from pmq.errors import PMQError
from pmq.patchwise.spec import OPERANDS, layer_names
from pmq.quant import QuantModel
from pmq.results import TOKEN_BITS_FORMAT


@dataclass
class TokenBitMaps:
    """``bits[i, l, r, c]``: bits of patch (r, c) of image i in layer l for one operand (0 = float);
    ``class_bits[i, l]`` the class token's; ``images`` the inputs (N, C, H, W)."""

    images: np.ndarray
    bits: np.ndarray
    class_bits: np.ndarray
    layers: list[str]
    operand: str
    labels: list[int] | None = None


def token_bit_maps(qv: QuantModel, images: torch.Tensor, allocation: BitAllocation | None = None,
                   operand: str = "q", labels: torch.Tensor | None = None) -> TokenBitMaps:
    """Run ``images`` through ``qv`` (at ``allocation`` if given) and record each patch's bits per layer.

    ``operand`` names the token-row operand to report (``q``, ``k``, ``attn``, ``v``, ``qkv``,
    ``proj``, ``fc1``, ``fc2``); layers without patch-wise show the allocation's bits everywhere.
    """
    if operand not in OPERANDS:
        raise PMQError(f"unknown operand {operand!r}: use one of {', '.join(OPERANDS)}")
    if allocation is not None:
        qv.apply(allocation)
    runtime = qv.patchwise
    model = qv.model
    grid = tuple(model.patch_embed.grid_size)
    prefix = qv.trace.prefix_tokens
    if runtime is not None:
        runtime.records = {}
    was_training = qv.training
    try:
        with torch.no_grad():
            qv.eval()(images)
        records = dict(runtime.records) if runtime is not None else {}
    finally:
        qv.train(was_training)
        if runtime is not None:
            runtime.records = None
    layers = layer_names(qv.component_names())
    bits = np.zeros((len(images), len(layers), *grid), dtype=np.int64)
    class_bits = np.zeros((len(images), len(layers)), dtype=np.int64)
    component, which = OPERANDS[operand]
    for index, layer in enumerate(layers):
        allocated = qv.allocation[f"{layer}.{component}"]
        base = allocated.a if which == "a" else allocated.w
        per_token = np.full((len(images), prefix + grid[0] * grid[1]), base or 0, dtype=np.int64)
        setting = runtime.spec.layers.get(layer) if runtime is not None else None
        applies = runtime is not None and operand in runtime.spec.apply_to and base is not None
        if layer in records and setting is not None and applies and not (operand == "qkv" and index == 0):
            levels = np.array(setting.operand_levels(base))
            per_token = levels[records[layer].cpu().numpy()]
        bits[:, index] = per_token[:, prefix:].reshape(len(images), *grid)
        class_bits[:, index] = per_token[:, 0] if prefix else 0
    return TokenBitMaps(images.detach().cpu().numpy(), bits, class_bits, layers, operand,
                        labels.tolist() if labels is not None else None)


def token_bits_record(maps: TokenBitMaps, captions: Sequence[str] | None = None, allocation: str = "",
                      max_images: int = 4) -> dict[str, Any]:
    """The ``pmq.token_bits/1`` record of the first ``max_images`` images (what ``pmq plot`` reads):
    greyscale pixels scaled to [0, 1] per image, per-layer patch bits, ``captions[label]`` per image."""
    images = np.asarray(maps.images, dtype=float)[:max_images]
    bits = np.asarray(maps.bits)[:max_images]
    entries = []
    for i, image in enumerate(images):
        grey = image.mean(axis=0)
        grey = (grey - grey.min()) / max(float(grey.max() - grey.min()), 1e-12)
        label = maps.labels[i] if maps.labels is not None else None
        caption = captions[label] if captions is not None and label is not None else f"image {i}"
        entries.append({"label": caption, "pixels": np.round(grey, 3).tolist(),
                        "bits": {layer: bits[i, j].astype(int).tolist() for j, layer in enumerate(maps.layers)}})
    return {"format": TOKEN_BITS_FORMAT, "patch_size": int(images.shape[-1] // bits.shape[-1]),
            "operand": maps.operand, "allocation": allocation, "images": entries}
