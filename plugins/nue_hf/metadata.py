"""Bookkeeping keys of a saved transformers config: they say nothing about the architecture.

Dropped whenever a config is compared, exported or rebuilt from a dict (the encoders, the
decoders and the released layout), so a file saved by another transformers version or in another
dtype describes the same model.
"""

from __future__ import annotations

HF_METADATA_KEYS = frozenset({"architectures", "torch_dtype", "dtype", "transformers_version", "_name_or_path"})
