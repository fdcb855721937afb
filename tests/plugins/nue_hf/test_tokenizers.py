"""Tokenizers of nue_hf: sentencepiece (Nue-ASR style specials), Hugging Face, bytes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from nue_core.errors import ConfigError
from nue_core.protocols import Tokenizer
from nue_core.registry import BuildContext
from nue_hf.tokenizers import ByteTokenizer, HFTokenizer, SentencePieceTokenizer, load_tokenizer

SENTENCES = [
    "hello world", "the quick brown fox jumps over the lazy dog", "speech recognition with language models",
    "こんにちは世界", "音声認識の研究をしています", "今日はいい天気ですね",
] * 10
SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "bos": "<s>", "eos": "</s>",
            "sep": "[SEP]", "cls": "[CLS]", "mask": "[MASK]"}


def make_sentencepiece_folder(folder: Path, vocab_size: int = 60) -> Path:
    """A tiny T5-style tokenizer folder like rinna's: spiece.model + special_tokens_map.json."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES), model_writer=model, vocab_size=vocab_size,
        user_defined_symbols=["[SEP]", "[CLS]", "[MASK]"], pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        pad_piece="[PAD]", unk_piece="[UNK]", bos_piece="<s>", eos_piece="</s>",
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.getvalue())
    smap = {f"{role}_token": text for role, text in SPECIALS.items()}
    (folder / "special_tokens_map.json").write_text(json.dumps(smap), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def sp_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sentencepiece_folder(tmp_path_factory.mktemp("sp") / "tok")


@pytest.fixture(scope="module")
def sp(sp_folder: Path) -> SentencePieceTokenizer:
    return SentencePieceTokenizer(sp_folder)


def test_sentencepiece_ids_of_specials(sp: SentencePieceTokenizer) -> None:
    assert isinstance(sp, Tokenizer)
    assert (sp.pad_id, sp.bos_id, sp.eos_id) == (0, 2, 3)
    assert sp.vocab_size == 60
    assert sp.encode("<s>") == [2]
    assert sp.encode("[SEP]") == [4]
    assert sp.encode("</s>") == [3]


def test_sentencepiece_nue_prompt_splits_on_specials(sp: SentencePieceTokenizer) -> None:
    assert sp.encode("<s>hello world[SEP]") == [2, *sp.encode("hello world"), 4]
    assert sp.encode("hello world </s>") == [*sp.encode("hello world"), 3]


@pytest.mark.parametrize("text", ["hello world", "こんにちは世界", "the lazy dog 音声認識"])
def test_sentencepiece_round_trip(sp: SentencePieceTokenizer, text: str) -> None:
    ids = sp.encode(text)
    assert ids and all(0 <= i < sp.vocab_size for i in ids)
    assert sp.decode(ids) == text


def test_sentencepiece_decode_skips_every_special(sp: SentencePieceTokenizer) -> None:
    ids = sp.encode("hello world")
    specials = [sp.encode(text)[0] for text in SPECIALS.values()]
    assert len(set(specials)) == 7
    assert sp.decode([*specials, *ids[:2], *specials, *ids[2:], *specials, 999]) == "hello world"


def test_sentencepiece_bare_model_file(sp_folder: Path, tmp_path: Path) -> None:
    # Without the json files, [SEP] is an ordinary user-defined piece; control pieces stay special.
    bare = tmp_path / "bare.model"
    bare.write_bytes((sp_folder / "spiece.model").read_bytes())
    tok = load_tokenizer(str(bare))
    assert isinstance(tok, SentencePieceTokenizer)
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (2, 3, 0)
    assert tok.encode("<s>") == [2]
    assert tok.decode([2, *tok.encode("hello"), 4, 3]) == "hello[SEP]"


def test_sentencepiece_save_and_reload(sp: SentencePieceTokenizer, tmp_path: Path) -> None:
    options = sp.save(tmp_path)
    assert options == {"tokenizer": "tokenizer"}
    again = load_tokenizer(options["tokenizer"], BuildContext(base_dir=tmp_path))
    assert isinstance(again, SentencePieceTokenizer)
    assert again.special_ids == sp.special_ids
    assert (again.bos_id, again.eos_id, again.pad_id, again.vocab_size) == (2, 3, 0, 60)
    text = "<s>こんにちは世界[SEP]hello[MASK]"
    assert again.encode(text) == sp.encode(text)


def test_sentencepiece_added_tokens_beyond_the_model(sp_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "added"
    folder.mkdir()
    (folder / "spiece.model").write_bytes((sp_folder / "spiece.model").read_bytes())
    added = {"60": {"content": "<|ja|>", "special": True}, "61": {"content": "<laugh>", "special": False}}
    config = {"added_tokens_decoder": added, "eos_token": "</s>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    tok = SentencePieceTokenizer(folder)
    assert tok.vocab_size == 62
    ids = tok.encode("<|ja|>hello<laugh>")
    assert ids[0] == 60 and ids[-1] == 61
    assert tok.decode(ids) == "hello<laugh>"


def test_byte_tokenizer_japanese_round_trip() -> None:
    tok = ByteTokenizer()
    assert isinstance(tok, Tokenizer)
    text = "今日は晴れ、hello!"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode("utf-8"))
    assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id]) == text
    assert tok.encode("<s>a[SEP]") == [tok.bos_id, ord("a"), 259]
    assert tok.save(Path("unused")) == {"tokenizer": "byte"}


def test_byte_tokenizer_invalid_utf8_is_replaced() -> None:
    tok = ByteTokenizer()
    cut = tok.encode("日本")[:-1]  # a truncated multi-byte character, as a model may emit
    assert tok.decode(cut) == "日\ufffd"


def _hf_tokenizer_folder(folder: Path) -> Path:
    from tokenizers import Tokenizer as FastTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    fast = FastTokenizer(models.BPE(unk_token="<unk>"))
    fast.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    fast.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    fast.train_from_iterator(SENTENCES, trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=fast, bos_token="<s>", eos_token="</s>",
                                      pad_token="<pad>", unk_token="<unk>")
    wrapped.save_pretrained(str(folder))
    return folder


def test_hf_tokenizer_from_folder(tmp_path: Path) -> None:
    tok = load_tokenizer(str(_hf_tokenizer_folder(tmp_path / "hf")))
    assert isinstance(tok, HFTokenizer) and isinstance(tok, Tokenizer)
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 2, 3)
    ids = tok.encode("<s>hello こんにちは</s>")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids + [tok.pad_id, 10_000]) == "hello こんにちは"
    saved = tmp_path / "saved"
    again = load_tokenizer(tok.save(saved)["tokenizer"], BuildContext(base_dir=saved))
    assert again.encode("hello world") == tok.encode("hello world")


def test_load_tokenizer_prefers_sentencepiece(sp_folder: Path) -> None:
    assert isinstance(load_tokenizer(str(sp_folder)), SentencePieceTokenizer)
    assert isinstance(load_tokenizer("byte"), ByteTokenizer)


def test_load_tokenizer_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no-such-folder"):
        load_tokenizer(str(tmp_path / "no-such-folder"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty.*no tokenizer files"):
        load_tokenizer(str(tmp_path / "empty"))
    (tmp_path / "vocab.csv").write_text("a,b")
    with pytest.raises(ConfigError, match=r"vocab\.csv.*\.model"):
        load_tokenizer(str(tmp_path / "vocab.csv"))
