"""First-party plugin: a log-mel filterbank + convolution subsampling + Transformer encoder,
for models trained from scratch (no pre-trained SSL checkpoint needed)."""

from nue_core.torchaudio_guard import guard_torchaudio

# features.py imports transformers.audio_utils, which imports an installed torchaudio unguarded
# (see nue_core.torchaudio_guard).
guard_torchaudio()
