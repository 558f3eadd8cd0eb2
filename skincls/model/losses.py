"""Losses for long-tailed classification behind one factory, :func:`create_loss`.

Every loss computes in float32 (safe under AMP) and returns the mean over the samples it is given,
or with ``reduction="none"`` one value per sample (the multi-task loss weighs and sums those);
class weights and log-priors come from the ORIGINAL training counts and live in buffers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from skincls.core.imbalance import class_balanced_weights
from skincls.core.names import LOSSES


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


class CORN(_PerSample):
    """Conditional ordinal regression: K - 1 binary tasks P(y > k | y > k - 1), task k trained on
    the samples with y >= k. Shi, Cao and Raschka, "Deep Neural Networks for Rank-Consistent
    Ordinal Regression Based On Conditional Probabilities", Pattern Anal. Appl. 2023 (arXiv 2021).

    Per sample, the binary cross-entropies of its tasks (k = 0 .. min(y, K - 2)) are summed; the
    reference code instead divides the batch's sum by the number of task examples.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        z = logits.float()
        k = torch.arange(z.shape[1], device=z.device)
        in_task = (target[:, None] >= k).float()
        above = (target[:, None] > k).float()
        bce = F.binary_cross_entropy_with_logits(z, above, reduction="none")
        return self.reduce((bce * in_task).sum(1))


class SORD(_PerSample):
    """Soft ordinal labels: cross-entropy against q_k proportional to exp(-(k - y)^2).
    Díaz and Marathe, "Soft Labels for Ordinal Regression", CVPR 2019."""

    soft: torch.Tensor

    def __init__(self, num_classes: int, reduction: str = "mean"):
        super().__init__(reduction)
        k = torch.arange(num_classes, dtype=torch.float32)
        self.register_buffer("soft", torch.softmax(-((k[None, :] - k[:, None]) ** 2), dim=1))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        return self.reduce(-(self.soft[target] * log_p).sum(1))


class ClassDistanceWeightedCE(_PerSample):
    """CDW-CE: -sum_k |k - y|^alpha log(1 - p_k), alpha = 2 (the squared distance QWK weighs by).
    Polat et al., "Class Distance Weighted Cross-Entropy Loss for Ulcerative Colitis Severity
    Estimation", MIUA 2022."""

    distance: torch.Tensor

    def __init__(self, num_classes: int, alpha: float = 2.0, reduction: str = "mean"):
        super().__init__(reduction)
        k = torch.arange(num_classes, dtype=torch.float32)
        self.register_buffer("distance", (k[None, :] - k[:, None]).abs() ** alpha)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(logits.float(), dim=1)
        log_rest = torch.log1p(-p.clamp(max=1 - 1e-7))
        return self.reduce(-(self.distance[target] * log_rest).sum(1))


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
    if name not in LOSS_FACTORIES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    a = LossArgs(list(counts), beta, gamma, label_smoothing, tau, reduction)
    return LOSS_FACTORIES[name](a)


@dataclass(frozen=True)
class LossArgs:
    counts: list[int]
    beta: float
    gamma: float
    label_smoothing: float
    tau: float
    reduction: str


LOSS_FACTORIES: dict[str, Callable[[LossArgs], nn.Module]] = {
    "ce": lambda a: CrossEntropy(a.label_smoothing, a.reduction),
    "focal": lambda a: SoftmaxFocal(a.gamma, a.reduction),
    "cb_softmax": lambda a: ClassBalancedSoftmax(
        class_balanced_weights(a.counts, a.beta), a.label_smoothing, a.reduction
    ),
    "cb_sigmoid": lambda a: ClassBalancedFocal(
        class_balanced_weights(a.counts, a.beta), 0.0, a.reduction
    ),
    "cb_focal": lambda a: ClassBalancedFocal(
        class_balanced_weights(a.counts, a.beta), a.gamma, a.reduction
    ),
    "logit_adjust": lambda a: LogitAdjusted(a.counts, a.tau, a.reduction),
    "balanced_softmax": lambda a: LogitAdjusted(a.counts, 1.0, a.reduction),
    "corn": lambda a: CORN(a.reduction),
    "sord": lambda a: SORD(len(a.counts), a.reduction),
    "cdw_ce": lambda a: ClassDistanceWeightedCE(len(a.counts), reduction=a.reduction),
}
"""The registry behind :func:`create_loss`: one row per loss of :data:`skincls.core.names.LOSSES`."""
assert set(LOSS_FACTORIES) == set(LOSSES), "every loss named in skincls.core.names has a factory"
