"""The families of names skincls knows, each defined once as a table.

The ``Literal`` types of the config and region files, the CLI choices, the loss factory's
registry, the metric tables' headings and the docs all derive from these tables: a new loss,
metric, resize policy, source or decision rule is one row here (plus its implementation where the
row says). The ``Literal`` types are built at run time, where pydantic and Typer validate against
them; to a static type checker they are ``str``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal


@dataclass(frozen=True)
class LossFacts:
    """What the rest of skincls needs to know of a loss (its module is :mod:`skincls.model.losses`).

    ``head``: how its head turns logits into probabilities (``softmax``, ``sigmoid`` with the
    bias -log(C - 1) of Cui et al., or ``corn``'s K - 1 conditional outputs); ``ordinal``: uses
    the order of the grades (ordinal regions only); ``reweighting``: weights classes by their
    effective number; ``prior``: shifts logits by the log class prior.
    """

    head: str = "softmax"
    ordinal: bool = False
    reweighting: bool = False
    prior: bool = False


LOSSES: dict[str, LossFacts] = {
    "ce": LossFacts(),
    "focal": LossFacts(),
    "cb_softmax": LossFacts(reweighting=True),
    "cb_sigmoid": LossFacts(head="sigmoid", reweighting=True),
    "cb_focal": LossFacts(head="sigmoid", reweighting=True),
    "logit_adjust": LossFacts(prior=True),
    "balanced_softmax": LossFacts(prior=True),
    "corn": LossFacts(head="corn", ordinal=True),
    "sord": LossFacts(ordinal=True),
    "cdw_ce": LossFacts(ordinal=True),
}
ORDINAL_LOSSES = tuple(n for n, f in LOSSES.items() if f.ordinal)
"""Losses that use the order of the grades: for ``ordinal: true`` regions only."""
SIGMOID_LOSSES = tuple(n for n, f in LOSSES.items() if f.head == "sigmoid")
ORDINAL_OUTPUT_LOSSES = tuple(n for n, f in LOSSES.items() if f.head == "corn")
REWEIGHTING_LOSSES = tuple(n for n, f in LOSSES.items() if f.reweighting)
PRIOR_LOSSES = tuple(n for n, f in LOSSES.items() if f.prior)


@dataclass(frozen=True)
class MetricFacts:
    """A figure of a region: its table heading, its direction, whether only ordinal regions have
    it and its place among the choices of ``--select`` (None: runs are not selected on it)."""

    short: str
    lower_is_better: bool = False
    ordinal: bool = False
    select_rank: int | None = None


METRIC_TABLE: dict[str, MetricFacts] = {
    "accuracy": MetricFacts("acc"),
    "balanced_accuracy": MetricFacts("bal_acc", select_rank=1),
    "macro_f1": MetricFacts("macro_f1", select_rank=2),
    "ba_f1": MetricFacts("ba_f1", select_rank=0),
    "within1": MetricFacts("within1", ordinal=True, select_rank=4),
    "within2": MetricFacts("within2", ordinal=True),
    "grade_mae": MetricFacts("grade_mae", lower_is_better=True, ordinal=True, select_rank=5),
    "qwk": MetricFacts("qwk", ordinal=True, select_rank=3),
    "corr": MetricFacts("corr", ordinal=True),
}
"""Every figure of a region, in the order of the metric tables."""
SELECTABLE = tuple(
    sorted(
        (n for n, f in METRIC_TABLE.items() if f.select_rank is not None),
        key=lambda n: METRIC_TABLE[n].select_rank or 0,
    )  # type: ignore[arg-type,return-value]
)
ORDINAL_SELECT = tuple(n for n in SELECTABLE if METRIC_TABLE[n].ordinal)
"""Selection metrics that exist for ordinal regions only."""
DEFAULT_SELECT = SELECTABLE[0]
METRICS = tuple(n for n, f in METRIC_TABLE.items() if not f.ordinal)
ORDINAL_METRICS = tuple(n for n, f in METRIC_TABLE.items() if f.ordinal)
ALL_METRICS = METRICS + ORDINAL_METRICS
LOWER_IS_BETTER = tuple(n for n, f in METRIC_TABLE.items() if f.lower_is_better)
SHORT = {n: f.short for n, f in METRIC_TABLE.items()}
"""Column headings of the metric tables."""
BOOTSTRAP_RESAMPLES = 2000
"""Group-bootstrap resamples behind every interval (``--bootstrap``)."""
MIN_SUBGROUP = 30
"""Labels under which a subgroup's figures are marked as too few to read (``--min-subgroup``)."""
NIA_COLUMNS: dict[str, str] = {
    "accuracy": "exact %",
    "within1": "within one %",
    "within2": "within two %",
    "grade_mae": "MAE",
    "corr": "correlation",
}
"""The ordinal figures as the AI Hub data owners report their items, with their headings;
the first three in percent."""

RESIZE_POLICIES: dict[str, str] = {
    "squash": "whole crop, aspect not kept",
    "pad": "whole crop, longer side resized, the rest padded with the mean colour",
    "crop": "shorter side resized, centre square kept (the outer parts of a wide box are lost)",
}
"""How a crop becomes the square network input (steps in :mod:`skincls.data.augment`)."""

SOURCES: dict[str, str] = {
    "auto": "AI Hub label tree, CSV manifest or image folder, whichever DATA is",
    "aihub": "AI Hub label JSON files beside their photos",
    "folder": "one sub-folder per class of one region",
    "csv": "a CSV manifest with path, region and label columns",
}

DECISIONS: dict[str, str] = {
    "argmax": "the most probable class (after the prior-corrected decision rule)",
    "median": "the median grade of the predicted distribution (ordinal regions)",
}

SAMPLERS: dict[str, str] = {
    "none": "every image once an epoch",
    "class_balanced": "each class drawn equally often",
    "sqrt": "each class drawn in proportion to the square root of its count",
}

if TYPE_CHECKING:
    LossName = str
    ResizeName = str
    SourceName = str
    DecisionName = str
    SamplerName = str
    MetricName = str
else:
    LossName = Literal[tuple(LOSSES)]
    ResizeName = Literal[tuple(RESIZE_POLICIES)]
    SourceName = Literal[tuple(SOURCES)]
    DecisionName = Literal[tuple(DECISIONS)]
    SamplerName = Literal[tuple(SAMPLERS)]
    MetricName = Literal[tuple(SELECTABLE)]
