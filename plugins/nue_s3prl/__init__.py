"""nue_s3prl: any s3prl upstream (HuBERT, wav2vec 2.0, WavLM, ...) as a nue-asr encoder.

Install with ``pip install "nue-asr[s3prl]"``. Without s3prl the plugin still registers its
encoders, described as unavailable, and building one raises a ``ConfigError`` with that hint.
"""
