"""CER/WER reproduce jiwer on fixed pairs; normalisation per language; language detection."""

import jiwer
import pytest

from nue_core.metrics import detect_language, error_rates, normalize, normalize_en, normalize_ja, utterance_rates

REFS = ["the cat sat on the mat", "hello world", "speech recognition is fun", "a b c"]
HYPS = ["the cat sat on mat", "hello word", "speech wreck a nice beach is fun", "a b c d"]


def test_reproduces_jiwer_on_fixed_pairs():
    scores = error_rates(REFS, HYPS, language="none")
    assert scores["cer"] == pytest.approx(jiwer.cer(REFS, HYPS))
    assert scores["wer"] == pytest.approx(jiwer.wer(REFS, HYPS))
    assert scores["wer"] == pytest.approx(7 / 15)  # by hand: 1 del, 1 sub, 1 sub + 3 ins, 1 ins
    assert scores["ref_words"] == 15 and scores["utterances"] == 4


def test_english_normalisation_then_jiwer():
    refs, hyps = ["Hello, World!", "Don't STOP."], ["hello world", "dont stop"]
    assert error_rates(refs, hyps, "en")["wer"] == 0.0
    assert error_rates(refs, hyps, "none")["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert normalize_en("Well-known  “quotes”, e.g.") == "well known quotes e g"


def test_japanese_normalisation_and_cer():
    assert normalize_ja("今日は、 いい天気。ＡＢＣ１２３！") == "今日はいい天気ABC123"
    refs, hyps = ["今日は、いい天気です。"], ["今日はいい天気だ"]
    scores = error_rates(refs, hyps, "ja")
    expected = jiwer.cer([normalize_ja(r) for r in refs], [normalize_ja(h) for h in hyps])
    assert scores["cer"] == pytest.approx(expected) == pytest.approx(2 / 9)  # です -> だ: 1 sub + 1 del


def test_language_detection():
    assert detect_language(["今日はいい天気です", "ありがとう"]) == "ja"
    assert detect_language(["hello there", "good morning"]) == "en"
    assert detect_language(["123 456"]) == "none"
    assert error_rates(["今日は、晴れ"], ["今日は晴れ"], None)["language"] == "ja"
    assert normalize("Hi, THERE", "auto") == "hi there"
    with pytest.raises(ValueError, match="unknown language"):
        error_rates(["a"], ["a"], "fr")


def test_empty_reference_and_length_mismatch():
    assert utterance_rates("", "", "en") == (0.0, 0.0)
    assert utterance_rates("", "two words", "en")[1] == 2.0  # jiwer divides insertions by 1
    with pytest.raises(ValueError, match="2 references but 1"):
        error_rates(["a", "b"], ["a"])
