"""User-facing errors of hwsim and accelerators: one line saying what is wrong and how to fix it."""

from __future__ import annotations


class HwsimError(ValueError):
    """Base class; the pmq CLI prints ``str(err)`` as one stderr line and exits with code 2."""


class ConfigError(HwsimError):
    """An accelerator description (YAML or dict) is malformed; the message names the key path."""


class UnknownAcceleratorError(HwsimError):
    """A preset name that does not exist; the message lists the available presets."""


class TileError(HwsimError):
    """The smallest legal tile of an op does not fit a (double-buffered) on-chip buffer."""


class WorkloadError(HwsimError):
    """A malformed workload: bad shape, unsupported bits, duplicate or unknown op name."""
