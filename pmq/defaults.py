"""Defaults shared by the library, the CLI and the demo, named once (change them here only)."""

from __future__ import annotations

DEFAULT_BIT_CHOICES = (2, 3, 4, 6, 8)
"""Candidate bit-widths of the search: every (w, a) pair of these."""
DEFAULT_CALIBRATION_IMAGES = 256
"""Train images that calibrate the activation ranges."""
DEFAULT_SENSITIVITY_IMAGES = 64
"""Calibration images the sensitivity Ω is measured on (the first ones of the calibration set)."""
FLOAT_BITS_ON_HARDWARE = 16
"""Operand bits a float (unquantized) component is priced at on an accelerator (fp16/bf16 datapath)."""
