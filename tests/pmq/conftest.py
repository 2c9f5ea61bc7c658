"""Shared fixtures for the pmq tests: small seeded ViTs (no checkpoint or data needed)."""

from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from pmq.models import create_demo_vit

TINY_VIT_ARGS = dict(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=16, depth=1,
                     num_heads=2, mlp_ratio=2.0)
"""4 patches + class token = 5 tokens, head dim 8: small enough to count costs by hand."""


@pytest.fixture
def tiny_vit_args() -> dict:
    return dict(TINY_VIT_ARGS)


@pytest.fixture
def tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(**TINY_VIT_ARGS).eval()


@pytest.fixture(scope="module")
def demo_vit() -> VisionTransformer:
    """The demo architecture with seeded random weights (the trained checkpoint is not needed here)."""
    torch.manual_seed(0)
    return create_demo_vit().eval()
