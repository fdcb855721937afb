"""First-party plugin: a log-mel filterbank + convolution subsampling + Transformer encoder,
for models trained from scratch (no pre-trained SSL checkpoint needed)."""
