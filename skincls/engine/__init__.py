"""The training engine, one concern a module.

- :mod:`~skincls.engine.runtime`: device and AMP choice, seeds, RNG capture/restore, graceful stop.
- :mod:`~skincls.engine.optim`: optimizer and learning-rate schedule from timm's factories.
- :mod:`~skincls.engine.loop`: ``TrainState``, the multi-task loss, ``Engine.train_step`` and
  ``Engine.train_epoch``.
- :mod:`~skincls.engine.callbacks`: what happens at the end of an epoch (history, checkpoints,
  console, wandb, user hooks such as the sweep's pruner).
"""
