"""Model registry: the bundled Fashion-MNIST demo ViT, any timm model by name, and any nn.Module a
user function builds (``package.module:function``)."""

from __future__ import annotations

import difflib
import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from pmq.errors import PMQError
from pmq.trace import input_size_of

DEMO_CHECKPOINT = Path(__file__).parent / "assets" / "demo_vit.pt"
DEMO_VIT_ARGS = dict(
    img_size=28, patch_size=4, in_chans=1, num_classes=10,
    embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0, global_pool="token",
)
"""Sized for 28×28 grey images: 7×7 patches + class token = 50 tokens."""


@dataclass
class LoadedModel:
    model: torch.nn.Module
    name: str  # "demo", the timm name or the module:function the user gave
    tag: str  # pinned identity recorded in result files
    input_size: tuple[int, ...] | None = None  # (C, H, W) the model reads


def create_demo_vit() -> VisionTransformer:
    return VisionTransformer(**DEMO_VIT_ARGS)


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def _cached_pretrained(name: str) -> str | None:
    """Path of ``name``'s cached pretrained weights, None when absent but downloadable now; offline
    (``HF_HUB_OFFLINE=1``, or the hub unreachable within a few seconds) and absent is a one-line
    PMQError naming the cache folder, instead of a minute of download retries."""
    import socket

    import huggingface_hub
    from huggingface_hub import constants

    cfg = timm.models.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if repo:
        repo, _, revision = repo.partition("@")
        for filename in _HUB_FILES:
            found = huggingface_hub.try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(found, str):
                return found
        where, host = constants.HF_HUB_CACHE, "huggingface.co"
    else:
        url = getattr(cfg, "url", "") if cfg is not None else ""
        local = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if url and local.is_file():
            return str(local)
        where, host = str(local.parent), (url.split("/")[2] if url.count("/") > 2 else "")
    offline = constants.HF_HUB_OFFLINE or not host
    if not offline:
        try:
            socket.create_connection((host, 443), timeout=3).close()
        except OSError:
            offline = True
    if offline:
        raise PMQError(f"no pretrained weights for {name!r} in the cache {where} and {host or 'no hub'} is "
                       "not reachable (offline): download them on a connected machine into that folder "
                       "(same HF_HOME/TORCH_HOME), or load without pretrained weights", param="pretrained")
    return None


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a checkpoint written by ``pmq train`` ({"model": state_dict}) or a bare state_dict."""
    if not path.is_file():
        raise PMQError(f"checkpoint {path} not found: train the model into it (`pmq train`) or name an "
                       "existing checkpoint", param="checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # random bytes raise UnpicklingError, zip errors, ... (all mean: not a checkpoint)
        raise PMQError(f"checkpoint {path} is not a PyTorch checkpoint ({type(exc).__name__}): pass a file "
                       "written by `pmq train` or torch.save(state_dict)", param="checkpoint") from None
    if not isinstance(state, dict):
        raise PMQError(f"checkpoint {path} holds a {type(state).__name__}, not a state_dict: pass a file "
                       "written by `pmq train` or torch.save(state_dict)", param="checkpoint")
    try:
        model.load_state_dict(state.get("model", state))
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        raise PMQError(f"checkpoint {path} does not fit this model ({str(exc).splitlines()[0]}): "
                       "pass the checkpoint made for it", param="checkpoint") from None


def _user_model(spec: str) -> torch.nn.Module:
    """``package.module:function``: import the module, call the function (no arguments), check it built a module."""
    module_name, _, function = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of the user's code
        raise PMQError(f"model {spec}: cannot import {module_name!r} ({type(exc).__name__}: "
                       f"{(str(exc).splitlines() or [''])[0]}): put its package on PYTHONPATH",
                       param="model") from None
    build = getattr(module, function, None)
    if not callable(build):
        raise PMQError(f"model {spec}: {module_name} has no function {function!r}: "
                       "give package.module:function of a function that returns an nn.Module", param="model")
    try:
        model = build()
    except Exception as exc:  # the user's builder failed
        raise PMQError(f"model {spec}: {function}() failed ({type(exc).__name__}: "
                       f"{(str(exc).splitlines() or [''])[0]}): it must build the model with no arguments",
                       param="model") from None
    if not isinstance(model, torch.nn.Module):
        raise PMQError(f"model {spec}: {function}() returned a {type(model).__name__}, not a torch.nn.Module",
                       param="model")
    return model


def load_model(name: str, checkpoint: str | Path | None = None, pretrained: bool = False,
               input_size: tuple[int, ...] | None = None) -> LoadedModel:
    """Build a model in eval mode: ``demo`` (bundled checkpoint), ``package.module:function`` or a timm name.

    ``input_size`` (C, H, W) overrides what the model states (its patch embedding, else timm's
    ``pretrained_cfg["input_size"]``); a model that states neither needs it to be traced."""
    if name == "demo":
        path = Path(checkpoint) if checkpoint else DEMO_CHECKPOINT
        model = create_demo_vit()
        _load_weights(model, path)
        return LoadedModel(model.eval(), "demo", f"pmq-demo-vit@{file_digest(path)}", input_size or input_size_of(model))
    if ":" in name:
        model = _user_model(name)
        tag = f"{name} (user module)"
    elif name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise PMQError(f"unknown model {name!r}{hint}: use 'demo', a timm model name from timm.list_models() "
                       "or package.module:function")
    else:
        overlay = {"file": _cached_pretrained(name)} if pretrained else None
        try:
            model = timm.create_model(name, pretrained=pretrained, pretrained_cfg_overlay=overlay)
        except Exception as exc:  # timm raises many kinds when weights can't be fetched
            raise PMQError(f"could not load pretrained weights for {name!r} ({type(exc).__name__}): "
                           "put them in timm's cache or load without pretrained weights",
                           param="pretrained") from None
        tag = f"{name}.{model.pretrained_cfg.get('tag') or 'default'}" if pretrained else f"{name} (random init)"
    if checkpoint:
        _load_weights(model, Path(checkpoint))
        tag = f"{name}@{file_digest(Path(checkpoint))}"
    if input_size:  # timm's data config (resize, crop) reads it from here too
        model.pretrained_cfg = {**(getattr(model, "pretrained_cfg", None) or {}), "input_size": tuple(input_size)}
    return LoadedModel(model.eval(), name, tag, input_size or input_size_of(model))
