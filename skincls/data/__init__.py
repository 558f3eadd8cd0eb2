"""Data: region definitions (YAML plugins), reading AI Hub / CSV / folder sources into samples,
decoding and augmenting crops, splits, samplers, the crop cache (``prepare``) and ``analyze``."""
