"""skincls: per-region facial skin condition classifiers on imbalanced data."""

__version__ = "0.1.0"
