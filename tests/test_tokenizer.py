"""The pure-Python WordPiece tokenizer gives exactly HF BertTokenizerFast's ids and offsets."""
from __future__ import annotations

import json

import pytest
from transformers import BertTokenizerFast

from distill.tasks import get_task
from mobile_app.runtime.bundle import BundleError
from mobile_app.runtime.tokenizer import WordPieceTokenizer, longest_first_lengths
from tests.tiny_models import teacher_base_dir

VOCAB = teacher_base_dir() / "vocab.txt"

HARD_TEXTS = [
    "", " ", "   \t\n  ", "\u3000\u00a0\u2028", "a", "Hello, World!", "don't stop-believing...",
    "I ❤️ NY 😀😀 👍🏽 🇫🇷 👨‍👩‍👧", "Crème brûlée à la café naïve Ångström façade résumé", "ÀÉÎÕÜ ǅ ß ẞ İstanbul ΣΑΣ ﬁnance",
    "北京欢迎你 東京 서울 日本語のテキスト", "مرحبا بالعالم", "नमस्ते दुनिया", "Привет, мир! Ёлка", "שלום עולם",
    "ctrl\x00chars\x01here\x7f and\x0bvertical\x0cform\x85next", "zero\u200bwidth\u200cjoin\u200dhere\ufeffbom",
    "e\u0301 a\u0308 n\u0303 combining \u0323\u0302 marks", "replacement \ufffd char", "tab\tnew\nline\rcr",
    "x" * 101, "y" * 100, "supercalifragilisticexpialidocious antidisestablishmentarianism", "a" * 250 + " end",
    "numbers 3.14159 1,000,000 $100 50% #tag @user", "email@example.com https://example.org/path?q=1&r=2",
    "mixed日本English中文ไทย", "ﾊﾝｶｸ カタカナ ①②③ ｆｕｌｌｗｉｄｔｈ", "Ⅻ ™ © ® ° ± × ÷", "\U0001F600" * 5,
    "\U00020000\U0002B820\U0002B920 rare CJK", "豈更車 compat ideographs", "𝐁𝐨𝐥𝐝 𝕕𝕠𝕦𝕓𝕝𝕖", "‘quotes’ “double” «guillemets» — dash …",
    "trailing spaces   ", "   leading spaces", "UPPER lower MiXeD", "\u0130\u0131 \u1e9e \u03a3", "\U000e0041 tag char",
    "private \ue000 use", "unassigned \u0378 here", "ᜀ\u1734 hanunoo", "\U00011938 dives akuru",
]



def _assert_same(ours_enc, ref, text):
    assert ours_enc.input_ids == ref.ids, text
    assert ours_enc.token_type_ids == ref.type_ids, text
    assert ours_enc.attention_mask == ref.attention_mask, text
    assert ours_enc.offsets == [tuple(o) for o in ref.offsets], text


def test_hard_corpus_ids_and_offsets(ours, hf):
    refs = hf.backend_tokenizer.encode_batch(HARD_TEXTS)
    for text, ref in zip(HARD_TEXTS, refs):
        _assert_same(ours.encode(text), ref, text)
        assert ours.tokenize(text) == ref.tokens[1:-1]


@pytest.mark.parametrize("lower, strip", [(False, None), (False, True), (True, False)])
def test_hard_corpus_other_settings(lower, strip):
    ours = WordPieceTokenizer.from_vocab(VOCAB, do_lower_case=lower, strip_accents=strip)
    hf = BertTokenizerFast(vocab=str(VOCAB), do_lower_case=lower, strip_accents=strip)
    for text, ref in zip(HARD_TEXTS, hf.backend_tokenizer.encode_batch(HARD_TEXTS)):
        _assert_same(ours.encode(text), ref, text)


@pytest.mark.parametrize("max_length", [3, 4, 8, 13, 32])
def test_pairs_truncate_longest_first_like_hf(ours, hf, max_length):
    pairs = [(a, b) for a in HARD_TEXTS[::3] for b in HARD_TEXTS[1::4]]
    for a, b in pairs:
        ref = hf(a, b, max_length=max_length, truncation="longest_first", return_offsets_mapping=True, return_token_type_ids=True)
        got = ours.encode(a, b, max_length=max_length)
        assert got.input_ids == ref["input_ids"], (a, b)
        assert got.token_type_ids == ref["token_type_ids"], (a, b)
        assert got.offsets == [tuple(o) for o in ref["offset_mapping"]], (a, b)


