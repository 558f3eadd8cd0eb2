"""What a head's outputs mean: its width, its class probabilities and its decided class.

A head trained with CORN has ``K - 1`` outputs, the logits of the conditional probabilities
P(y > k | y > k - 1); a head trained with a one-vs-rest sigmoid loss (``cb_sigmoid``,
``cb_focal``) has ``K`` logits read through per-class sigmoids, normalised to sum to 1; every
other head has ``K`` logits read through a softmax. The decided class is the argmax of the
probabilities or, for an ordinal head, their median (the grade that minimises the expected
absolute error), after an optional prior correction (:func:`decide`). Training, ``evaluate``,
``predict``, ``explain`` and the exported ONNX graph all go through these functions, so they
agree by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from skincls.core.names import ORDINAL_OUTPUT_LOSSES, SIGMOID_LOSSES

HEAD_KINDS = ("softmax", "sigmoid", "corn")


def head_kind(loss: str) -> str:
    """``corn``, ``sigmoid`` or ``softmax``: how a head trained with ``loss`` turns logits into
    class probabilities."""
    if loss in ORDINAL_OUTPUT_LOSSES:
        return "corn"
    return "sigmoid" if loss in SIGMOID_LOSSES else "softmax"


def head_width(kind: str, num_classes: int) -> int:
    return num_classes - 1 if kind == "corn" else num_classes


def probabilities(
    logits: torch.Tensor,
    kind: str,
    temperature: float = 1.0,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class probabilities (rows sum to 1) from a head's outputs divided by ``temperature``,
    plus ``bias`` (one per output; see :func:`skincls.model.calibration.fit_calibration`).

    Sigmoid: the per-class sigmoids, normalised to sum to 1 (the one-vs-rest probabilities an
    app would otherwise have to renormalise itself). CORN: P(y > k) is the running product of
    the conditional sigmoids, computed as exp(cumsum(log sigmoid)) (exportable to ONNX, which
    has no cumulative product); P(y = k) = P(y > k - 1) - P(y > k), clamped at 0 against
    rounding.
    """
    z = logits.float() / temperature if temperature != 1.0 else logits.float()
    if bias is not None:
        z = z + bias.to(z.device, z.dtype)
    if kind == "sigmoid":  # sigmoid(z_k) / sum_j sigmoid(z_j), stable far from 0
        return torch.softmax(F.logsigmoid(z), dim=1)
    if kind != "corn":
        return torch.softmax(z, dim=1)
    above = torch.exp(torch.cumsum(F.logsigmoid(z), dim=1))
    ones = torch.ones_like(above[:, :1])
    zeros = torch.zeros_like(above[:, :1])
    return (torch.cat([ones, above], 1) - torch.cat([above, zeros], 1)).clamp_min(0.0)


def reweight(probs: torch.Tensor, log_shift: torch.Tensor | None) -> torch.Tensor:
    """``probs`` times ``exp(log_shift)``, renormalised (``probs`` itself when None). With
    ``log_shift = log(target prior) - log(training prior)`` it is Bayes' rule for a new class
    mix: p_target(y | x) is proportional to p(y | x) * target(y) / train(y)."""
    if log_shift is None:
        return probs
    probs = probs * torch.exp(log_shift.to(probs.device))
    return probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-30)


def decide(probs: torch.Tensor, rule: str, log_shift: torch.Tensor | None = None) -> torch.Tensor:
    """The decided class per row: ``argmax``, or ``median`` (the smallest class whose cumulative
    probability reaches 0.5), of ``probs`` reweighted by ``log_shift`` (:func:`reweight`). The
    selected rule's prior correction is ``log_shift = -tau * log(train prior)``; for a softmax
    head its argmax is ``argmax(logits + log_shift)``."""
    probs = reweight(probs, log_shift)
    if rule == "median":
        below = (torch.cumsum(probs, dim=1) < 0.5).sum(dim=1)
        return below.clamp_max(probs.shape[1] - 1)
    return probs.argmax(dim=1)


def head_semantics(
    regions: Sequence[Any], default_loss: str, default_decision: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Per region, its head kind and decision rule: the region's own ``loss:``/``decision:`` or
    the run's; a nominal region always decides by argmax."""
    from skincls.model.losses import loss_of

    kinds = {r.name: head_kind(loss_of(r, default_loss)) for r in regions}
    decisions = {
        r.name: (r.decision or default_decision) if r.ordinal else "argmax" for r in regions
    }
    return kinds, decisions


def check_ordinal_use(
    regions: Sequence[Any], loss: str, select: str, decision: str = "argmax"
) -> None:
    """Ordinal losses, ordinal selection metrics and the median decision need ordinal regions:
    one clear error naming the regions that are not, before anything is written."""
    from skincls.core.errors import SkinclsError
    from skincls.core.names import ORDINAL_LOSSES, ORDINAL_SELECT

    nominal = [r.name for r in regions if not r.ordinal]
    if select in ORDINAL_SELECT and nominal:
        raise SkinclsError(
            f"--select {select}: defined for ordinal regions only, and {', '.join(nominal)} "
            "is not ordinal ('ordinal: true' in its region file); use balanced_accuracy or "
            "macro_f1, or train the ordinal regions on their own"
        )
    if decision == "median" and not any(r.ordinal for r in regions):
        raise SkinclsError(
            f"--decision median: needs ordered grades, and no region of this run is ordinal "
            f"({', '.join(nominal)}); nominal regions decide by argmax"
        )
    takes_default = [r.name for r in regions if not r.ordinal and r.loss is None]
    if loss in ORDINAL_LOSSES and takes_default:
        raise SkinclsError(
            f"--loss {loss}: needs ordered grades, and {', '.join(takes_default)} is not "
            "ordinal; give it its own 'loss:' in its region file or choose another --loss"
        )
