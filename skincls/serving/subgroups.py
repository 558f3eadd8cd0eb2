"""Figures by subgroup (``evaluate --by FIELD``): does the model hold for phone photos, side
angles, older subjects, each skin type?

A field is one of the sample's ``info`` fields (AI Hub: device, angle, gender, age, skin_type,
sensitive; a CSV manifest: any other column) or ``age_band``, the age cut into decades or into
the bands given. Each subgroup gets its count, every figure with its group-bootstrap interval,
and whether it is under the minimum size (shown, never hidden). The subgroup whose mean
balanced accuracy is furthest from the overall figure, among those of at least the minimum size,
is flagged with its gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from skincls.core.bootstrap import Bootstrap
from skincls.core.errors import SkinclsError
from skincls.core.names import MIN_SUBGROUP

NOT_GIVEN = "(not given)"
GAP_METRIC = "balanced_accuracy"


@dataclass(frozen=True)
class SubgroupOptions:
    """Which fields, the age bands' lower edges (empty: decades) and the minimum size."""

    fields: Sequence[str] = ()
    age_bands: Sequence[int] = ()
    min_size: int = MIN_SUBGROUP

    def __post_init__(self) -> None:
        if self.min_size < 1:
            raise SkinclsError(f"--min-subgroup: expected 1 or more, got {self.min_size}")
        edges = list(self.age_bands)
        if edges != sorted(set(edges)):
            raise SkinclsError(
                f"--age-bands: expected increasing ages such as 20,30,40, got "
                f"{','.join(map(str, edges))}"
            )


def parse_ages(text: str | None) -> list[int]:
    """``--age-bands`` text ("20,30,45") as ages; one clear error for anything else."""
    if not text:
        return []
    try:
        return [int(a) for a in text.split(",")]
    except ValueError:
        raise SkinclsError(
            f"--age-bands: expected whole ages separated by commas such as 20,30,45, got {text!r}"
        ) from None


def age_band(age: str | None, edges: Sequence[int]) -> str | None:
    """The band of an age given as text: its decade ("40-49") or, with ``edges``, the band
    between two edges ("30-39", "<20", "60+"); None when the age is missing or not a number."""
    try:
        years = float(age) if age is not None else None
    except ValueError:
        return None
    if years is None or years != years:
        return None
    if not edges:
        low = int(years // 10 * 10)
        return f"{low}-{low + 9}"
    if years < edges[0]:
        return f"<{edges[0]}"
    for low, high in zip(edges, edges[1:], strict=False):
        if years < high:
            return f"{low}-{high - 1}"
    return f"{edges[-1]}+"


def field_values(samples: Sequence[Any], field: str, edges: Sequence[int]) -> list[str | None]:
    """Each sample's value of ``field`` (``age_band`` from ``age``)."""
    if field == "age_band":
        return [age_band(s.field("age"), edges) for s in samples]
    return [s.field(field) for s in samples]


def check_fields(samples: Sequence[Any], fields: Sequence[str], data: str) -> None:
    """One clear error for a field no sample has, naming the fields the data has."""
    have = sorted({k for s in samples for k, _ in s.info})
    if "age" in have:
        have.append("age_band")
    for f in fields:
        wanted = "age" if f == "age_band" else f
        if not any(s.field(wanted) is not None for s in samples):
            if not have:
                raise SkinclsError(
                    f"--by {f}: {data} carries no per-image fields (AI Hub label files have "
                    "device, angle, gender, age, skin_type, sensitive; a CSV manifest has its "
                    "columns other than path, label, region, group, mirror and the box; image "
                    "folders have none)"
                )
            raise SkinclsError(f"--by {f}: no sample of {data} has it; fields: {', '.join(have)}")


def by_field(
    p: dict[str, np.ndarray],
    specs: Sequence[Any],
    samples: Sequence[Any],
    field: str,
    overall: dict[str, Any],
    options: SubgroupOptions,
    bootstrap: Bootstrap,
) -> dict[str, Any]:
    """Every subgroup of ``field`` (predictions ``p`` of the scored regions, ``overall`` their
    figures): ``{"field", "subgroups": [{"value", "n", "small", "regions", "mean",
    "intervals"}], "largest_gap": {"value", "metric", "gap"} | None, "min_size"}``."""
    from skincls.model.inference import metrics_of

    values = field_values(samples, field, options.age_bands)
    groups = [s.group for s in samples]
    row_values = np.array([values[i] or NOT_GIVEN for i in p["index"].tolist()], dtype=object)
    out = []
    for value in sorted(set(row_values.tolist()), key=_order):
        mask = row_values == value
        rows = {k: v[mask] for k, v in p.items()}
        m = metrics_of(rows, list(specs), groups, bootstrap)
        m.pop("bad_indices", None)
        n = int(rows["ok"].astype(bool).sum())
        out.append({"value": value, "n": n, "small": n < options.min_size, **m})
    return {
        "field": field,
        "subgroups": out,
        "largest_gap": _largest_gap(out, overall),
        "min_size": options.min_size,
    }


def _order(value: str) -> tuple[int, float, str]:
    """Numbers and bands by their number, then text; "(not given)" last."""
    if value == NOT_GIVEN:
        return (2, 0.0, value)
    below = value.startswith("<")
    head = value.lstrip("<").split("-")[0].rstrip("+")
    try:
        return (0, float(head) - (0.5 if below else 0.0), value)
    except ValueError:
        return (1, 0.0, value)


def _largest_gap(subgroups: list[dict[str, Any]], overall: dict[str, Any]) -> dict | None:
    base = overall["mean"].get(GAP_METRIC)
    gaps = [
        (s["mean"][GAP_METRIC] - base, s["value"])
        for s in subgroups
        if not s["small"] and s["mean"].get(GAP_METRIC) == s["mean"].get(GAP_METRIC)
    ]
    if base is None or not gaps:
        return None
    gap, value = max(gaps, key=lambda g: abs(g[0]))
    return {"value": value, "metric": GAP_METRIC, "gap": gap}
