"""Entry point of the nue_bridges plugin (group ``nue``)."""

from nue_core.hookspecs import hookimpl


@hookimpl
def register_bridges(register):  # type: ignore[no-untyped-def]
    from nue_bridges.conv import ConvBridge, ConvBridgeOptions
    from nue_bridges.ctc_compress import CTCCompressBridge, CTCCompressOptions
    from nue_bridges.qformer import QFormerBridge, QFormerOptions

    register("conv", ConvBridge.from_options, options=ConvBridgeOptions, aliases=("conv1d",),
             description="strided 1-D convolutions + projection (the paper's bridge); optional CTC head")
    register("qformer", QFormerBridge.from_options, options=QFormerOptions, aliases=("q-former",),
             description="learned queries cross-attending to the speech (BLIP-2 Q-Former): a fixed-length prompt")
    register("ctc-compress", CTCCompressBridge.from_options, options=CTCCompressOptions,
             aliases=("ctc_compress", "ctc"),
             description="CTC head; frames merged by their CTC label (blank dropped): a prompt as long as the speech's tokens")
