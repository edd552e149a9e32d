"""BERT WordPiece tokenization in pure Python, id-for-id with Hugging Face's BertTokenizerFast.

The phone has no `tokenizers` wheel, so the app tokenizes with this module; `python -m export verify`
uses it too, so the ids that were verified are the ids that ship. It follows the Rust pipeline
(BertNormalizer -> BertPreTokenizer -> WordPiece -> BERT template), including where it differs from
the old slow Python tokenizer: normalisation order (strip accents, then lower-case), Rust's notion of
whitespace, and the older Unicode tables the Rust crates use (see `_RUST_*` below).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from mobile_app.runtime.bundle import BundleError

CLS, SEP, PAD, UNK = "[CLS]", "[SEP]", "[PAD]", "[UNK]"
WORD_CACHE_SIZE = 8192   # distinct words remembered (an SST-2 review uses ~15 of ~15k distinct words)
CHAR_CACHE_SIZE = 16384  # distinct non-ASCII characters remembered

# Rust `char::is_whitespace` (the Unicode White_Space property); Python's str.isspace differs on a few.
_RUST_WHITESPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
                             "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
# The CJK ranges the Rust normalizer pads with spaces (note 0x2B920, where the slow tokenizer has 0x2B820).
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# The Rust crates (`unicode_categories`, `unicode-normalization-alignments`) carry older Unicode tables than
# Python 3.11's unicodedata (14.0). Where that changes tokenization, these ranges say what Rust does; they were
# measured by normalising every code point with tokenizers 0.23 (tests/test_tokenizer_unicode.py re-checks them).
# Non-spacing marks (Mn) added after Rust's tables: Rust keeps them where Python would strip them as accents.
_RUST_UNKNOWN_MARKS = (
    (0x7FD, 0x7FD), (0x898, 0x89F), (0x8CA, 0x8E1), (0x9FE, 0x9FE), (0xAFA, 0xAFF), (0xB55, 0xB55), (0xC04, 0xC04),
    (0xC3C, 0xC3C), (0xD00, 0xD00), (0xD3B, 0xD3C), (0xD81, 0xD81), (0xEBA, 0xEBA), (0x180F, 0x180F), (0x1885, 0x1886),
    (0x1ABF, 0x1ACE), (0x1DF6, 0x1DFB), (0xA82C, 0xA82C), (0xA8C5, 0xA8C5), (0xA8FF, 0xA8FF), (0xA9BD, 0xA9BD),
    (0x10D24, 0x10D27), (0x10EAB, 0x10EAC), (0x10F46, 0x10F50), (0x10F82, 0x10F85), (0x11070, 0x11070),
    (0x11073, 0x11074), (0x110C2, 0x110C2), (0x111C9, 0x111C9), (0x111CF, 0x111CF), (0x1123E, 0x1123E),
    (0x1133B, 0x1133B), (0x11438, 0x1143F), (0x11442, 0x11444), (0x11446, 0x11446), (0x1145E, 0x1145E),
    (0x1182F, 0x11837), (0x11839, 0x1183A), (0x1193B, 0x1193C), (0x1193E, 0x1193E), (0x11943, 0x11943),
    (0x119D4, 0x119D7), (0x119DA, 0x119DB), (0x119E0, 0x119E0), (0x11A01, 0x11A0A), (0x11A33, 0x11A38),
    (0x11A3B, 0x11A3E), (0x11A47, 0x11A47), (0x11A51, 0x11A56), (0x11A59, 0x11A5B), (0x11A8A, 0x11A96),
    (0x11A98, 0x11A99), (0x11C30, 0x11C36), (0x11C38, 0x11C3D), (0x11C3F, 0x11C3F), (0x11C92, 0x11CA7),
    (0x11CAA, 0x11CB0), (0x11CB2, 0x11CB3), (0x11CB5, 0x11CB6), (0x11D31, 0x11D36), (0x11D3A, 0x11D3A),
    (0x11D3C, 0x11D3D), (0x11D3F, 0x11D45), (0x11D47, 0x11D47), (0x11D90, 0x11D91), (0x11D95, 0x11D95),
    (0x11D97, 0x11D97), (0x11EF3, 0x11EF4), (0x16F4F, 0x16F4F), (0x16FE4, 0x16FE4), (0x1CF00, 0x1CF2D),
    (0x1CF30, 0x1CF46), (0x1E000, 0x1E006), (0x1E008, 0x1E018), (0x1E01B, 0x1E021), (0x1E023, 0x1E024),
    (0x1E026, 0x1E02A), (0x1E130, 0x1E136), (0x1E2AE, 0x1E2AE), (0x1E2EC, 0x1E2EF), (0x1E944, 0x1E94A),
)
# Marks Rust still files as Mn (stripped) that Unicode 14 moved to Mc.
_RUST_EXTRA_MARKS = ((0x1734, 0x1734),)
# Format characters (Cf) added after Rust's tables: Rust keeps them where Python would remove them.
_RUST_UNKNOWN_FORMAT = ((0x890, 0x891), (0x8E2, 0x8E2), (0x110CD, 0x110CD), (0x13430, 0x13438))
# Canonical decompositions Rust's NFD tables lack: the character stays whole.
_RUST_NO_DECOMPOSITION = ((0x11938, 0x11938),)
# Lower-case mappings of letters newer than Python 3.11's tables (Rust's std knows Unicode 16).
_RUST_LOWERCASE = {0x1C89: 0x1C8A, 0xA7CB: 0x264, 0xA7CC: 0xA7CD, 0xA7CE: 0xA7CF, 0xA7D2: 0xA7D3, 0xA7D4: 0xA7D5,
                   0xA7DA: 0xA7DB, 0xA7DC: 0x19B, **{c: c + 0x20 for c in range(0x10D50, 0x10D66)},
                   **{c: c + 0x1B for c in range(0x16EA0, 0x16EB9)}}
_WORD = re.compile(r"[^ ]+")
_ASCII_WORD = re.compile(r"[A-Za-z0-9]+|[!-/:-@\[-`{-~]")
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CHUNK = re.compile(r"[^ \t\n\r]+")


def _is_plain_ascii(text: str) -> bool:
    return text.isascii() and not _ASCII_CONTROL.search(text)


def _in(code: int, ranges) -> bool:
    return any(low <= code <= high for low, high in ranges)


def _is_removed(char: str) -> bool:
    """Dropped by Rust's clean-up: NUL, U+FFFD and `is_other` (Cc, Cf, Co, Cs; not Cn) except tab, LF, CR."""
    code = ord(char)
    if code == 0 or code == 0xFFFD:
        return True
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs") and not _in(code, _RUST_UNKNOWN_FORMAT)


