"""Which bits each patch got, layer by layer: the data (:func:`token_bit_maps`) and a figure
(:func:`plot_token_bits`, reusable by ``pmq plot``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pmq.allocation import BitAllocation
from pmq.errors import PMQError
from pmq.io import atomic_write
from pmq.patchwise.spec import OPERANDS, layer_names
from pmq.quant import QuantViT

# Okabe–Ito colours (distinguishable with the common colour-vision deficiencies), by bit-width.
BIT_COLOURS = {8: "#0072B2", 7: "#56B4E9", 6: "#009E73", 5: "#F0E442", 4: "#E69F00", 3: "#CC79A7", 2: "#D55E00"}
FLOAT_COLOUR = "#000000"


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


def token_bit_maps(qv: QuantViT, images: torch.Tensor, allocation: BitAllocation | None = None,
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
    prefix = int(getattr(model, "num_prefix_tokens", 1))
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


def plot_token_bits(maps: TokenBitMaps, path: str | Path | None = None, max_images: int = 4,
                    class_names: list[str] | None = None):
    """Grid figure: one row per image, the image then one panel per layer with each patch coloured by
    its bits (Okabe–Ito palette, legend by bit-width) under the image's outline. Saved to ``path``
    (format from its suffix) if given."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n = min(max_images, len(maps.images))
    cols = 1 + len(maps.layers)
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.7 * n + 0.6), squeeze=False)
    present = sorted({int(b) for b in np.unique(maps.bits[:n])}, reverse=True)
    for i in range(n):
        image = maps.images[i].transpose(1, 2, 0)
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-12)
        grey = image.mean(axis=-1)
        label = ""
        if maps.labels is not None:
            label = class_names[maps.labels[i]] if class_names else f"class {maps.labels[i]}"
        axes[i, 0].imshow(grey, cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_ylabel(label or f"image {i}", fontsize=8)
        if i == 0:
            axes[i, 0].set_title("input", fontsize=8)
        for j, layer in enumerate(maps.layers):
            colours = np.array([[_rgb(BIT_COLOURS.get(int(b), FLOAT_COLOUR)) for b in row] for row in maps.bits[i, j]])
            ax = axes[i, j + 1]
            ax.imshow(colours, extent=(0, 1, 1, 0), interpolation="nearest")  # exact palette colours
            height, width = grey.shape
            ax.contour((np.arange(width) + 0.5) / width, (np.arange(height) + 0.5) / height, grey,
                       levels=[0.25], colors="white", linewidths=0.8)  # the image's outline on top
            if i == 0:
                ax.set_title(layer, fontsize=8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [Patch(color=BIT_COLOURS.get(b, FLOAT_COLOUR), label=f"{b} bits" if b else "float") for b in present]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"patch-wise activation bits per patch ({maps.operand} rows; class token always high)", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    if path is not None:
        path = Path(path)
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=150))
    return fig


def _rgb(colour: str) -> tuple[float, float, float]:
    colour = colour.lstrip("#")
    return tuple(int(colour[i:i + 2], 16) / 255 for i in (0, 2, 4))
