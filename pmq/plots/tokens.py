"""Patch-wise token bit maps: each image with the bits of its patches, at a few layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pmq.errors import PMQError
from pmq.plots.allocation import FLOAT_COLOUR
from pmq.plots.style import DOUBLE_COLUMN_IN, OKABE_ITO, SINGLE_COLUMN_IN, new_figure, save, style
from pmq.results import TOKEN_BITS_FILE, Results

MAX_IMAGES, MAX_LAYERS = 4, 4
LOW_BITS_ALPHA = 0.85  # patches below the top level are covered; top-level patches show the image
LEVEL_COLOURS = {  # strong hues that stand out on a greyscale image (a sequential map would read as grey)
    7: OKABE_ITO["sky"], 6: OKABE_ITO["sky"], 5: OKABE_ITO["green"], 4: OKABE_ITO["blue"],
    3: OKABE_ITO["orange"], 2: OKABE_ITO["vermillion"], 0: FLOAT_COLOUR,
}


def _pick_layers(images: list[dict], max_layers: int) -> tuple[list[str], int]:
    """Up to ``max_layers`` layers, those whose bits differ between patches first (in model order);
    and how many layers vary in all (0: none does, so evenly spaced layers are shown)."""
    layers = list(images[0]["bits"])
    varied = [layer for layer in layers if any(len(np.unique(image["bits"][layer])) > 1 for image in images)]
    if varied:
        return varied[:max_layers], len(varied)
    return [layers[int(i)] for i in np.linspace(0, len(layers) - 1, min(max_layers, len(layers))).round()], 0


def plot_token_bits(results: Results) -> Figure | None:
    """The token bit maps of a results folder (``None`` when it has none)."""
    data = results.token_bits()
    if data is None:
        return None
    return draw_token_bits(data, str(results.root / TOKEN_BITS_FILE))


def save_token_bits(record: dict, path: str | Path, max_layers: int = MAX_LAYERS) -> Figure:
    """The token-bits figure of one ``pmq.token_bits/1`` record (e.g. straight from
    ``pmq.patchwise.maps.token_bits_record``), saved to ``path`` (format from its suffix)."""
    with style():
        fig = draw_token_bits(record, max_layers=max_layers)
        save(fig, [Path(path)])
    return fig


def draw_token_bits(data: dict, source: str = "token bits", max_images: int = MAX_IMAGES,
                    max_layers: int = MAX_LAYERS) -> Figure:
    """Rows: images. Columns: the image, then its per-patch bits at up to ``max_layers`` layers.

    Read like a token-pruning figure: patches that keep the top bit-width show the image, patches
    moved to fewer bits are covered by their level's colour (float patches, 0 in the record, grey),
    so where the high bits go stays legible at a glance even on 7×7 patches. ``data`` is a
    ``pmq.token_bits/1`` record; ``source`` names it in error messages.
    """
    images = data.get("images", [])[:max_images]
    if not images:
        raise PMQError(f"{source} has no images: rewrite it with at least one")
    layers, varied = _pick_layers(images, max_layers)
    patch = int(data["patch_size"])
    grids = [[_bit_grid(source, image, r, layer, patch) for layer in layers] for r, image in enumerate(images)]
    present = sorted({int(b) for row in grids for grid in row for b in np.unique(grid)}, reverse=True)
    top = max(present)

    def colour(b: int) -> tuple[float, float, float, float]:
        return to_rgba(LEVEL_COLOURS.get(b, OKABE_ITO["purple"]))

    fig_width = DOUBLE_COLUMN_IN if len(layers) > 2 else SINGLE_COLUMN_IN
    fig = new_figure(fig_width, 0.5 + fig_width / (len(layers) + 1) * 1.05 * len(images))
    axes = fig.subplots(len(images), len(layers) + 1, squeeze=False)
    for r, image in enumerate(images):
        pixels = np.asarray(image["pixels"], dtype=float)
        height, width = pixels.shape
        axes[r, 0].imshow(pixels, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[r, 0].set_ylabel(image.get("label", f"image {r}"))
        for c, (layer, bits) in enumerate(zip(layers, grids[r], strict=True), start=1):
            ax = axes[r, c]
            ax.imshow(pixels, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            cover = np.array([[(0.0, 0.0, 0.0, 0.0) if b == top else (*colour(b)[:3], LOW_BITS_ALPHA) for b in row]
                              for row in bits])
            ax.imshow(cover, interpolation="nearest", extent=(-0.5, width - 0.5, height - 0.5, -0.5))
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
    handles = [Patch(facecolor="white", edgecolor="0.3", label=f"{top} bits (image shown)" if top else "float")]
    handles += [Patch(facecolor=colour(b), alpha=LOW_BITS_ALPHA, label="float" if b == 0 else f"{b} bits")
                for b in present if b != top]
    title = f"{operand} bits per patch" + (f" in {data['allocation']}" if data.get("allocation") else "")
    if varied > len(layers):
        title += f": the first {len(layers)} of the {varied} layers where they vary ({varied - len(layers)} not shown)"
    elif varied and len(layers) < len(images[0]["bits"]):
        title += f": the {varied} layer{'s' if varied > 1 else ''} where they vary"
    elif not varied:
        title += ": no layer varies between patches"
    fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), title=title, title_fontsize=7)
    return fig


def _bit_grid(source: str, image: dict, index: int, layer: str, patch: int) -> np.ndarray:
    """One image's per-patch bits at ``layer``, checked against the image's size."""
    height, width = np.asarray(image["pixels"]).shape
    bits = np.asarray(image["bits"][layer], dtype=int)
    if bits.shape != (height // patch, width // patch):
        raise PMQError(f"{source}: layer {layer} of image {index} has {bits.shape} "
                       f"patches, expected {(height // patch, width // patch)} for {height}×{width} pixels "
                       f"and patch size {patch}")
    return bits
