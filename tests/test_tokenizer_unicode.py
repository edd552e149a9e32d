"""Every Unicode code point is normalised and split exactly as the Rust BertNormalizer + BertPreTokenizer do.

This is what the `_RUST_*` tables in mobile_app/runtime/tokenizer.py stand on: where the Rust crates' Unicode
tables differ from Python's unicodedata, the tables say what Rust does, and this test re-measures it.
"""
from __future__ import annotations

import unicodedata

import pytest
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

from mobile_app.runtime import tokenizer as wordpiece
from mobile_app.runtime.tokenizer import WordPieceTokenizer

CHUNK = 4096


def _code_points():
    """Every assigned code point, all of the BMP, and every code point the override tables name.

    Unassigned and private-use code points follow one rule each (kept / removed); the ~900k of them outside
    the BMP add nothing but time, so only those the tables mention are included.
    """
    named = set(wordpiece._RUST_LOWERCASE) | {c for table in (wordpiece._RUST_UNKNOWN_MARKS, wordpiece._RUST_EXTRA_MARKS,
                                                              wordpiece._RUST_UNKNOWN_FORMAT, wordpiece._RUST_NO_DECOMPOSITION)
                                              for low, high in table for c in range(low, high + 1)}
    return [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF
            and (c < 0x10000 or c in named or unicodedata.category(chr(c)) not in ("Cn", "Co"))]


def _words_hf(normalizer, pre, text):
    return [w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text))]


@pytest.mark.parametrize("lower, strip", [(True, None)])  # the uncased setting the bundles ship; the others: test_tokenizer.py
def test_every_code_point_normalises_like_rust(lower, strip):
    ours = WordPieceTokenizer({"[CLS]": 0, "[SEP]": 1, "[PAD]": 2, "[UNK]": 3}, do_lower_case=lower, strip_accents=strip)
    normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=strip, lowercase=lower)
    pre = BertPreTokenizer()
    chars = _code_points()
    differing = []
    for i in range(0, len(chars), CHUNK):
        # Spaces keep each character its own word, so one call checks a whole chunk.
        chunk = chars[i:i + CHUNK]
        text = " ".join(chunk)
        if _words_hf(normalizer, pre, text) != [w for w, _ in ours._words(text)]:
            differing += [f"U+{ord(c):04X}" for c in chunk if _words_hf(normalizer, pre, c) != [w for w, _ in ours._words(c)]]
    assert not differing, f"{len(differing)} code points differ from Rust, e.g. {differing[:10]}"
