"""Entry point of the nue_s3prl plugin (group ``nue``): registers the s3prl encoders.

Importing this module never imports s3prl, so the plugin loads (and ``nue plugins`` lists its
encoders as unavailable, with the install hint) where s3prl is not installed.
"""

from nue_core.hookspecs import hookimpl


@hookimpl
def register_encoders(register):  # type: ignore[no-untyped-def]
    from nue_s3prl.encoders import register_encoders as _register

    _register(register)
