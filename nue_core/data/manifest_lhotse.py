"""lhotse CutSet manifests (``cuts.jsonl.gz`` / ``cuts.jsonl``): each MonoCut is one utterance.

Each line is turned into a cut by lhotse itself (``lhotse.serialization.deserialize_item``, what
``load_manifest_lazy`` does per line), so a bad line is a problem of its own ``file:line`` and the
rest are still read. A cut becomes an ``Utterance`` of its recording's file, from ``cut.start`` for
``cut.duration`` seconds, with its one supervision's text and speaker; the id is the cut's id.

What nue cannot read as lhotse would is refused per line, naming the field: MixedCuts and MultiCuts,
cuts with no supervision or several, recordings held in memory, URLs or commands (only ``file``
sources), a cut of some channels of a multichannel recording (nue mixes all channels down), and
recording transforms other than resampling (speed and volume changes are lhotse's augmentations).
Audio paths are used as lhotse uses them: a relative path is relative to the working directory.

Needs the optional extra ``lhotse`` (``pip install "nue-asr[lhotse]"``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nue_core.data.manifest_base import ManifestError, Utterance
from nue_core.data.manifest_fields import BadLine, PathResolver, check_text
from nue_core.errors import one_line

CUT_TYPES = ("MonoCut", "MultiCut", "MixedCut", "Cut")
# What cut.from_dict raises for a line that is not a cut of the version it knows.
_DESERIALIZE_ERRORS = (TypeError, KeyError, ValueError, AttributeError, AssertionError, IndexError)


def is_cut(obj: dict) -> bool:
    """Whether a manifest line's object is a serialised lhotse cut."""
    return obj.get("type") in CUT_TYPES or ("recording" in obj and "supervisions" in obj)


def cut_entry(obj: dict, where: str, resolve: PathResolver, require_text: bool) -> Utterance:
    """One CutSet line as an entry; ``BadLine`` names what nue cannot use.

    ``resolve`` is not used: lhotse paths are relative to the working directory, not the manifest.

    Raises:
        ManifestError: lhotse is not installed (the whole file is unreadable, not this line).
    """
    deserialize = _deserializer()
    try:
        cut = deserialize(dict(obj))  # it pops "type": a copy keeps the caller's object whole
    except _DESERIALIZE_ERRORS as exc:
        raise BadLine(f"not a lhotse cut lhotse can read ({type(exc).__name__}: {one_line(str(exc), 200)})") from None
    kind = type(cut).__name__
    if kind != "MonoCut":
        raise BadLine(f"'type': a {kind} is not supported; give MonoCuts (one recording, one supervision)")
    recording = cut.recording
    if recording is None:
        raise BadLine("'recording': the cut has no recording (features-only cuts have no audio to train on)")
    path = _source_path(recording)
    _check_channels(cut, recording)
    _check_transforms(recording)
    if len(cut.supervisions) != 1:
        raise BadLine(f"'supervisions': expected exactly one supervision, found {len(cut.supervisions)}")
    supervision = cut.supervisions[0]
    text = supervision.text
    if text is None:
        if require_text:
            raise BadLine("'supervisions'[0].text is missing")
        text = ""
    check_text(text, "supervisions[0].text")
    whole = cut.start == 0 and abs(cut.duration - recording.duration) < 0.5 / recording.sampling_rate
    start, end = (None, None) if whole else (float(cut.start), float(cut.start + cut.duration))
    speaker = supervision.speaker if isinstance(supervision.speaker, str) and supervision.speaker else None
    return Utterance(id=str(cut.id), audio=path, text=text, duration=float(cut.duration), speaker=speaker,
                     start=start, end=end, source=where)


def _deserializer() -> Any:
    try:
        from lhotse.serialization import deserialize_item
    except ImportError as exc:
        raise ManifestError(f"this manifest is a lhotse CutSet, and lhotse cannot be imported ({exc}); "
                            "install the extra: pip install \"nue-asr[lhotse]\"") from None
    return deserialize_item


def _source_path(recording: Any) -> Path:
    sources = recording.sources
    if len(sources) != 1:
        raise BadLine(f"'recording.sources': {len(sources)} sources (one per channel?); nue reads one file "
                      "per recording")
    source = sources[0]
    if source.type != "file" or not isinstance(source.source, str):
        raise BadLine(f"'recording.sources'[0].type '{source.type}' is not supported; only 'file' sources "
                      "(audio files on disk) are read")
    check_text(source.source, "recording.sources[0].source")
    try:
        return Path(os.path.abspath(source.source))
    except (OSError, ValueError) as exc:
        raise BadLine(f"'recording.sources'[0].source is not a usable path ({exc})") from None


def _check_channels(cut: Any, recording: Any) -> None:
    channels = recording.num_channels
    wanted = cut.channel if isinstance(cut.channel, list) else [cut.channel]
    if channels > 1 and sorted(wanted) != sorted(recording.channel_ids):
        raise BadLine(f"'channel': the cut takes channel(s) {wanted} of a {channels}-channel recording; nue "
                      "mixes all channels down, so give one file per channel")


def _check_transforms(recording: Any) -> None:
    # nue resamples to the encoder's rate itself; any other transform would change the audio.
    other = [type(t).__name__ for t in (recording.transforms or []) if type(t).__name__ != "Resample"]
    if other:
        raise BadLine(f"'recording.transforms': {', '.join(other)} not applied by nue; give cuts without them "
                      "(nue's own augmentation is TrainConfig.augment)")
