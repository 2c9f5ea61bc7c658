"""Patch-wise token bit maps: each image with the bits of its patches, at a few layers."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pmq.errors import PMQError
from pmq.plots.allocation import FLOAT_COLOUR, bit_colours
from pmq.plots.style import DOUBLE_COLUMN_IN, SINGLE_COLUMN_IN, new_figure
from pmq.results import TOKEN_BITS_FILE, Results

MAX_IMAGES, MAX_LAYERS = 4, 4
OVERLAY_ALPHA = 0.65
UNDERLAY_RANGE = (0.35, 1.0)  # the image is shown lightened, so the overlay colours stay readable


def _pick_layers(images: list[dict]) -> list[str]:
    """Up to MAX_LAYERS layers, those whose bits differ between patches first (in model order)."""
    layers = list(images[0]["bits"])
    varied = [layer for layer in layers if any(len(np.unique(image["bits"][layer])) > 1 for image in images)]
    if varied:
        return varied[:MAX_LAYERS]
    return [layers[int(i)] for i in np.linspace(0, len(layers) - 1, min(MAX_LAYERS, len(layers))).round()]


def plot_token_bits(results: Results) -> Figure | None:
    """Rows: images. Columns: the image, then its per-patch bits at a few layers (0 bits = float)."""
    data = results.token_bits()
    if data is None:
        return None
    images = data.get("images", [])[:MAX_IMAGES]
    if not images:
        raise PMQError(f"{results.root / TOKEN_BITS_FILE} has no images: rewrite it with at least one")
    layers = _pick_layers(images)
    patch = int(data["patch_size"])
    cmap, norm = bit_colours()
    lo, hi = UNDERLAY_RANGE
    fig = new_figure(DOUBLE_COLUMN_IN if len(layers) > 2 else SINGLE_COLUMN_IN, 0.5 + 1.3 * len(images))
    axes = fig.subplots(len(images), len(layers) + 1, squeeze=False)
    present: set[int] = set()
    for r, image in enumerate(images):
        pixels = np.asarray(image["pixels"], dtype=float)
        height, width = pixels.shape
        axes[r, 0].imshow(pixels, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[r, 0].set_ylabel(image.get("label", f"image {r}"))
        for c, layer in enumerate(layers, start=1):
            bits = np.asarray(image["bits"][layer], dtype=int)
            if bits.shape != (height // patch, width // patch):
                raise PMQError(f"{results.root / TOKEN_BITS_FILE}: layer {layer} of image {r} has "
                               f"{bits.shape} patches, expected {(height // patch, width // patch)} "
                               f"for {height}×{width} pixels and patch size {patch}")
            present.update(int(b) for b in np.unique(bits))
            ax = axes[r, c]
            ax.imshow(lo + (hi - lo) * pixels, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            colours = np.array([[to_rgba(FLOAT_COLOUR) if b == 0 else cmap(norm(b)) for b in row] for row in bits])
            ax.imshow(colours, alpha=OVERLAY_ALPHA, interpolation="nearest",
                      extent=(-0.5, width - 0.5, height - 0.5, -0.5))
            for k in range(1, bits.shape[1]):
                ax.axvline(k * patch - 0.5, color="white", linewidth=0.3)
            for k in range(1, bits.shape[0]):
                ax.axhline(k * patch - 0.5, color="white", linewidth=0.3)
            if r == 0:
                ax.set_title(layer, pad=2)
        if r == 0:
            axes[r, 0].set_title("input", pad=2)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    operand = data.get("operand", "activation")
    handles = [Patch(facecolor=FLOAT_COLOUR if b == 0 else cmap(norm(b)), alpha=OVERLAY_ALPHA,
                     label="float" if b == 0 else f"{b} bits") for b in sorted(present, reverse=True)]
    title = f"{operand} bits per patch" + (f" in {data['allocation']}" if data.get("allocation") else "")
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles) + 1, title=title,
               title_fontsize=7)
    return fig

