"""Quantization core: fake quantizers, observers, quantized ViT components, calibration.

    qv = quantize_vit(model)                      # deep copy, all components float, per-token ranges
    allocation = BitAllocation.uniform("W4A8", qv.component_names())
    calibrate(qv, images, allocation=allocation)  # static ranges (if any per tensor), weight clipping; applies it
    logits = qv(x)
"""

from pmq.quant.calibrate import calibrate
from pmq.quant.functional import MAX_BITS, MIN_BITS, fake_quant_affine, fake_quant_symmetric, round_ste
from pmq.quant.modules import Operands, QuantAttention, QuantComponent, QuantConv2d, QuantLinear, QuantMatMul
from pmq.quant.observers import DEFAULT_OBSERVER, OBSERVERS, WEIGHT_CLIPPING, Observer
from pmq.quant.quantizers import GRANULARITIES, ActQuantizer, RowBits, WeightQuantizer
from pmq.quant.vit import (
    DEFAULT_GRANULARITY,
    DEFAULT_WEIGHT_CLIPPING,
    ComponentSpec,
    QuantViT,
    component_specs,
    quantize_vit,
)

__all__ = [
    "DEFAULT_GRANULARITY", "DEFAULT_OBSERVER", "DEFAULT_WEIGHT_CLIPPING", "GRANULARITIES", "MAX_BITS", "MIN_BITS", "OBSERVERS",
    "WEIGHT_CLIPPING", "ActQuantizer", "ComponentSpec", "Observer", "Operands", "QuantAttention",
    "QuantComponent", "QuantConv2d", "QuantLinear", "QuantMatMul", "QuantViT", "RowBits", "WeightQuantizer",
    "calibrate", "component_specs", "fake_quant_affine", "fake_quant_symmetric", "quantize_vit", "round_ste",
]
