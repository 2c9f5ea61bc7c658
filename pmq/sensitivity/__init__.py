"""Sensitivity of each ViT component to quantization: Ω[component][bits], for weights and activations.

    sens = compute_sensitivity(qv, images, labels, metric="pmq")     # 64 calibration images
    sens.omega("blocks.3.mlp.fc1", Bits(w=4, a=8))                   # Ω_w[4] + Ω_a[8]
    table = sensitivity_table(sens, qv.component_names(), [Bits(4, 8), Bits(8, 8)])

Metrics (``METRICS``, by name): ``pmq`` (the PMQ global metric, Fisher-weighted quantization error
from one forward/backward), ``hawq`` (HAWQ-v2 Hutchinson trace), ``nuclear`` (Liu et al. 2021) and
``measured`` (the ground truth: the loss increase, one evaluation per component, operand and bits).
"""

from pmq.sensitivity import fisher, hawq, measured, nuclear  # noqa: F401  (each registers its metric)
from pmq.sensitivity.cache import CACHE_ENV, cache_key, default_cache_dir
from pmq.sensitivity.compute import DEFAULT_BITS, compute_sensitivity, get_metric
from pmq.sensitivity.operands import quantize_operand
from pmq.sensitivity.registry import METRICS, Metric, MetricOutput, register_metric
from pmq.sensitivity.result import Sensitivity, sensitivity_table

__all__ = [
    "CACHE_ENV", "DEFAULT_BITS", "METRICS", "Metric", "MetricOutput", "Sensitivity", "cache_key",
    "compute_sensitivity", "default_cache_dir", "get_metric", "quantize_operand", "register_metric",
    "sensitivity_table",
]
