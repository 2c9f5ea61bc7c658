"""Quantization core: fake quantizers, observers, the quantized wrapper of any traced model, calibration.

    qm = quantize_model(model)                    # deep copy, all components float, per-token ranges
    allocation = BitAllocation.uniform("W4A8", qm.component_names())
    calibrate(qm, images, allocation=allocation)  # static ranges (if any per tensor), weight clipping; applies it
    logits = qm(x)
"""

from pmq.quant.calibrate import calibrate
from pmq.quant.functional import MAX_BITS, MIN_BITS, fake_quant_affine, fake_quant_symmetric, round_ste
from pmq.quant.model import (
    DEFAULT_GRANULARITY,
    DEFAULT_WEIGHT_CLIPPING,
    QuantModel,
    attend,
    quantize_model,
    register_patchwise,
)
from pmq.quant.modules import Operands, QuantComponent, QuantConv2d, QuantLinear, QuantMatMul, apply_mask
from pmq.quant.observers import DEFAULT_OBSERVER, OBSERVERS, WEIGHT_CLIPPING, Observer
from pmq.quant.prefix import reusing_prefixes
from pmq.quant.quantizers import GRANULARITIES, ActQuantizer, RowBits, WeightQuantizer

__all__ = [
    "DEFAULT_GRANULARITY", "DEFAULT_OBSERVER", "DEFAULT_WEIGHT_CLIPPING", "GRANULARITIES", "MAX_BITS", "MIN_BITS",
    "OBSERVERS", "WEIGHT_CLIPPING", "ActQuantizer", "Observer", "Operands", "QuantComponent", "QuantConv2d",
    "QuantLinear", "QuantMatMul", "QuantModel", "RowBits", "WeightQuantizer", "apply_mask", "attend", "calibrate",
    "fake_quant_affine", "fake_quant_symmetric", "quantize_model", "register_patchwise", "reusing_prefixes",
    "round_ste",
]
