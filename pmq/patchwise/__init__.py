"""Patch-wise bit reallocation: per layer and per image, the less important tokens run at fewer bits.

- :mod:`pmq.patchwise.spec`: the settings a ``BitAllocation.patchwise`` holds, validated;
- :mod:`pmq.patchwise.runtime`: token scoring and per-token fake quantization inside the model
  (installed by ``QuantModel.apply``);
- :mod:`pmq.patchwise.hardware`: the grouped GEMMs and vector ops a setting costs on an accelerator;
- :mod:`pmq.patchwise.search`: per-layer (ρ, levels) choices on the exact Pareto frontier;
- :mod:`pmq.patchwise.maps`: which bits each patch got, as data and as a figure.
"""

from pmq.patchwise.hardware import patchwise_ops
from pmq.patchwise.maps import TokenBitMaps, plot_token_bits, token_bit_maps
from pmq.patchwise.runtime import SCORES, assign_groups, install_patchwise
from pmq.patchwise.spec import DEFAULT_APPLY_TO, OPERANDS, LayerSetting, PatchwiseSpec, validate_patchwise

_SEARCH = ("PatchwiseSearch", "patchwise_choices", "run_patchwise")


def __getattr__(name: str):
    """The search needs the whole pipeline (experiment, workload): imported on first use, so that
    ``QuantModel.apply``, which installs the runtime, stays light."""
    if name in _SEARCH:
        from pmq.patchwise import search

        return getattr(search, name)
    raise AttributeError(f"module 'pmq.patchwise' has no attribute {name!r}")


__all__ = [
    "DEFAULT_APPLY_TO", "OPERANDS", "SCORES", "LayerSetting", "PatchwiseSearch", "PatchwiseSpec", "TokenBitMaps",
    "assign_groups", "install_patchwise", "patchwise_choices", "patchwise_ops", "plot_token_bits", "run_patchwise",
    "token_bit_maps", "validate_patchwise",
]
