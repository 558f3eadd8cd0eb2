"""Probabilities an app can trust: a temperature per head and a decision rule chosen on validation.

After training, each head's temperature T and a bias per output b are fitted on the validation
split by minimising the negative log-likelihood of its labels: bias-corrected temperature
scaling (Alexandari, Kundaje and Shrikumar, "Maximum Likelihood with Bias-Corrected Calibration
is Hard-To-Beat at Label Shift Adaptation", ICML 2020; temperature scaling: Guo et al., ICML
2017). The bias absorbs the difference between the class mix a head was trained under (a
balanced sampler draws rare grades as often as common ones) and the data's own mix, which a
temperature alone cannot. Served probabilities are ``p = probabilities(logits / T + b)``
while logits stay raw: they say how often a grade is really right on data with the data's own
class mix.

Decisions are made on those probabilities: ``argmax`` (the most probable class: the highest
plain accuracy), or the rule chosen on validation, ``argmax(log p - tau * log(prior) +
log(target prior))`` (logit adjustment, Menon et al., ICLR 2021), where ``prior`` is the data's
own class mix (the training split's label counts; calibration has already removed whatever mix
the sampler or the loss trained the head under, so nothing is corrected twice) and ``tau`` in
0..2 is chosen for the run's selection metric (tau 1 with a uniform target is the Bayes rule for
balanced accuracy). An ordinal head with ``decision: median`` takes the median instead of the
argmax of the same corrected distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from skincls.core.errors import SkinclsError
from skincls.core.fileio import atomic_write
from skincls.model.heads import decide, probabilities

ECE_BINS = 15
TAU_GRID = tuple(round(0.1 * i, 1) for i in range(21))
"""The candidate prior-correction strengths, 0 to 2 (ties go to the smaller)."""
RULES = ("selected", "argmax")


def nll(logits: torch.Tensor, labels: torch.Tensor, kind: str, temperature: float = 1.0) -> float:
    p = probabilities(logits, kind, temperature)
    picked = p.gather(1, labels[:, None].long())[:, 0]
    return float(-torch.log(picked.clamp_min(1e-12)).mean())


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> float:
    """The temperature minimising the NLL of ``labels``: a grid over log T in [-3, 3], then a
    golden-section search around the best grid point (NLL is smooth and, for softmax heads,
    convex in 1/T)."""
    if labels.numel() == 0:
        return 1.0

    def f(log_t: float) -> float:
        return nll(logits, labels, kind, math.exp(log_t))

    grid = np.linspace(-3.0, 3.0, 61)
    best = int(np.argmin([f(x) for x in grid]))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    a, b = lo + (1 - g) * (hi - lo), lo + g * (hi - lo)
    fa, fb = f(a), f(b)
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = lo + (1 - g) * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = f(b)
    return float(math.exp((lo + hi) / 2))


def fit_calibration(
    logits: torch.Tensor, labels: torch.Tensor, kind: str
) -> tuple[float, list[float]]:
    """Temperature and per-output bias minimising the NLL of ``labels`` (L-BFGS in float64
    from the best temperature alone, bias 0; for softmax heads the NLL is convex in 1/T and b),
    with standard normal priors on log T and on each bias (a penalty of their squares / 2n):
    negligible against a real validation split, but it keeps a handful of labels from driving
    T to 0 or a bias to infinity, and fixes the bias's free offset."""
    t0 = fit_temperature(logits, labels, kind)
    if labels.numel() == 0:
        return t0, [0.0] * logits.shape[1]
    z = logits.double()
    y = labels[:, None].long()
    inv_t = torch.tensor(1.0 / t0, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([inv_t, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        shifted = z * inv_t + bias
        if kind == "softmax":
            logp = torch.log_softmax(shifted, 1)
        else:
            logp = torch.log(probabilities(shifted, kind).double().clamp_min(1e-12))
        prior = (torch.log(inv_t) ** 2 + (bias**2).sum()) / (2 * len(y))
        loss = -logp.gather(1, y).mean() + prior
        loss.backward()
        return loss

    opt.step(closure)
    if not (torch.isfinite(inv_t) and inv_t > 0 and torch.isfinite(bias).all()):
        return t0, [0.0] * logits.shape[1]
    centred = bias.detach() - bias.detach().mean() if kind == "softmax" else bias.detach()
    return float(1.0 / inv_t.detach()), centred.tolist()


def calibration_figures(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Expected calibration error of the top class (``bins`` equal-width confidence bins,
    weighted by their share of samples), the multi-class Brier score and the NLL; plus the
    bins' confidence, accuracy and count for a reliability diagram."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=int)
    n = len(labels)
    if n == 0:
        return {"ece": math.nan, "brier": math.nan, "nll": math.nan, "bins": []}
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    table: list[list[float | int | None]] = []  # per bin: confidence, accuracy (None: empty), n
    for b in range(bins):
        m = which == b
        if m.any():
            gap = abs(conf[m].mean() - correct[m].mean())
            ece += m.sum() / n * gap
            table.append([float(conf[m].mean()), float(correct[m].mean()), int(m.sum())])
        else:
            table.append([float((edges[b] + edges[b + 1]) / 2), None, 0])  # JSON-safe
    onehot = np.eye(probs.shape[1])[labels]
    return {
        "ece": float(ece),
        "brier": float(((probs - onehot) ** 2).sum(1).mean()),
        "nll": float(-np.log(np.clip(probs[np.arange(n), labels], 1e-12, None)).mean()),
        "bins": table,
    }


def log_shift(prior: Sequence[float], tau: float, target: Sequence[float] | None = None):
    """``-tau * log(prior) + log(target)`` (target: uniform when None), as a float tensor."""
    shift = -tau * torch.log(torch.tensor(prior, dtype=torch.float64).clamp_min(1e-12))
    if target is not None:
        shift = shift + torch.log(torch.tensor(target, dtype=torch.float64).clamp_min(1e-12))
    return shift.float()


def choose_tau(
    probs: torch.Tensor,
    labels: torch.Tensor,
    rule: str,
    prior: Sequence[float],
    classes: Sequence[str],
    ordinal: bool,
    select: str,
) -> tuple[float, dict[float, float]]:
    """The prior-correction strength in ``TAU_GRID`` whose decisions on the (calibrated)
    validation ``probs`` have the best ``select`` figure (ties: the smaller tau), and the
    figure of every candidate."""
    from skincls.core.metrics import region_metrics
    from skincls.core.names import LOWER_IS_BETTER

    y = labels.tolist()
    figures: dict[float, float] = {}
    for tau in TAU_GRID:
        pred = decide(probs, rule, log_shift(prior, tau)).tolist()
        figures[tau] = region_metrics(y, pred, classes, ordinal)[select]
    sign = -1.0 if select in LOWER_IS_BETTER else 1.0
    best = max(TAU_GRID, key=lambda t: (sign * figures[t], -t))
    return best, figures


def parse_target_prior(
    spec: Sequence[str], regions: dict[str, list[str]]
) -> dict[str, list[float]]:
    """``--target-prior`` values: ``REGION=p1,p2,...`` (one per class, any positive scale) or a
    JSON/YAML file mapping region to a list of class shares or to ``{class: share}``."""
    from pathlib import Path

    out: dict[str, list[float]] = {}
    for item in spec:
        if "=" in item and not Path(item).is_file():
            name, text = item.split("=", 1)
            out[name.strip()] = _shares(name.strip(), text.split(","), regions, item)
            continue
        path = Path(item)
        if not path.is_file():
            raise SkinclsError(
                f"--target-prior {item}: expected REGION=p1,p2,... or a JSON/YAML file"
            )
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise SkinclsError(f"--target-prior {path}: not JSON/YAML: {err}") from None
        if not isinstance(data, dict):
            raise SkinclsError(f"--target-prior {path}: expected a mapping of region to shares")
        for name, given in data.items():
            values = given
            if isinstance(given, dict):
                classes = regions.get(str(name), [])
                unknown = [c for c in given if c not in classes]
                if unknown:
                    raise SkinclsError(
                        f"--target-prior {path}: {name}: {unknown[0]!r} is not a class of the "
                        f"region ({', '.join(classes)})"
                    )
                values = [given.get(c, 0.0) for c in classes]
            out[str(name)] = _shares(str(name), values, regions, str(path))
    return out


def _shares(name: str, values: Sequence[Any], regions: dict[str, list[str]], where: str):
    if name not in regions:
        raise SkinclsError(
            f"--target-prior {where}: {name!r} is not a region of the model ({', '.join(regions)})"
        )
    k = len(regions[name])
    try:
        shares = [float(v) for v in values]
    except (TypeError, ValueError):
        raise SkinclsError(f"--target-prior {where}: {name}: expected numbers") from None
    if len(shares) != k or any(not math.isfinite(v) or v < 0 for v in shares) or not sum(shares):
        raise SkinclsError(
            f"--target-prior {where}: {name}: expected {k} non-negative shares (one per class: "
            f"{', '.join(regions[name])}), got {list(values)}"
        )
    total = sum(shares)
    return [v / total for v in shares]


def calibrate(
    model: Any,
    val: dict[str, tuple[torch.Tensor, torch.Tensor]],
    regions: Sequence[Any],
    counts: dict[str, list[int]],
    select: str,
) -> dict[str, dict[str, Any]]:
    """Per head with validation labels: its temperature and bias, the data's class prior (from
    the training split's label ``counts``), the tau of its decision rule, and the validation
    figures before and after (``meta.json``'s ``calibration``). ``val`` maps a head to its raw
    validation logits and labels."""
    out: dict[str, dict[str, Any]] = {}
    for r in regions:
        logits, labels = val.get(r.name, (torch.empty(0, 1), torch.empty(0, dtype=torch.long)))
        if labels.numel() == 0:
            continue
        kind, rule = model.kinds[r.name], model.decisions[r.name]
        temperature, bias = fit_calibration(logits, labels, kind)
        calibrated = probabilities(logits, kind, temperature, torch.tensor(bias))
        n = np.asarray(counts[r.name], dtype=np.float64) + 0.5  # a class absent from training
        prior = (n / n.sum()).tolist()
        tau, figures = choose_tau(calibrated, labels, rule, prior, r.classes, r.ordinal, select)
        y = labels.numpy()
        before = calibration_figures(probabilities(logits, kind).numpy(), y)
        after = calibration_figures(calibrated.numpy(), y)
        out[r.name] = {
            "head": kind,
            "temperature": temperature,
            "bias": bias,
            "prior": prior,
            "tau": tau,
            "select": select,
            "tau_figures": {str(t): v for t, v in figures.items()},
            "val": {
                "n": int(labels.numel()),
                **{f"{k}_before": before[k] for k in ("ece", "brier", "nll")},
                **{f"{k}_after": after[k] for k in ("ece", "brier", "nll")},
            },
        }
    return out


def apply_serving(
    model: Any,
    calibration: dict[str, dict[str, Any]] | None,
    rule: str = "selected",
    target: dict[str, list[float]] | None = None,
) -> dict[str, str]:
    """Set ``model``'s temperatures, biases and decision shifts from a run's ``calibration``
    and the rule asked for: ``selected`` (tau chosen on validation), ``argmax`` (the most
    probable class: the highest plain accuracy), or a ``target`` prior per head (the
    deployment's class mix: the calibrated probabilities moved from the data's mix to it, by
    Bayes' rule). Returns, per head, the rule in words (for ``predict`` and the metadata)."""
    if rule not in RULES:
        raise SkinclsError(f"--rule: expected one of {', '.join(RULES)}, got {rule!r}")
    target = target or {}
    said: dict[str, str] = {}
    for name in model.region_names:
        c = (calibration or {}).get(name)
        if c is None:
            model.temperatures[name], model.log_shifts[name] = 1.0, None
            model.biases[name], model.prior_shifts[name] = None, None
            said[name] = "uncalibrated"
            if name in target:
                raise SkinclsError(
                    f"--target-prior {name}: the run has no calibration for this head (trained "
                    "with --no-calibrate or without validation samples)"
                )
            continue
        model.temperatures[name] = float(c["temperature"])
        bias = c.get("bias")
        model.biases[name] = torch.tensor(bias, dtype=torch.float32) if bias else None
        tau = 0.0 if rule == "argmax" else float(c["tau"])
        model.prior_shifts[name] = None
        plain = "median grade" if model.decisions.get(name) == "median" else "most probable"
        if name in target:
            # Bayes: the calibrated probabilities moved from the data's mix to the target's,
            # then decided as they stand
            model.prior_shifts[name] = log_shift(c["prior"], 1.0, target[name])
            model.log_shifts[name] = None
            said[name] = f"target prior, {plain}"
        elif tau:
            model.log_shifts[name] = log_shift(c["prior"], tau)
            said[name] = f"prior-corrected, tau {tau:g}" + (
                ", median grade" if plain == "median grade" else ""
            )
        else:
            model.log_shifts[name] = None
            said[name] = plain if rule == "argmax" else f"{plain} (tau 0)"
    return said


def calibration_report(model: Any, p: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per head, ECE, Brier and NLL of ``predict_loader(keep_logits=True)`` rows before (T = 1)
    and after calibration, with the reliability bins of both."""
    from skincls.model.inference import head_logits

    out: dict[str, dict[str, Any]] = {}
    for name, (logits, y) in head_logits(p, model.region_names).items():
        labels = y.numpy()
        kind, t, b = model.kinds[name], model.temperatures[name], model.biases[name]
        out[name] = {
            "temperature": t,
            "bias": None if b is None else b.tolist(),
            "before": calibration_figures(probabilities(logits, kind).numpy(), labels),
            "after": calibration_figures(probabilities(logits, kind, t, b).numpy(), labels),
        }
    return out


def reliability_png(name: str, figures: dict[str, Any], path: Any) -> None:
    """:func:`reliability_figure` written to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = reliability_figure(name, figures)
    try:
        atomic_write(path, fig.savefig)
    finally:
        plt.close(fig)


def reliability_figure(name: str, figures: dict[str, Any]) -> Any:
    """A reliability diagram of one head: accuracy against confidence per bin, before and after
    calibration, with the diagonal of perfect calibration and each curve's ECE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=110)
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--", label="perfect")
    for key, color in (("before", "#d62728"), ("after", "#1f77b4")):
        bins = [b for b in figures[key]["bins"] if b[2] > 0]
        label = "raw" if key == "before" else f"calibrated (T {figures['temperature']:.2f})"
        ax.plot(
            [b[0] for b in bins],
            [b[1] for b in bins],
            marker="o",
            color=color,
            label=f"{label} (ECE {figures[key]['ece']:.3f})",
        )
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top class)", ylabel="accuracy")
    ax.set_title(f"{name}: reliability", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig
