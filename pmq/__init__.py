"""PMQ: patch-wise mixed-precision quantization of Vision Transformers, priced on simulated hardware."""

from pmq.errors import PMQError

__all__ = ["PMQError"]
