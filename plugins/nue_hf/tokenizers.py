"""Tokenizers for the nue_hf decoders: sentencepiece files, any Hugging Face tokenizer, raw bytes.

All three satisfy ``nue_core.protocols.Tokenizer``: ``encode`` adds no special token but does
recognise special-token strings in the text (the Nue-ASR prompt is the *text* ``"<s>"`` and
``"[SEP]"``), and ``decode`` drops every special token.

Why a sentencepiece tokenizer of our own: the released Nue-ASR / rinna GPT-NeoX checkpoints ship a
T5-style ``spiece.model``; transformers 5.x's AutoTokenizer fails on that folder, while the
sentencepiece library reads it directly. We reproduce the slow ``T5Tokenizer(legacy=True)``
behaviour the reference used: split the text on the special strings, sp-encode each piece.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

from nue_core.errors import ConfigError
from nue_core.protocols import Tokenizer
from nue_core.registry import BuildContext

SP_MODEL_FILES = ("spiece.model", "tokenizer.model")
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt")
_ROLES = ("bos", "eos", "unk", "pad", "sep", "cls", "mask")
SAVED_FOLDER = "tokenizer"  # tokenizer files go into a sub-folder of a saved model folder


def _special_pattern(specials: list[str]) -> re.Pattern[str] | None:
    """A regex with one capture group that splits text on the special strings (longest first)."""
    if not specials:
        return None
    alternatives = "|".join(re.escape(s) for s in sorted(set(specials), key=len, reverse=True))
    return re.compile(f"({alternatives})")


def _content(value: Any) -> str | None:
    """A special-token entry as HF writes it: a plain string or ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read tokenizer file: {exc}") from None
    return data if isinstance(data, dict) else {}


def read_special_tokens(folder: Path) -> tuple[dict[str, str], list[str], dict[int, tuple[str, bool]]]:
    """Special tokens declared by HF-style files in ``folder``.

    Returns:
        roles: e.g. ``{"bos": "<s>", "sep": "[SEP]"}`` (special_tokens_map.json wins over
            tokenizer_config.json), extras: additional special strings, added: id -> (content,
            special) from ``added_tokens_decoder``.
    """
    config = _read_json(folder / "tokenizer_config.json")
    smap = _read_json(folder / "special_tokens_map.json")
    roles: dict[str, str] = {}
    extras: list[str] = []
    for source in (config, smap):
        for role in _ROLES:
            if (text := _content(source.get(f"{role}_token"))) is not None:
                roles[role] = text
        for key in ("additional_special_tokens", "extra_special_tokens"):
            values = source.get(key) or []
            extras += [t for t in map(_content, values if isinstance(values, list) else []) if t]
    added = {
        int(i): (text, bool(entry.get("special", True)))
        for i, entry in (config.get("added_tokens_decoder") or {}).items()
        if isinstance(entry, dict) and (text := _content(entry)) is not None
    }
    return roles, extras, added