def test_single_truncation_and_no_truncation(ours, hf):
    text = "the quick brown fox jumps over the lazy dog " * 20
    for max_length in (2, 5, 64):
        assert ours.encode(text, max_length=max_length).input_ids == hf(text, max_length=max_length, truncation=True)["input_ids"]
    assert ours.encode(text, max_length=5, truncation=False).input_ids == hf(text)["input_ids"]
    with pytest.raises(ValueError, match="special tokens"):
        ours.encode(text, max_length=1)


def test_longest_first_lengths():
    assert longest_first_lengths(10, 10, 15) == (7, 8)
    assert longest_first_lengths(10, 9, 13) == (7, 6)
    assert longest_first_lengths(3, 30, 7) == (3, 4)
    assert longest_first_lengths(30, 3, 7) == (4, 3)
    assert longest_first_lengths(2, 3, 10) == (2, 3)


def _dataset_texts(data_dir, sst2_train_every: int = 1) -> dict[str, list[str]]:
    """Every text of the three datasets (SST-2 train thinned to every n-th sentence when asked)."""
    sst2 = get_task("sentiment").load(data_dir)
    spam = get_task("spam").load(data_dir)
    qa = get_task("qa").load(data_dir)
    squad = qa["train"] + qa["eval"]
    return {
        "sst2 train+dev": [e["text"] for e in sst2["train"][::sst2_train_every] + sst2["eval"]],
        "sms all": [e["text"] for split in spam.values() for e in split],
        "squad questions": [e["question"] for e in squad],
        "squad contexts": sorted({e["context"] for e in squad}),
    }


@pytest.mark.integration
def test_dataset_texts_match_hf(ours, hf, data_dir):
    """All of SMS, SQuAD and SST-2 dev, every 8th SST-2 train sentence (benchmarks/bench_tokenizer.py checks all)."""
    for name, texts in _dataset_texts(data_dir, sst2_train_every=8).items():
        refs = hf.backend_tokenizer.encode_batch(texts)
        mismatched = [t for t, ref in zip(texts, refs)
                      if (enc := ours.encode(t)).input_ids != ref.ids or enc.offsets != [tuple(o) for o in ref.offsets]]
        assert not mismatched, f"{name}: {len(mismatched)} of {len(texts)} texts differ, e.g. {mismatched[0][:120]!r}"


def test_special_ids_and_conversions(ours):
    assert (ours.cls_id, ours.sep_id, ours.pad_id, ours.unk_id) == (101, 102, 0, 100)
    assert ours.convert_tokens_to_ids(["hello", "##ing", "no-such-token"]) == [7592, 2075, 100]
    assert ours.convert_tokens_to_ids("[CLS]") == 101
    enc = ours.encode("Hello there", "General Kenobi")
    assert enc.tokens[0] == "[CLS]" and enc.tokens.count("[SEP]") == 2 and len(enc) == len(enc.input_ids)


def test_from_manifest_reads_bundle_settings(tmp_path):
    (tmp_path / "vocab.txt").write_bytes(VOCAB.read_bytes())
    manifest = {"tokenizer": {"vocab": "vocab.txt", "do_lower_case": False, "strip_accents": None, "tokenize_chinese_chars": True}}
    tok = WordPieceTokenizer.from_manifest(tmp_path, manifest)
    assert not tok.do_lower_case and not tok.strip_accents
    assert tok.tokenize("Hello") == ["[UNK]"]  # the uncased vocab has no "Hello"


def test_bad_vocab_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        WordPieceTokenizer.from_vocab(tmp_path / "missing.txt")
    (tmp_path / "vocab.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(BundleError, match=r"special tokens \[CLS\]"):
        WordPieceTokenizer.from_vocab(tmp_path / "vocab.txt")
    with pytest.raises(BundleError, match="tokenizer section"):
        WordPieceTokenizer.from_manifest(tmp_path, json.loads("{}"))
