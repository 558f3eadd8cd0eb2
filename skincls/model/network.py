"""MultiHeadNet: one timm backbone (``num_classes=0``) and one dropout + linear head per region."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from skincls.core.errors import SkinclsError


def use_hub_offline_when_unreachable(timeout: float = 2.0) -> bool:
    """Put the Hugging Face Hub client in offline mode when the hub cannot be reached, so that
    pretrained weights come from the local cache or fail at once instead of after ~50 s of
    retries. Honours ``HF_HUB_OFFLINE``/``HF_ENDPOINT``; returns True when offline."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname
    try:
        socket.create_connection((host or "huggingface.co", 443), timeout=timeout).close()
        return False
    except OSError:
        constants.HF_HUB_OFFLINE = True
        return True


class MultiHeadNet(nn.Module):
    """``forward`` returns one logits tensor per region, in the order of ``region_names``.

    ``kinds`` (``softmax`` or ``corn`` per region, :mod:`skincls.model.heads`) set each head's width and
    how its outputs become probabilities; ``decisions`` (``argmax`` or ``median``) how
    probabilities become a class. :meth:`predict` applies both.
    """

    def __init__(
        self,
        backbone: str,
        region_names: Sequence[str],
        num_classes: Sequence[int],
        dropout: float = 0.3,
        pretrained: bool = False,
        sigmoid_regions: Sequence[str] = (),
        kinds: dict[str, str] | None = None,
        decisions: dict[str, str] | None = None,
        ordinal_regions: Sequence[str] = (),
    ):
        super().__init__()
        import timm

        from skincls.model.heads import head_width

        if pretrained:
            use_hub_offline_when_unreachable()
        try:
            self.backbone = timm.create_model(backbone, pretrained=pretrained, num_classes=0)
        except RuntimeError as err:
            if "Unknown model" in str(err) or "Invalid model" in str(err):
                raise SkinclsError(f"--backbone {backbone!r}: not a timm model name") from None
            raise
        self.backbone_name = backbone
        self.region_names = list(region_names)
        self.kinds = {n: (kinds or {}).get(n, "softmax") for n in self.region_names}
        self.decisions = {n: (decisions or {}).get(n, "argmax") for n in self.region_names}
        self.grade_heads = [n for n in self.region_names if n in ordinal_regions]
        """Ordinal heads: their decided grade is an output of the exported graph."""
        self.temperatures: dict[str, float] = {n: 1.0 for n in self.region_names}
        """Per head, the temperature its served probabilities use (:mod:`skincls.model.calibration`)."""
        self.biases: dict[str, torch.Tensor | None] = {n: None for n in self.region_names}
        """Per head, the calibration bias added to its logits / temperature (or None)."""
        self.pretrained_match: str | None = None
        """How a ``--pretrained FILE`` was matched to the backbone (:mod:`skincls.model.weights`)."""
        self.log_shifts: dict[str, torch.Tensor | None] = {n: None for n in self.region_names}
        """Per head, the prior correction its decision adds to the log-probabilities."""
        self.prior_shifts: dict[str, torch.Tensor | None] = {n: None for n in self.region_names}
        """Per head, ``log(target prior) - log(training prior)`` when served for a deployment's
        class mix (``--target-prior``): its probabilities are moved by Bayes' rule."""
        width = int(self.backbone.num_features)  # type: ignore[arg-type]
        self.heads = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Dropout(dropout), nn.Linear(width, head_width(self.kinds[name], c))
                )
                for name, c in zip(region_names, num_classes, strict=True)
            }
        )
        for name in sigmoid_regions:
            linear = self.heads[name][1]  # type: ignore[index]
            c = linear.out_features
            nn.init.constant_(linear.bias, -math.log(max(c - 1, 1)))

    @property
    def data_config(self) -> dict:
        """Input size, mean and std of the backbone's pretrained configuration."""
        import timm.data

        return timm.data.resolve_data_config({}, model=self.backbone)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.backbone(x)
        return tuple(self.heads[name](features) for name in self.region_names)

    def predict(
        self, logits: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per region, :meth:`serve` of ``forward``'s logits: the served class probabilities
        and the decided classes."""
        served = [self.serve(n, lg) for n, lg in zip(self.region_names, logits, strict=True)]
        return [p for p, _ in served], [c for _, c in served]

    def serve(self, name: str, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One head's served class probabilities (at its temperature and bias, moved to a
        target prior if one is set) and decided class (its argmax or median after its decision
        shift)."""
        from skincls.model.heads import decide, probabilities, reweight

        p = probabilities(logits, self.kinds[name], self.temperatures[name], self.biases[name])
        p = reweight(p, self.prior_shifts[name])
        return p, decide(p, self.decisions[name], self.log_shifts[name])


def create_model(config: Any, regions: Sequence[Any], pretrained: bool = True) -> MultiHeadNet:
    """The run's MultiHeadNet: ``config.backbone`` with one head per region, weights from the hub
    (``pretrained: hub``), a local file, or none (also with ``pretrained=False``, for a model whose
    weights are loaded next). Sigmoid-family heads get the CB bias init."""
    from skincls.core.names import SIGMOID_LOSSES
    from skincls.model.heads import head_semantics
    from skincls.model.losses import loss_of

    hub = pretrained and config.pretrained == "hub"
    kinds, decisions = head_semantics(regions, config.loss, config.decision)
    try:
        model = MultiHeadNet(
            config.backbone,
            [r.name for r in regions],
            [r.num_classes for r in regions],
            dropout=config.dropout,
            pretrained=hub,
            sigmoid_regions=[r.name for r in regions if loss_of(r, config.loss) in SIGMOID_LOSSES],
            kinds=kinds,
            decisions=decisions,
            ordinal_regions=[r.name for r in regions if r.ordinal],
        )
    except SkinclsError:
        raise
    except Exception as err:
        if hub:
            raise SkinclsError(
                f"--backbone {config.backbone}: cannot get pretrained weights from the hub "
                f"({str(err).split('.')[0][:160]}); pass --pretrained FILE for a local weights "
                "file or --no-pretrained"
            ) from None
        raise
    if pretrained and config.pretrained not in ("hub", "none"):
        from skincls.model.weights import load_backbone_weights, resolve_packaged

        path = resolve_packaged(config.pretrained, config.backbone)
        model.pretrained_match = load_backbone_weights(model, path)
    return model
