"""Loading a finished run for serving: one :func:`load_run` used by every serving command
(evaluate, predict, export, explain, report) and by the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from skincls.core.errors import SkinclsError
from skincls.run.artifacts import CheckpointMeta


class LoadedRun(NamedTuple):
    """A run's model with one checkpoint's weights, in eval mode and serving its calibration,
    with the run's config, region registry and specs (head order) and the checkpoint's meta
    (``meta.resize`` and ``meta.serving`` added: per head, the resize policy and the
    served decision)."""

    model: Any
    config: Any
    registry: Any
    specs: list[Any]
    meta: CheckpointMeta


def load_run(
    run_dir: str | Path,
    checkpoint: str = "best",
    rule: str = "selected",
    target_prior: Sequence[str] = (),
) -> LoadedRun:
    """The run in ``run_dir`` with its ``checkpoint`` (``best`` or ``last``), serving the
    checkpoint's calibration with ``rule`` and ``target_prior``
    (:func:`skincls.model.calibration.apply_serving`). A checkpoint that disagrees with the run's
    files is refused before any weight is used."""
    from skincls.model.calibration import apply_serving, parse_target_prior
    from skincls.model.network import create_model
    from skincls.run.checkpoints import check_state_matches
    from skincls.run.rundir import RunDir, check_meta

    run = RunDir.open(run_dir, lock=False)
    if checkpoint not in ("best", "last"):
        raise SkinclsError(f"--checkpoint: expected best or last, got {checkpoint!r}")
    config = run.config()
    registry = run.registry()
    specs = [registry[name] for name in registry.names()]
    ckpt_dir = run.checkpoint(checkpoint)
    weights, meta = run.load_checkpoint(checkpoint)
    check_meta(meta, str(ckpt_dir), config, specs, run.path)
    model = create_model(config, specs, pretrained=False)
    check_state_matches(model.state_dict(), weights, str(ckpt_dir))
    model.load_state_dict(weights)
    model.eval()
    meta.resize = {s.name: s.resize_policy(config.resize) for s in specs}
    target = parse_target_prior(target_prior, {s.name: list(s.classes) for s in specs})
    meta.serving = apply_serving(model, meta.calibration, rule, target)
    return LoadedRun(model, config, registry, specs, meta)