def _is_accent(char: str) -> bool:
    """A non-spacing mark (Mn) by Rust's tables: what accent stripping removes."""
    code = ord(char)
    if _in(code, _RUST_EXTRA_MARKS):
        return True
    return unicodedata.category(char) == "Mn" and not _in(code, _RUST_UNKNOWN_MARKS)


def _strip_accents(char: str) -> str:
    if not _in(ord(char), _RUST_NO_DECOMPOSITION):
        char = unicodedata.normalize("NFD", char)
    return "".join(c for c in char if not _is_accent(c))


def _lower(text: str) -> str:
    return "".join(chr(_RUST_LOWERCASE[ord(c)]) if ord(c) in _RUST_LOWERCASE else c.lower() for c in text)


def _is_punctuation(char: str) -> bool:
    """Split off as its own word: ASCII punctuation and symbols, or any Unicode P* category."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(char: str) -> bool:
    return _in(ord(char), _CJK_RANGES)


@dataclass
class Encoding:
    """One encoded input. offsets are (start_char, end_char) into the original text ((0, 0) for specials)."""
    input_ids: list[int]
    token_type_ids: list[int]
    attention_mask: list[int]
    offsets: list[tuple[int, int]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)


class WordPieceTokenizer:
    """Uncased/cased BERT WordPiece tokenizer over a vocab dict; see the module docstring for fidelity."""

    def __init__(self, vocab: dict[str, int], do_lower_case: bool = True, strip_accents: bool | None = None,
                 tokenize_chinese_chars: bool = True, unk_token: str = UNK, max_input_chars_per_word: int = 100):
        missing = [t for t in (CLS, SEP, PAD, unk_token) if t not in vocab]
        if missing:
            raise BundleError(f"the vocab lacks the special tokens {', '.join(missing)}; use the BERT vocab.txt the model was trained with")
        self.vocab = dict(vocab)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        self.do_lower_case = bool(do_lower_case)
        self.strip_accents = self.do_lower_case if strip_accents is None else bool(strip_accents)
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.unk_token = unk_token
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        self.cls_id, self.sep_id, self.pad_id, self.unk_id = (self.vocab[t] for t in (CLS, SEP, PAD, unk_token))
        self._char_cache: dict[str, str] = {}
        # Per-instance LRU of word -> ((id, start, end), ...): most words in real text repeat.
        self._wordpieces = lru_cache(maxsize=WORD_CACHE_SIZE)(self._wordpieces_uncached)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_vocab(cls, path: str | Path, **settings) -> "WordPieceTokenizer":
        """Read a vocab.txt (one token a line, id = line number, UTF-8)."""
        path = Path(path)
        if not path.is_file():
            raise BundleError(f"vocab file {path} not found; pass the vocab.txt saved with the model or bundle")
        try:
            tokens = path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError:
            raise BundleError(f"vocab file {path} is not UTF-8 text; pass the BERT vocab.txt saved with the model") from None
        if tokens and tokens[-1] == "":
            tokens.pop()
        # As the Rust WordPiece reads a vocab: trailing whitespace trimmed, a repeated token keeps its last id.
        vocab = {token.rstrip(): index for index, token in enumerate(tokens)}
        return cls(vocab, **settings)

    @classmethod
    def from_manifest(cls, bundle_dir: str | Path, manifest: dict) -> "WordPieceTokenizer":
        """The tokenizer a bundle was exported with (vocab file and settings from manifest['tokenizer'])."""
        settings = manifest.get("tokenizer")
        if not isinstance(settings, dict) or "vocab" not in settings:
            raise BundleError(f"{bundle_dir}: bundle.json has no tokenizer section with a vocab; re-export the bundle")
        return cls.from_vocab(Path(bundle_dir) / settings["vocab"],
                              do_lower_case=settings.get("do_lower_case", True),
                              strip_accents=settings.get("strip_accents"),
                              tokenize_chinese_chars=settings.get("tokenize_chinese_chars", True))

    # ---- normalisation and pre-tokenisation -----------------------------------------------------
    def _normalize_char(self, char: str) -> str:
        """What one original character becomes; punctuation and CJK come out padded with spaces."""
        cached = self._char_cache.get(char)
        if cached is not None:
            return cached
        if _is_removed(char):
            out = ""
        elif char in _RUST_WHITESPACE:
            out = " "
        else:
            out = _strip_accents(char) if self.strip_accents else char
            if self.do_lower_case:
                out = _lower(out)
            if self.tokenize_chinese_chars and _is_cjk(char):
                out = f" {out} "
            else:
                out = "".join(f" {c} " if _is_punctuation(c) else (" " if c in _RUST_WHITESPACE else c) for c in out)
        if len(self._char_cache) >= CHAR_CACHE_SIZE:  # bounded even for text made of ever-new characters
            self._char_cache.clear()
        self._char_cache[char] = out
        return out

    def _normalize(self, text: str) -> tuple[str, list[int]]:
        """The normalised text and, for each of its characters, the index of the original character."""
        pieces: list[str] = []
        origin: list[int] = []
        normalize_char = self._normalize_char
        for index, char in enumerate(text):
            out = normalize_char(char)
            if out:
                pieces.append(out)
                origin.extend([index] * len(out))
        return "".join(pieces), origin

    def _words(self, text: str):
        """Each pre-tokenised word with, per character, the index of the original character it came from."""
        if _is_plain_ascii(text):
            yield from self._ascii_words(text, 0)
            return
        # Words never cross ASCII whitespace: plain-ASCII chunks take the fast path, the rest goes char by char.
        for chunk in _CHUNK.finditer(text):
            piece, base = chunk.group(), chunk.start()
            if _is_plain_ascii(piece):
                yield from self._ascii_words(piece, base)
                continue
            normalized, origin = self._normalize(piece)
            for match in _WORD.finditer(normalized):
                yield match.group(), [base + i for i in origin[match.start():match.end()]]

    def _ascii_words(self, text: str, base: int):
        """Fast path, same result: printable ASCII maps one to one onto the original characters."""
        lower = self.do_lower_case
        for match in _ASCII_WORD.finditer(text):
            word = match.group()
            yield (word.lower() if lower else word), range(base + match.start(), base + match.end())

    def _wordpieces_uncached(self, word: str) -> tuple[tuple[int, int, int], ...]:
        """Greedy longest-match WordPiece: ((id, start, end), ...) within the word; [UNK] for the whole word if stuck."""
        if len(word) > self.max_input_chars_per_word:
            return ((self.unk_id, 0, len(word)),)
        vocab = self.vocab
        pieces = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                candidate = word[start:end] if start == 0 else "##" + word[start:end]
                found = vocab.get(candidate)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return ((self.unk_id, 0, len(word)),)
            pieces.append((found, start, end))
            start = end
        return tuple(pieces)

    def _encode_words(self, text: str) -> tuple[list[int], list[tuple[int, int]], list[int]]:
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        words: list[int] = []
        for index, (word, origin) in enumerate(self._words(text)):
            for token_id, start, end in self._wordpieces(word):
                ids.append(token_id)
                offsets.append((origin[start], origin[end - 1] + 1))
                words.append(index)
        return ids, offsets, words

    # ---- public API ------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of one text, without special tokens."""
        ids = self._encode_words(text)[0]
        return [self.ids_to_tokens[i] for i in ids]

    def convert_tokens_to_ids(self, tokens):
        """Vocab ids; unknown tokens map to [UNK]. Accepts one token or a list."""
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_id)
        return [self.vocab.get(t, self.unk_id) for t in tokens]

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, int):
            return self.ids_to_tokens[ids]
        return [self.ids_to_tokens[i] for i in ids]

    def encode_pieces(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and original-text offsets of one text, no special tokens and no truncation."""
        return self._encode_words(text if isinstance(text, str) else str(text))[:2]

    def encode_words(self, text: str) -> tuple[list[int], list[tuple[int, int]], list[int]]:
        """encode_pieces plus each token's word index: the pre-tokenizer's words (whitespace- and punctuation-split),
        numbered from 0 as HF's `Encoding.word_ids()`, so a token can be widened to its whole word."""
        return self._encode_words(text if isinstance(text, str) else str(text))

    def build(self, first: tuple[list[int], list], second: tuple[list[int], list] | None = None) -> Encoding:
        """[CLS] first [SEP] (second [SEP]) from already-tokenised (ids, offsets) parts."""
        ids = [self.cls_id, *first[0], self.sep_id]
        offsets = [(0, 0), *first[1], (0, 0)]
        types = [0] * len(ids)
        if second is not None:
            ids += [*second[0], self.sep_id]
            offsets += [*second[1], (0, 0)]
            types += [1] * (len(second[0]) + 1)
        return Encoding(ids, types, [1] * len(ids), offsets, [self.ids_to_tokens[i] for i in ids])

    def encode(self, text: str, text_pair: str | None = None, max_length: int | None = None, truncation: bool = True) -> Encoding:
        """[CLS] text [SEP] (text_pair [SEP]), truncated like HF ('longest_first' for pairs) when max_length is set."""
        first = self.encode_pieces(text)
        second = self.encode_pieces(text_pair) if text_pair is not None else None
        if max_length is not None and truncation:
            specials = 2 if second is None else 3
            budget = max_length - specials
            if budget < 0:
                raise ValueError(f"max_length {max_length} leaves no room for the {specials} special tokens; use max_length >= {specials}")
            if second is None:
                first = (first[0][:budget], first[1][:budget])
            elif len(first[0]) + len(second[0]) > budget:
                n1, n2 = longest_first_lengths(len(first[0]), len(second[0]), budget)
                first, second = (first[0][:n1], first[1][:n1]), (second[0][:n2], second[1][:n2])
        return self.build(first, second)


def longest_first_lengths(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """Kept lengths of a pair under HF's Rust 'longest_first': the shorter keeps up to half, the longer the rest."""
    if n1 + n2 <= budget:
        return n1, n2
    if n1 > n2:
        short = min(n2, budget // 2)
        return budget - short, short
    short = min(n1, budget // 2)
    return short, budget - short


def write_vocab(vocab: dict[str, int], path: str | Path) -> Path:
    """vocab.txt as `from_vocab` reads it: one token a line in id order; ids must run 0..n-1 without gaps."""
    tokens = sorted(vocab, key=vocab.__getitem__)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError("the vocab's ids have gaps or repeats; a vocab.txt cannot express it")
    path = Path(path)
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return path
