"""Patch-wise bit reallocation: per layer and per image, the less important tokens run at fewer bits.

- :mod:`pmq.patchwise.spec`: the settings a ``BitAllocation.patchwise`` holds, validated;
- :mod:`pmq.patchwise.runtime`: token scoring and per-token fake quantization inside the model
  (installed by ``QuantModel.apply``);
- :mod:`pmq.patchwise.hardware`: the grouped GEMMs and vector ops a setting costs on an accelerator;
- :mod:`pmq.patchwise.search`: per-layer (ρ, levels) choices on the exact Pareto frontier;
- :mod:`pmq.patchwise.maps`: which bits each patch got, as data and as a results record
  (:func:`pmq.plots.tokens.save_token_bits` draws it).

Import from the modules: this package file imports nothing, so ``BitAllocation.validate`` (which
needs only the spec) does not load torch, the quantizers or the search.
"""
