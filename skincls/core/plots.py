"""What every plot of classes shares: tick labels that stay readable with hundreds of classes."""

from __future__ import annotations

from typing import Any


def class_ticks(
    ax: Any, classes: list[str], axis: str = "x", labels: list[str] | None = None
) -> None:
    """Tick labels for the classes, thinned to about 40 when there are more."""
    step = max(1, -(-len(classes) // 40))
    ticks = list(range(0, len(classes), step))
    shown = [(labels or classes)[i] for i in ticks]
    size = 7 if step == 1 else 6
    if axis == "x":
        ax.set_xticks(ticks, shown, fontsize=size, rotation=45 if len(classes) > 8 else 0)
    else:
        ax.set_yticks(ticks, shown, fontsize=size)
