"""Class-balanced weights from effective numbers of samples (Cui et al., CVPR 2019).

Pure Python so that ``skincls analyze`` can show them without importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence


def effective_number(n: int, beta: float) -> float:
    """E = (1 - beta^n) / (1 - beta); beta = 0 gives 1 for any n > 0, beta -> 1 gives n."""
    if n <= 0:
        return 0.0
    if beta >= 1.0:
        return float(n)
    return (1.0 - beta**n) / (1.0 - beta)


def class_balanced_weights(counts: Sequence[int], beta: float) -> list[float]:
    """w_i = 1 / E_i normalised to sum to C over the classes present.

    A class with no sample gets weight 0 (it cannot appear in a loss); the others share C, so the
    average weight of a present class stays near 1 and no inf or NaN can arise.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    raw = [1.0 / effective_number(n, beta) if n > 0 else 0.0 for n in counts]
    total = sum(raw)
    if total == 0:
        return [1.0] * len(counts)
    scale = len(counts) / total
    return [w * scale for w in raw]


def imbalance_ratio(counts: Sequence[int]) -> float | None:
    """max/min over classes with at least one sample; None when fewer than one class is present."""
    present = [n for n in counts if n > 0]
    if not present:
        return None
    return max(present) / min(present)
