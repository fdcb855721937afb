"""First-party plugin: Hugging Face transformers encoders (HuBERT, wav2vec2) and decoders (GPT-NeoX, Llama, any causal LM)."""

from nue_core.torchaudio_guard import guard_torchaudio

# Every transformers model module imports an installed torchaudio (via transformers.audio_utils);
# one whose native library does not load would make all of them fail. Settle that first, once,
# whichever nue_hf module is imported (see nue_core.torchaudio_guard).
guard_torchaudio()
