"""NeMo manifests: JSON lines ``{"audio_filepath", "duration", "text", "offset"?, "speaker"?, ...}``.

A line becomes an ``Utterance`` as NeMo's speech-to-text datasets read it:

* ``audio_filepath``: relative paths are relative to the manifest's folder, as NeMo's documentation
  states (NeMo itself falls back to the path as given, relative to the working directory, when no
  file is found there; nue takes one rule so a line means the same wherever training starts).
* ``offset`` (seconds): the clip starts there and lasts ``duration``: ``end = offset + duration``.
  Without ``offset`` the whole file is read and ``duration`` is its length (NeMo reads ``duration``
  seconds from the start: the two differ only by how ``duration`` was rounded).
* ``text``, else ``normalized_text`` (NeMo's fallback); ``text_filepath`` is not read (an error).
* ``speaker`` is kept; every other key (``lang``, ``pnc``, ``taskname`` ...) is ignored, as NeMo
  ignores the keys a model does not use. The id is ``file:line``.
"""

from __future__ import annotations

from nue_core.data.manifest_base import Utterance
from nue_core.data.manifest_fields import BadLine, PathResolver, check_text, label, optional_seconds, string_field


def nemo_entry(obj: dict, where: str, resolve: PathResolver, require_text: bool) -> Utterance:
    """One NeMo manifest line as an entry; ``BadLine`` names the field at fault."""
    audio = obj.get("audio_filepath")
    if not isinstance(audio, str) or not audio:
        raise BadLine("'audio_filepath' must be a non-empty string path")
    check_text(audio, "audio_filepath")
    key = "text" if "text" in obj or "normalized_text" not in obj else "normalized_text"
    if "text" not in obj and "text_filepath" in obj:
        raise BadLine("'text_filepath' is not supported; put the transcript in 'text'")
    text = string_field(obj, key, require_text)
    duration, offset = optional_seconds(obj, "duration"), optional_seconds(obj, "offset")
    start = end = None
    if offset is not None:  # a clip of a longer recording
        start = offset
        end = offset + duration if duration is not None else None
    speaker = label(obj, "speaker", None) if obj.get("speaker") is not None else None  # NeMo writes null
    return Utterance(id=where, audio=resolve(audio, "audio_filepath"), text=text, duration=duration,
                     speaker=speaker, start=start, end=end, source=where)
