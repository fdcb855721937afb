"""Error rates for ASR: text normalisation by language, and corpus CER/WER through jiwer.

API (kept small so training and evaluation share it)::

    from nue_core.metrics import error_rates, normalize
    scores = error_rates(["今日は、晴れ。"], ["今日は晴れ"], language="ja")
    scores["cer"], scores["wer"]          # corpus-level rates (total edits / reference length)

Normalisation (applied to references and hypotheses alike):
- ``ja``: NFKC, punctuation (Unicode category P*) and all whitespace removed. CER is the metric
  for Japanese; its WER counts whole-utterance errors (unsegmented text is one "word").
- ``en``: NFKC, lower case, apostrophes dropped (don't -> dont), other punctuation -> space,
  whitespace collapsed.
- ``none``: whitespace collapsed only (what jiwer itself sees).
- ``auto`` (or None): ``detect_language`` on the references.
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

LANGUAGES = ("ja", "en", "none")


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def normalize_ja(text: str) -> str:
    """Japanese: NFKC, then punctuation and whitespace removed ("今日は、 晴れ。" -> "今日は晴れ")."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in text if not ch.isspace() and not _is_punct(ch))


def normalize_en(text: str) -> str:
    """English: NFKC, lower case, punctuation removed ("Don't stop, NOW!" -> "dont stop now")."""
    text = unicodedata.normalize("NFKC", text).lower().replace("'", "").replace("\u2019", "")
    return " ".join("".join(" " if _is_punct(ch) else ch for ch in text).split())


def normalize_none(text: str) -> str:
    """Whitespace collapsed, nothing else."""
    return " ".join(text.split())


_NORMALIZERS = {"ja": normalize_ja, "en": normalize_en, "none": normalize_none}


def _is_japanese(ch: str) -> bool:
    code = ord(ch)
    # Hiragana, Katakana, CJK unified ideographs (+ extension A), half-width Katakana.
    return 0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF or 0xFF66 <= code <= 0xFF9F


def detect_language(texts: Sequence[str]) -> str:
    """'ja' when at least 30% of the letters are kana/kanji, 'en' when there are letters, else 'none'."""
    letters = [ch for t in texts for ch in t if ch.isalpha()]
    if not letters:
        return "none"
    japanese = sum(map(_is_japanese, letters))
    return "ja" if japanese >= 0.3 * len(letters) else "en"


def resolve_language(language: str | None, references: Sequence[str]) -> str:
    """``language`` checked, or detected from ``references`` when None or 'auto'."""
    if language is None or language == "auto":
        return detect_language(references)
    if language not in LANGUAGES:
        raise ValueError(f"unknown language '{language}'; choose one of {', '.join(LANGUAGES)} or auto")
    return language


def normalize(text: str, language: str) -> str:
    """Normalise ``text`` for scoring in ``language`` ('ja', 'en' or 'none')."""
    return _NORMALIZERS[resolve_language(language, [text])](text)


def error_rates(references: Sequence[str], hypotheses: Sequence[str], language: str | None = "none") -> dict:
    """Corpus CER and WER of ``hypotheses`` against ``references`` after normalisation.

    Args:
        references, hypotheses: one string per utterance, same length.
        language: 'ja', 'en', 'none', or None/'auto' to detect it from the references.

    Returns:
        dict with ``cer``, ``wer`` (total edits / total reference units, as jiwer computes them
        over a list), the edit counts of each (``char_*``/``word_*``: substitutions, deletions,
        insertions, hits), ``ref_chars``, ``ref_words``, ``utterances`` and the ``language`` used.
        Empty references are allowed (their hypothesis units count as insertions).
    """
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    lang = resolve_language(language, references)
    norm = _NORMALIZERS[lang]
    refs, hyps = [norm(r) for r in references], [norm(h) for h in hypotheses]
    if not refs:
        return {"cer": 0.0, "wer": 0.0, "utterances": 0, "ref_chars": 0, "ref_words": 0, "language": lang}
    chars = jiwer.process_characters(refs, hyps)
    words = jiwer.process_words(refs, hyps)
    out: dict = {"cer": float(chars.cer), "wer": float(words.wer), "utterances": len(refs), "language": lang}
    for prefix, res in (("char", chars), ("word", words)):
        for name in ("substitutions", "deletions", "insertions", "hits"):
            out[f"{prefix}_{name}"] = int(getattr(res, name))
    out["ref_chars"] = out["char_substitutions"] + out["char_deletions"] + out["char_hits"]
    out["ref_words"] = out["word_substitutions"] + out["word_deletions"] + out["word_hits"]
    return out


def utterance_rates(reference: str, hypothesis: str, language: str) -> tuple[float, float]:
    """(cer, wer) of one pair after normalisation. With an empty reference jiwer divides by 1:
    the rate is then the number of inserted units (0 when both are empty)."""
    scores = error_rates([reference], [hypothesis], language)
    return float(scores["cer"]), float(scores["wer"])