class SentencePieceTokenizer:
    """A sentencepiece model plus the special tokens its HF-style json files declare.

    Args:
        path: a ``.model`` file, or a folder holding ``spiece.model`` / ``tokenizer.model``;
            ``special_tokens_map.json`` / ``tokenizer_config.json`` next to it are read when present.

    Special tokens are: the sentencepiece control and unknown pieces, every token the json files
    name (``[SEP]``, ``[CLS]``, ``[MASK]`` are user-defined pieces that plain sentencepiece decoding
    would keep), and ``added_tokens_decoder`` entries marked special.
    """

    def __init__(self, path: Path | str) -> None:
        import sentencepiece

        self.path = Path(path)
        folder, model_file = self._locate(self.path)
        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        self._sp_size = int(self._sp.get_piece_size())
        roles, extras, added = read_special_tokens(folder)
        self._added = {i: text for i, (text, _) in added.items() if i >= self._sp_size}
        special = self._collect_specials(roles, extras, added)
        self.special_ids = frozenset(special)
        self._pattern = _special_pattern(list(self._text_to_id))
        self.vocab_size = self._sp_size + len(self._added)
        self.bos_id = self._roles.get("bos", self._sp_id(self._sp.bos_id()))
        eos = self._roles.get("eos", self._sp_id(self._sp.eos_id()))
        if eos is None:
            raise ConfigError(f"{self.path}: the tokenizer defines no eos token (needed to stop decoding)")
        self.eos_id: int = eos
        pad = self._roles.get("pad", self._sp_id(self._sp.pad_id()))
        self.pad_id: int = eos if pad is None else pad

    def _collect_specials(
        self, roles: dict[str, str], extras: list[str], added: dict[int, tuple[str, bool]]
    ) -> set[int]:
        """Fill ``_text_to_id`` (strings recognised in text) and ``_roles``; return the special ids."""
        control = [i for i in range(self._sp_size) if self._sp.is_control(i) or self._sp.is_unknown(i)]
        self._text_to_id = {self._sp.id_to_piece(i): i for i in control}
        self._text_to_id.update({text: i for i, (text, _) in added.items()})
        special = set(control) | {i for i, (_, is_special) in added.items() if is_special}
        found = {text: i for text in {*roles.values(), *extras} if (i := self._lookup(text)) is not None}
        self._text_to_id.update(found)
        special |= set(found.values())
        self._roles = {role: found[text] for role, text in roles.items() if text in found}
        return special

    @staticmethod
    def _locate(path: Path) -> tuple[Path, Path]:
        """(folder with the json files, the .model file)."""
        if path.is_file():
            return path.parent, path
        for name in SP_MODEL_FILES:
            if (path / name).is_file():
                return path, path / name
        raise ConfigError(f"{path}: no sentencepiece model ({' or '.join(SP_MODEL_FILES)}) found")

    @staticmethod
    def _sp_id(value: int) -> int | None:
        return value if value >= 0 else None  # sentencepiece says -1 for a disabled piece

    def _lookup(self, text: str) -> int | None:
        """Id of a special string: an added token, else a whole sentencepiece piece."""
        if text in self._text_to_id:
            return self._text_to_id[text]
        i = self._sp.piece_to_id(text)
        if self._sp.id_to_piece(i) == text:
            return int(i)
        warnings.warn(f"{self.path}: special token {text!r} is not in the vocabulary; ignored", stacklevel=3)
        return None

    def encode(self, text: str) -> list[int]:
        """Text -> ids, no special token added; special strings in the text become their ids."""
        parts = self._pattern.split(text) if self._pattern else [text]
        ids: list[int] = []
        for k, part in enumerate(parts):
            if k % 2:  # odd parts are the captured special strings
                ids.append(self._text_to_id[part])
            elif part:
                ids += self._sp.encode(part)
        return ids

    def decode(self, ids: list[int]) -> str:
        """Ids -> text without any special token; ids outside the vocabulary are dropped too."""
        pieces: list[str] = []
        run: list[int] = []  # consecutive sentencepiece ids decode together (spacing is per run)
        for i in map(int, ids):
            if i in self.special_ids or not 0 <= i < self.vocab_size:
                continue
            if i < self._sp_size:
                run.append(i)
                continue
            pieces += [self._sp.decode(run), self._added[i]]
            run = []
        return "".join([*pieces, self._sp.decode(run)])

    def id_to_piece(self, id: int) -> str:
        """The sentencepiece piece of ``id`` with its "▁" word marker; an added token's text."""
        i = int(id)
        if i in self._added:
            return self._added[i]
        return str(self._sp.id_to_piece(i)) if 0 <= i < self._sp_size else ""

    def save(self, folder: Path) -> dict[str, Any]:
        """Write spiece.model + json files into ``folder/tokenizer``; return the option reloading them."""
        out = Path(folder) / SAVED_FOLDER
        out.mkdir(parents=True, exist_ok=True)
        (out / "spiece.model").write_bytes(self._sp.serialized_model_proto())
        inverse = {i: text for text, i in self._text_to_id.items()}
        roles = {f"{role}_token": inverse.get(i, self._sp.id_to_piece(i)) for role, i in self._roles.items()}
        role_ids = set(self._roles.values())
        extras = sorted({inverse[i] for i in self.special_ids if i in inverse and i not in role_ids})
        smap = {**roles, "additional_special_tokens": extras}
        tokens = {**inverse, **self._added}
        added = {str(i): {"content": tokens[i], "special": i in self.special_ids} for i in sorted(tokens)}
        (out / "special_tokens_map.json").write_text(json.dumps(smap, ensure_ascii=False, indent=2), "utf-8")
        config = {"added_tokens_decoder": added, **smap}
        (out / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), "utf-8")
        return {"tokenizer": SAVED_FOLDER}


