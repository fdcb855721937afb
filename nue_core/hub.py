"""Hugging Face hub repositories as model sources: tell a repo id from a local path, fetch it safely.

A repository is fetched with ``huggingface_hub.snapshot_download`` into the usual Hugging Face
cache (``HF_HUB_CACHE`` / ``HF_HOME``), so it is downloaded once and found again offline
(``HF_HUB_OFFLINE=1``). Only data files are fetched: configs, safetensors weights and tokenizer
files; never pickles (``*.bin``, ``*.pt``) or code (``*.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

from nue_core.errors import CheckpointError

# What a nue model folder or a released Nue-ASR folder needs (fnmatch patterns: ``*`` also
# matches ``/``, so ``tokenizer/spiece.model`` is included). Nothing here is executed on load.
HUB_PATTERNS = ("*.yaml", "*.json", "*.safetensors", "*.model", "*.txt")

# ``org/name``: exactly one slash, hub name characters only (huggingface_hub validates the rest).
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def looks_like_local_path(text: str) -> bool:
    """True for text a user means as a path: it starts with ``.``, ``/``, ``~`` or ``\\``, or it
    exists. Such text is never sent to the hub."""
    return text.startswith((".", "/", "~", "\\")) or Path(text).expanduser().exists()


def is_hub_id(text: str) -> bool:
    """True for a Hugging Face repository id (``org/name``) that is not a local path."""
    if looks_like_local_path(text) or _REPO_ID.fullmatch(text) is None:
        return False
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:  # e.g. '--' or '..' inside the name
        return False
    return True


def fetch_checkpoint(repo_id: str, name: str | None = None) -> Path:
    """The local folder of hub repository ``repo_id``, downloaded once into the Hugging Face cache.

    Args:
        repo_id: ``org/name`` of a model repository.
        name: what the user typed when it differs (a registry alias such as ``nue-asr``), for messages.

    Returns:
        the cached snapshot folder (only ``HUB_PATTERNS`` files).

    Raises:
        CheckpointError: one line saying why (not cached while offline, no such repository, ...)
            and what to do.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    what = f"'{name}' ({repo_id})" if name else f"'{repo_id}' (no such local folder; taken as a hub repository)"
    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(HUB_PATTERNS)))
    except LocalEntryNotFoundError as exc:
        if type(exc) is not LocalEntryNotFoundError:  # IncompleteSnapshotError and other subclasses
            raise CheckpointError(f"{what}: {_first_line(exc)}") from None
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub cannot be reached"
        raise CheckpointError(
            f"{what} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}; fetch it once where "
            f"the hub is reachable (`hf download {repo_id}`, or run this again online), or pass a local model folder"
        ) from None
    except RepositoryNotFoundError:  # also gated or private without a token
        raise CheckpointError(
            f"{what}: no such repository on the Hugging Face hub, or it is private or gated "
            "(log in with `hf auth login`); check the id, or pass a local model folder"
        ) from None
    except Exception as exc:  # noqa: BLE001 - network, permissions, disk: one clear line, not a traceback
        raise CheckpointError(f"cannot fetch {what} ({type(exc).__name__}: {_first_line(exc)}); "
                              "download it where the hub is reachable and pass the local folder instead") from None


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (huggingface_hub errors span several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
