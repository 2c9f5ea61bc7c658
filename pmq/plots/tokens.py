"""Patch-wise token bit maps: each image with the activation bits of its patches, per layer."""

from __future__ import annotations

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from pmq.errors import PMQError
from pmq.plots.allocation import bit_colours
from pmq.plots.style import DOUBLE_COLUMN_IN, new_figure
from pmq.results import TOKEN_BITS_FILE, Results

MAX_IMAGES, MAX_LAYERS = 4, 4
OVERLAY_ALPHA = 0.6


def _pick_layers(layers: list[str]) -> list[str]:
    if len(layers) <= MAX_LAYERS:
        return layers
    return [layers[int(i)] for i in np.linspace(0, len(layers) - 1, MAX_LAYERS).round()]


def plot_token_bits(results: Results) -> Figure | None:
    """Rows: images. Columns: the image, then its per-patch activation bits at a few layers."""
    data = results.token_bits()
    if data is None:
        return None
    images = data.get("images", [])[:MAX_IMAGES]
    if not images:
        raise PMQError(f"{results.root / TOKEN_BITS_FILE} has no images: rewrite it with at least one")
    layers = _pick_layers(list(images[0]["bits"]))
    patch = int(data["patch_size"])
    cmap, norm = bit_colours()
    fig = new_figure(DOUBLE_COLUMN_IN if len(layers) > 2 else 3.5, 0.35 + 1.25 * len(images))
    axes = fig.subplots(len(images), len(layers) + 1, squeeze=False)
    for r, image in enumerate(images):
        pixels = np.asarray(image["pixels"], dtype=float)
        height, width = pixels.shape
        axes[r, 0].imshow(pixels, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[r, 0].set_ylabel(image.get("label", f"image {r}"))
        for c, layer in enumerate(layers, start=1):
            bits = np.asarray(image["bits"][layer], dtype=float)
            if bits.shape != (height // patch, width // patch):
                raise PMQError(f"{results.root / TOKEN_BITS_FILE}: layer {layer} of image {r} has "
                               f"{bits.shape} patches, expected {(height // patch, width // patch)} "
                               f"for {height}×{width} pixels and patch size {patch}")
            axes[r, c].imshow(pixels, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            overlay = np.ma.masked_equal(np.kron(bits, np.ones((patch, patch))), 0)  # 0 = float: no overlay
            axes[r, c].imshow(overlay, cmap=cmap, norm=norm, alpha=OVERLAY_ALPHA, interpolation="nearest")
            if r == 0:
                axes[r, c].set_title(layer, pad=2)
        if r == 0:
            axes[r, 0].set_title("input", pad=2)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.8, aspect=25, pad=0.01)
    bar.set_ticks(np.arange(norm.boundaries[0] + 0.5, norm.boundaries[-1]))
    operand = data.get("operand", "activation")
    bar.set_label(f"{operand} bits per patch")
    if data.get("allocation"):
        fig.suptitle(f"patch-wise bits of {data['allocation']} ({operand} rows)", fontsize=8)
    bar.outline.set_visible(False)
    return fig