class HFTokenizer:
    """A transformers tokenizer from a local folder or hub id (never with remote code).

    Args:
        source: folder or hub id given to ``AutoTokenizer.from_pretrained``.
        local_files_only: do not reach the network (use the local cache only).
    """

    def __init__(self, source: str | Path, local_files_only: bool = False) -> None:
        from transformers import AutoTokenizer

        self.source = str(source)
        try:
            self._tok = AutoTokenizer.from_pretrained(
                self.source, trust_remote_code=False, local_files_only=local_files_only
            )
        except Exception as exc:  # many error types; the user needs the source named
            raise ConfigError(f"tokenizer '{self.source}': cannot load with transformers: {exc}") from exc
        self.vocab_size = len(self._tok)
        self.bos_id: int | None = self._tok.bos_token_id
        if self._tok.eos_token_id is None:
            raise ConfigError(f"tokenizer '{self.source}' defines no eos token (needed to stop decoding)")
        self.eos_id: int = int(self._tok.eos_token_id)
        pad = self._tok.pad_token_id
        self.pad_id: int = self.eos_id if pad is None else int(pad)
        self.special_ids = frozenset(int(i) for i in self._tok.all_special_ids)

    def encode(self, text: str) -> list[int]:
        """Text -> ids, no special token added (special strings in the text are recognised)."""
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        """Ids -> text, special tokens and ids outside the vocabulary dropped."""
        keep = [int(i) for i in ids if 0 <= int(i) < self.vocab_size]
        return str(self._tok.decode(keep, skip_special_tokens=True))

    def id_to_piece(self, id: int) -> str:
        """The tokenizer's token of ``id`` ("▁six" for sentencepiece-based, "Ġsix" for byte-level BPE)."""
        i = int(id)
        return str(self._tok.convert_ids_to_tokens(i) or "") if 0 <= i < self.vocab_size else ""

    def save(self, folder: Path) -> dict[str, Any]:
        """Write the tokenizer files into ``folder/tokenizer``; return ``{"tokenizer": "tokenizer"}``."""
        self._tok.save_pretrained(str(Path(folder) / SAVED_FOLDER))
        return {"tokenizer": SAVED_FOLDER}


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, then ``<pad>`` 256, ``<s>`` 257, ``</s>`` 258, ``[SEP]`` 259.

    Needs no file, so tiny presets and tests run anywhere; ``[SEP]`` lets them use the Nue-ASR
    prompt (``"<s>"`` + speech + ``"[SEP]"``) with single-token specials.
    """

    SPECIALS = ("<pad>", "<s>", "</s>", "[SEP]")

    def __init__(self) -> None:
        self._text_to_id = {text: 256 + k for k, text in enumerate(self.SPECIALS)}
        self._pattern = _special_pattern(list(self.SPECIALS))
        self.vocab_size = 256 + len(self.SPECIALS)
        self.pad_id, self.bos_id, self.eos_id = 256, 257, 258
        self.special_ids = frozenset(self._text_to_id.values())

    def encode(self, text: str) -> list[int]:
        """Text -> UTF-8 byte ids; special strings in the text become their ids."""
        assert self._pattern is not None
        ids: list[int] = []
        for k, part in enumerate(self._pattern.split(text)):
            ids += [self._text_to_id[part]] if k % 2 else list(part.encode("utf-8"))
        return ids

    def decode(self, ids: list[int]) -> str:
        """Byte ids -> text; specials dropped, invalid UTF-8 replaced by U+FFFD."""
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def id_to_piece(self, id: int) -> str:
        """The byte of ``id`` as text (a space byte is a word marker); a special's text for 256..259.

        A byte of a multi-byte character alone is not valid UTF-8 and gives U+FFFD.
        """
        i = int(id)
        if 0 <= i < 256:
            return bytes([i]).decode("utf-8", errors="replace")
        return self.SPECIALS[i - 256] if i < self.vocab_size else ""

    def save(self, folder: Path) -> dict[str, Any]:
        """Nothing to write: ``{"tokenizer": "byte"}`` rebuilds it."""
        return {"tokenizer": "byte"}


def _looks_like_hub_id(spec: str) -> bool:
    return not spec.startswith((".", "/", "~")) and "\\" not in spec and 0 < spec.count("/") <= 1


def _hub_folder(spec: str, local_files_only: bool) -> Path:
    """Download (or find in the cache) only the tokenizer files of a hub repository."""
    from huggingface_hub import snapshot_download

    patterns = [*SP_MODEL_FILES, *HF_TOKENIZER_FILES, "special_tokens_map.json", "merges.txt", "*.tiktoken"]
    try:
        return Path(snapshot_download(spec, allow_patterns=patterns, local_files_only=local_files_only))
    except Exception as exc:  # offline, missing repo, auth: all mean "not usable here"
        raise ConfigError(
            f"tokenizer '{spec}': not a local file or folder, and not available from the Hugging "
            f"Face hub{' cache' if local_files_only else ''} ({type(exc).__name__}: {exc})"
        ) from exc


def load_tokenizer(spec: str, base: BuildContext | None = None, local_files_only: bool = False) -> Tokenizer:
    """A tokenizer from ``"byte"``, a ``.model`` file, a folder, or a hub id.

    Args:
        spec: ``"byte"``; a sentencepiece ``.model`` file; a folder (sentencepiece files preferred,
            else Hugging Face tokenizer files); or a hub id (its tokenizer files only).
        base: relative paths resolve against ``base.base_dir`` (a saved model folder).
        local_files_only: for hub ids, use the local cache only.
    """
    if spec == "byte":
        return ByteTokenizer()
    path = base.resolve_path(spec) if base is not None else Path(spec).expanduser()
    if not path.exists():
        if not _looks_like_hub_id(spec):
            raise ConfigError(f"tokenizer '{spec}': no such file or folder ({path})")
        path = _hub_folder(spec, local_files_only)
    if path.is_file():
        if path.suffix != ".model":
            raise ConfigError(f"tokenizer '{path}': a file must be a sentencepiece .model")
        return SentencePieceTokenizer(path)
    if any((path / name).is_file() for name in SP_MODEL_FILES):
        return SentencePieceTokenizer(path)
    if any((path / name).is_file() for name in HF_TOKENIZER_FILES):
        return HFTokenizer(path, local_files_only=True)
    raise ConfigError(
        f"tokenizer '{path}': no tokenizer files found; expected one of "
        f"{', '.join(SP_MODEL_FILES + HF_TOKENIZER_FILES)} (or use tokenizer: byte)"
    )
