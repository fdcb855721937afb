"""Entry point of the nue_hf plugin (group ``nue``): registers its encoders, decoders and known architectures."""

from nue_core.hookspecs import hookimpl


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    from nue_hf.encoders import register_encoders as _register

    _register(register)


@hookimpl
def register_decoders(register):  # type: ignore[no-untyped-def]
    from nue_hf.decoders import register_decoders as _register

    _register(register)


@hookimpl
def register_architectures(register):  # type: ignore[no-untyped-def]
    from nue_hf.architectures import register_architectures as _register

    _register(register)


@hookimpl
def register_model_loaders(register):  # type: ignore[no-untyped-def]
    from nue_hf.released import is_released_folder, load_released

    register("nue-asr", is_released_folder, load_released)


@hookimpl
def register_exporters(register):  # type: ignore[no-untyped-def]
    from nue_hf.released_export import export_released

    register("nue-asr", export_released)
