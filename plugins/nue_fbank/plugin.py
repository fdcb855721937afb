"""Entry point of the nue_fbank plugin (group ``nue``)."""

from nue_core.hookspecs import hookimpl


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    from nue_fbank.encoder import FbankEncoderOptions, FbankTransformerEncoder

    register("fbank-transformer", FbankTransformerEncoder.from_options, options=FbankEncoderOptions,
             aliases=("fbank", "logmel"),
             description="log-mel filterbank + conv subsampling (4x) + Transformer, trained from scratch; no download")
