"""``POST /v1/audio/transcriptions``: the multipart form read and checked as OpenAI's API takes it.

Fields (https://platform.openai.com/docs/api-reference/audio/createTranscription):

- ``file`` (required): the audio, any format libsndfile reads;
- ``model`` (required): a name from ``GET /v1/models``;
- ``language``: an ISO-639 code; accepted and echoed in ``verbose_json`` (a nue model transcribes
  the language(s) it was trained on, it is not switched by this field);
- ``prompt``: refused when non-empty (a nue model has a fixed prompt; there is no text prompting);
- ``response_format``: json (default) | text | srt | vtt | verbose_json;
- ``timestamp_granularities[]``: segment and/or word, with verbose_json, srt or vtt (word needs a
  model with a CTC head);
- ``temperature``: 0 only (nue decodes greedily or by beam search; there is no sampling);
- ``stream``: true sends server-sent events (json or text formats only);
- ``chunking_strategy``: "auto" or left out (long audio is always cut at quiet points).

Anything else, or a value outside these, is a 400 naming the parameter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from nue_core.serve.errors import bad_request

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
STREAM_FORMATS = ("json", "text")
TIMED_FORMATS = ("verbose_json", "srt", "vtt")
GRANULARITIES = ("segment", "word")
# Fields of OpenAI's API that nue has no use for: named in the 400 rather than silently ignored.
UNSUPPORTED_FIELDS = ("include", "include[]", "known_speaker_names", "known_speaker_names[]",
                      "known_speaker_references", "known_speaker_references[]", "keywords", "keywords[]",
                      "languages", "languages[]")
KNOWN_FIELDS = ("file", "model", "language", "prompt", "response_format", "timestamp_granularities",
                "timestamp_granularities[]", "temperature", "stream", "chunking_strategy")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$")


@dataclass
class TranscriptionRequest:
    """A checked transcription request (the audio itself is still bytes)."""

    audio: bytes
    filename: str
    model: str
    response_format: str = "json"
    granularities: tuple[str, ...] = ()
    language: str | None = None
    stream: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wants_words(self) -> bool:
        return "word" in self.granularities

    @property
    def wants_segments(self) -> bool:
        """verbose_json lists segments unless only word granularity was asked for (as OpenAI does)."""
        return not self.granularities or "segment" in self.granularities


def _text(form: Any, name: str) -> str | None:
    """A text field's value; a field sent twice or sent as a file is a 400."""
    values = form.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise bad_request(name, f"'{name}' was given {len(values)} times; give it once")
    if not isinstance(values[0], str):
        raise bad_request(name, f"'{name}' must be a text field, not a file")
    return values[0]


def parse_bool(name: str, value: str | None) -> bool:
    if value is None or value.strip().lower() in ("", "false", "0", "no"):
        return False
    if value.strip().lower() in ("true", "1", "yes"):
        return True
    raise bad_request(name, f"'{name}' must be true or false, got {value[:40]!r}")


async def parse_transcription_form(form: Any, served_models: tuple[str, ...]) -> TranscriptionRequest:
    """Check every field of the form; raises ApiError (400) naming the first one at fault.

    Args:
        form: the request's parsed multipart form (Starlette ``FormData``).
        served_models: the model names this server serves (``GET /v1/models``).
    """
    for name in form.keys():
        if name in UNSUPPORTED_FIELDS:
            raise bad_request(name, f"'{name.removesuffix('[]')}' is not supported by nue models; leave it out",
                              code="unsupported_parameter")
        if name not in KNOWN_FIELDS:
            raise bad_request(name, f"unrecognized request argument supplied: '{name[:60]}'",
                              code="unknown_parameter")
    files = form.getlist("file")
    if not files:
        raise bad_request("file", "'file' is required: the audio to transcribe, sent as a multipart file",
                          code="missing_required_parameter")
    if len(files) > 1 or isinstance(files[0], str):
        raise bad_request("file", "'file' must be one uploaded file (multipart/form-data with a filename)")
    upload = files[0]
    model = _text(form, "model")
    if not model:
        raise bad_request("model", f"'model' is required; this server serves: {', '.join(served_models)}",
                          code="missing_required_parameter")
    if model not in served_models:
        raise bad_request("model", f"the model '{model[:80]}' does not exist here; this server serves: "
                                   f"{', '.join(served_models)} (GET /v1/models)", code="model_not_found")
    fmt = (_text(form, "response_format") or "json").strip()
    if fmt not in RESPONSE_FORMATS:
        raise bad_request("response_format", f"response_format '{fmt[:40]}' is not supported; choose one of "
                                             f"{', '.join(RESPONSE_FORMATS)}")
    granularities = _granularities(form, fmt)
    language = _text(form, "language")
    if language is not None:
        language = language.strip() or None
        if language is not None and not _LANGUAGE.match(language):
            raise bad_request("language", f"language '{language[:40]}' is not an ISO-639 code such as 'en' or 'ja'")
    prompt = _text(form, "prompt")
    if prompt and prompt.strip():
        raise bad_request("prompt", "prompt is not supported: nue models decode from a fixed prompt; leave it out",
                          code="unsupported_parameter")
    _check_temperature(_text(form, "temperature"))
    stream = parse_bool("stream", _text(form, "stream"))
    if stream and fmt not in STREAM_FORMATS:
        raise bad_request("stream", f"stream=true sends text deltas and works with response_format json or text, "
                                    f"not {fmt}", code="unsupported_value")
    chunking = _text(form, "chunking_strategy")
    if chunking not in (None, "", "auto"):
        raise bad_request("chunking_strategy", "chunking_strategy: only 'auto' is supported (long audio is cut at "
                                               "quiet points)", code="unsupported_value")
    audio = await upload.read()
    return TranscriptionRequest(audio=audio, filename=upload.filename or "upload", model=model, response_format=fmt,
                                granularities=granularities, language=language, stream=stream)


def _granularities(form: Any, fmt: str) -> tuple[str, ...]:
    values = [*form.getlist("timestamp_granularities[]"), *form.getlist("timestamp_granularities")]
    out: list[str] = []
    for value in values:
        if not isinstance(value, str) or value.strip() not in GRANULARITIES:
            shown = value[:40] if isinstance(value, str) else "a file"
            raise bad_request("timestamp_granularities", f"timestamp_granularities: {shown!r} is not one of "
                                                         f"{', '.join(GRANULARITIES)}")
        if value.strip() not in out:
            out.append(value.strip())
    if out and fmt not in TIMED_FORMATS:
        raise bad_request("timestamp_granularities", f"timestamp_granularities needs response_format "
                                                     f"{' or '.join(TIMED_FORMATS)}, not {fmt}",
                          code="unsupported_value")
    return tuple(out)


def _check_temperature(value: str | None) -> None:
    if value is None or not value.strip():
        return
    try:
        temperature = float(value)
    except ValueError:
        raise bad_request("temperature", f"temperature must be a number, got {value[:40]!r}") from None
    if not math.isfinite(temperature) or temperature < 0 or temperature > 1:
        raise bad_request("temperature", f"temperature must be between 0 and 1, got {value[:40]}")
    if temperature != 0:
        raise bad_request("temperature", "temperature must be 0: nue decodes greedily or by beam search, it does not "
                                         "sample", code="unsupported_value")
