"""First-party plugin: Hugging Face transformers encoders (HuBERT, wav2vec2) and decoders (GPT-NeoX, Llama, any causal LM)."""
