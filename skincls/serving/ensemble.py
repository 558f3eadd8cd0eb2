"""The fold models of a ``skincls cv`` directory as one model, for ``skincls export CV_DIR``.

Each fold's model serves its own calibrated (and prior-corrected) probabilities; the ensemble's
``_probs`` is their mean, ``_decision`` the shared decision rule (argmax or median) applied to
that mean after the mean of the folds' decision shifts, and ``_logits`` the mean of the folds'
raw outputs (for inspection: the probabilities are not a function of the mean logits). The folds
must share what an app reproduces: regions, classes, backbone, input size, normalisation and
resize policies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from skincls.core.errors import SkinclsError

SHARED = ("backbone", "image_size", "mean", "std", "resize")


def is_cv_dir(path: str | Path) -> bool:
    from skincls.run.artifacts import CV_PLAN

    return (Path(path) / CV_PLAN).is_file()


def load_ensemble(cv_dir: Path, checkpoint: str, rule: str, target_prior):
    """``(FoldEnsemble, fold 0's config, registry, specs, meta)`` of a finished cv directory;
    one clear error for a missing fold or folds that differ in what an app reproduces."""
    from skincls.run.artifacts import CV_PLAN, fold_dir
    from skincls.run.load import load_run

    folds = json.loads((cv_dir / CV_PLAN).read_text(encoding="utf-8"))["folds"]
    loaded = []
    for i in range(folds):
        target = fold_dir(cv_dir, i)
        if not (target / "best").is_dir():
            raise SkinclsError(f"{target}: fold {i} has no served model yet; run skincls cv again")
        loaded.append(load_run(target, checkpoint, rule, target_prior))
    first = loaded[0]
    for i, other in enumerate(loaded[1:], 1):
        for key in SHARED:
            a, b = getattr(first.meta, key), getattr(other.meta, key)
            if a != b:
                raise SkinclsError(f"{fold_dir(cv_dir, i)}: {key} is {b!r}, fold 0 has {a!r}")
        if [(s.name, list(s.classes)) for s in other.specs] != [
            (s.name, list(s.classes)) for s in first.specs
        ]:
            raise SkinclsError(f"{fold_dir(cv_dir, i)}: regions or classes differ from fold 0")
    model = FoldEnsemble([run.model for run in loaded])
    return model, first.config, first.registry, first.specs, first.meta


class FoldEnsemble(torch.nn.Module):
    """Fold models averaged: per region the mean logits, the mean served probabilities and the
    decided class (:meth:`exportable` gives the graph's outputs for the kept regions)."""

    def __init__(self, nets):
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)
        self.region_names = list(nets[0].region_names)
        self.kinds, self.decisions = dict(nets[0].kinds), dict(nets[0].decisions)
        self.folds = len(nets)
        self.eval()

    def mean_shift(self, name: str) -> torch.Tensor | None:
        shifts = [n.log_shifts[name] for n in self.nets]
        present = [s for s in shifts if s is not None]
        if not present:
            return None
        return torch.stack([s if s is not None else present[0] * 0 for s in shifts]).mean(0)

    def forward(self, image: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        from skincls.model.heads import decide

        outputs = [net(image) for net in self.nets]
        served: list[tuple[torch.Tensor, ...]] = []
        for i, name in enumerate(self.region_names):
            logits = torch.stack([o[i] for o in outputs]).mean(0)
            probs = torch.stack(
                [net.serve(name, o[i])[0] for net, o in zip(self.nets, outputs, strict=True)]
            ).mean(0)
            decided = decide(probs, self.decisions[name], self.mean_shift(name))
            served.append((logits, probs, decided))
        return served

    def exportable(self, keep) -> torch.nn.Module:
        return _Outputs(self, [self.region_names.index(r) for r in keep]).eval()


class _Outputs(torch.nn.Module):
    def __init__(self, ensemble: FoldEnsemble, index: list[int]):
        super().__init__()
        self.ensemble, self.index = ensemble, index

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        served = self.ensemble(image)
        return tuple(t for i in self.index for t in served[i])


def ensemble_note(cv_dir: Path, folds: int) -> dict[str, Any]:
    """What the ONNX metadata says about an ensemble (its ``ensemble`` entry)."""
    return {
        "cv_dir": str(Path(cv_dir).resolve()),
        "folds": folds,
        "outputs": "<region>_probs: mean of the folds' served probabilities; <region>_decision: "
        "the decision rule on that mean after the mean of the folds' decision shifts; "
        "<region>_logits: mean of the folds' raw outputs (the probabilities are not a "
        "function of it: read _probs and _decision)",
    }
