"""The bottom layer: what every other layer may use and that uses nothing of skincls above it.

Errors, text and CSV/YAML reading in any encoding, atomic files, the train configuration
(``TrainConfig``), metric definitions and their computation, the device/AMP/seed runtime,
``torch.distributed`` helpers, the rich console and the wandb tracker.
"""
