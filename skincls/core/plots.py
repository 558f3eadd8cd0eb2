"""What every plot of classes shares: tick labels that stay readable with hundreds of classes
and with class names the plotting font cannot draw (Korean grades, for instance)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


def class_ticks(
    ax: Any, classes: list[str], axis: str = "x", labels: list[str] | None = None
) -> None:
    """Tick labels for the classes, thinned to about 40 when there are more; class numbers
    (0, 1, ...) where the font cannot draw a name (:func:`class_key` says which is which)."""
    step = max(1, -(-len(classes) // 40))
    ticks = list(range(0, len(classes), step))
    names = (labels or classes) if drawable(classes) else [str(i) for i in range(len(classes))]
    shown = [names[i] for i in ticks]
    size = 7 if step == 1 else 6
    if axis == "x":
        ax.set_xticks(ticks, shown, fontsize=size, rotation=45 if len(classes) > 8 else 0)
    else:
        ax.set_yticks(ticks, shown, fontsize=size)


def class_key(classes: list[str]) -> str | None:
    """``0 = name, 1 = name, ...`` when the plots number the classes (their names cannot be
    drawn by any font matplotlib has here); None when the plots show the names."""
    if drawable(classes):
        return None
    return ", ".join(f"{i} = {c}" for i, c in enumerate(classes))


def drawable(texts: list[str]) -> bool:
    """Whether matplotlib's font, with any installed font it can fall back to for these
    characters, draws every character of ``texts``; a font found for them is added to the
    fallback list."""
    chars = frozenset("".join(texts)) - frozenset(" ")
    return not chars or _covered(chars)


@lru_cache(maxsize=64)
def _covered(chars: frozenset[str]) -> bool:
    import matplotlib
    from matplotlib import font_manager, ft2font

    def covers(path: str) -> bool:
        try:
            charmap = ft2font.FT2Font(path).get_charmap()
        except (OSError, RuntimeError):
            return False
        return all(ord(c) in charmap for c in chars)

    default = font_manager.findfont(font_manager.FontProperties())
    if covers(default):
        return True
    for font in font_manager.fontManager.ttflist:
        if "last resort" in font.name.lower():
            continue  # matplotlib's bundled font of placeholder boxes, not letters
        if covers(font.fname):
            families = matplotlib.rcParams["font.sans-serif"]
            if font.name not in families:
                matplotlib.rcParams["font.sans-serif"] = [*families, font.name]
            return True
    return False
