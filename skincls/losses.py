"""Losses for long-tailed classification behind one factory, :func:`create_loss`.

Every loss computes in float32 (safe under AMP) and returns the mean over the samples it is given,
or with ``reduction="none"`` one value per sample (the multi-task loss weighs and sums those);
class weights and log-priors come from the ORIGINAL training counts and live in buffers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, get_args

import torch
import torch.nn.functional as F
from torch import nn

from skincls.config import LossName
from skincls.imbalance import class_balanced_weights

LOSSES: tuple[str, ...] = get_args(LossName)
SIGMOID_LOSSES = ("cb_sigmoid", "cb_focal")
"""Losses whose heads start with the bias -log(C - 1) (Cui et al.)."""
REWEIGHTING_LOSSES = ("cb_softmax", "cb_sigmoid", "cb_focal")
"""Losses that weight classes by their effective number."""
PRIOR_LOSSES = ("logit_adjust", "balanced_softmax")
"""Losses that shift logits by the log class prior."""


class _PerSample(nn.Module):
    """A loss that computes one value per sample and reduces them as ``reduction`` says."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction: expected mean or none, got {reduction!r}")
        self.reduction = reduction

    def reduce(self, per_sample: torch.Tensor) -> torch.Tensor:
        return per_sample if self.reduction == "none" else per_sample.mean()


class CrossEntropy(_PerSample):
    """Softmax cross-entropy with optional label smoothing (Szegedy et al., CVPR 2016)."""

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.reduce(
            F.cross_entropy(
                logits.float(), target, reduction="none", label_smoothing=self.label_smoothing
            )
        )


class SoftmaxFocal(_PerSample):
    """Multi-class focal loss -(1 - p_t)^gamma log p_t.
    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017."""

    def __init__(self, gamma: float = 2.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
        return self.reduce(-((1 - log_p.exp()) ** self.gamma) * log_p)


class ClassBalancedSoftmax(_PerSample):
    """Cross-entropy weighted by w_y = (1 - beta) / (1 - beta^n_y), normalised to sum to C.
    Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019."""

    weight: torch.Tensor

    def __init__(
        self, weights: Sequence[float], label_smoothing: float = 0.0, reduction: str = "mean"
    ):
        super().__init__(reduction)
        self.register_buffer("weight", torch.tensor(weights, dtype=torch.float32))
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(
            logits.float(), target, reduction="none", label_smoothing=self.label_smoothing
        )
        return self.reduce(self.weight[target] * ce)


class ClassBalancedFocal(_PerSample):
    """Class-balanced one-vs-all sigmoid loss with the official code's focal modulator
    exp(-gamma*y*z - gamma*log(1 + exp(-z))); gamma = 0 is the CB sigmoid loss (Cui et al., 2019).

    As in the official code, the loss is summed over classes and divided by the number of samples.
    """

    weight: torch.Tensor

    def __init__(self, weights: Sequence[float], gamma: float = 0.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.register_buffer("weight", torch.tensor(weights, dtype=torch.float32))
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        z = logits.float()
        y = F.one_hot(target, z.shape[1]).float()
        bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
        if self.gamma:
            bce = torch.exp(-self.gamma * y * z - self.gamma * F.softplus(-z)) * bce
        alpha = self.weight[target][:, None]
        return self.reduce((alpha * bce).sum(1))


class LogitAdjusted(_PerSample):
    """Cross-entropy on logits + tau * log(prior); tau = 1 is the balanced softmax.
    Menon et al., ICLR 2021; Ren et al., "Balanced Meta-Softmax", NeurIPS 2020."""

    log_prior: torch.Tensor

    def __init__(self, counts: Sequence[int], tau: float = 1.0, reduction: str = "mean"):
        super().__init__(reduction)
        total = max(sum(counts), 1)
        prior = [max(n / total, 1e-12) for n in counts]
        self.register_buffer("log_prior", torch.tensor([math.log(p) for p in prior]))
        self.tau = tau

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        adjusted = logits.float() + self.tau * self.log_prior
        return self.reduce(F.cross_entropy(adjusted, target, reduction="none"))


def loss_of(region: Any, default: str) -> str:
    """The loss a region trains with: its own ``loss:`` or the run's ``--loss``."""
    return region.loss or default


def create_loss(
    name: str,
    counts: Sequence[int],
    beta: float = 0.999,
    gamma: float = 2.0,
    label_smoothing: float = 0.0,
    tau: float = 1.0,
    reduction: str = "mean",
) -> nn.Module:
    """The loss ``name`` for one region whose training split has ``counts`` samples per class;
    ``reduction="none"`` returns one value per sample."""
    r = reduction
    if name == "ce":
        return CrossEntropy(label_smoothing, r)
    if name == "focal":
        return SoftmaxFocal(gamma, r)
    if name == "cb_softmax":
        return ClassBalancedSoftmax(class_balanced_weights(counts, beta), label_smoothing, r)
    if name == "cb_sigmoid":
        return ClassBalancedFocal(class_balanced_weights(counts, beta), 0.0, r)
    if name == "cb_focal":
        return ClassBalancedFocal(class_balanced_weights(counts, beta), gamma, r)
    if name == "logit_adjust":
        return LogitAdjusted(counts, tau, r)
    if name == "balanced_softmax":
        return LogitAdjusted(counts, 1.0, r)
    raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
