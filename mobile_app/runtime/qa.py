"""Extractive QA around the model: question + context -> overlapping windows -> best answer span.

The windows are exactly what Hugging Face's fast tokenizer returns for
`tokenizer(question, context, truncation="only_second", max_length, stride, return_overflowing_tokens=True,
return_offsets_mapping=True)`, and `best_span` is the n-best search of HF's `postprocess_qa_predictions`,
so the phone answers as the reference pipeline does. The chosen span is then widened to whole words, as the
transformers 4 question-answering pipeline does with `align_to_words=True`: a start or end token that is a
word piece ("##sius") takes its word's first or last character, so the user never sees "100 degrees Cels".
numpy + standard library only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mobile_app.runtime.contract import DEFAULT_MAX_ANSWER_LENGTH


@dataclass
class QAWindow:
    """One model input: [CLS] question [SEP] context slice [SEP].

    offsets[i] is the (start_char, end_char) span of token i in the context, or None when token i is not a
    context token; context_start is the index of the first context token. words[i] is the span of the whole
    word token i belongs to (None outside the context; no list: answers keep token boundaries).
    """
    input_ids: list[int]
    token_type_ids: list[int]
    attention_mask: list[int]
    offsets: list[tuple[int, int] | None]
    context_start: int
    words: list[tuple[int, int] | None] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class Answer:
    """The answer text sliced from the original context, its character span and its score (start + end logit)."""
    text: str
    start_char: int
    end_char: int
    score: float

    @property
    def found(self) -> bool:
        return self.score != -math.inf


NO_ANSWER = Answer("", 0, 0, -math.inf)


def window_spans(n_tokens: int, window: int, stride: int) -> list[tuple[int, int]]:
    """[start, stop) token ranges of the context windows: each next one starts `window - stride` later (HF's overflow)."""
    if n_tokens <= window:
        return [(0, n_tokens)]
    step = window - stride
    spans = []
    for start in range(0, n_tokens, step):
        stop = min(start + window, n_tokens)
        spans.append((start, stop))
        if stop == n_tokens:
            break
    return spans


def make_windows(tokenizer, question: str, context: str, max_seq_length: int = 384, doc_stride: int = 128,
                 max_query_length: int = 64) -> list[QAWindow]:
    """The model inputs of one question: the question (cut to max_query_length tokens) with each context window."""
    q_ids, _ = tokenizer.encode_pieces(question or "")
    q_ids = q_ids[:max_query_length]
    c_ids, c_offsets, c_words = tokenizer.encode_words(context or "")
    c_word_spans = word_spans(c_offsets, c_words)
    window = max_seq_length - len(q_ids) - 3
    if window <= doc_stride:
        raise ValueError(f"max_seq_length {max_seq_length} leaves {window} context tokens per window after a "
                         f"{len(q_ids)}-token question, not more than doc_stride {doc_stride}; use a longer "
                         f"max_seq_length or a smaller doc_stride/max_query_length")
    head = [tokenizer.cls_id, *q_ids, tokenizer.sep_id]
    windows = []
    for start, stop in window_spans(len(c_ids), window, doc_stride):
        ids = head + c_ids[start:stop] + [tokenizer.sep_id]
        types = [0] * len(head) + [1] * (stop - start + 1)
        offsets = [None] * len(head) + list(c_offsets[start:stop]) + [None]
        words = [None] * len(head) + c_word_spans[start:stop] + [None]
        windows.append(QAWindow(ids, types, [1] * len(ids), offsets, len(head), words))
    return windows


def word_spans(offsets: list[tuple[int, int]], word_ids: list[int]) -> list[tuple[int, int]]:
    """Per token, the character span of its whole word: from the word's first piece's start to its last piece's end
    (HF's `Encoding.word_to_chars(token_to_word(i))`)."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for (start, end), word in zip(offsets, word_ids):
        first[word] = min(start, first.get(word, start))
        last[word] = max(end, last.get(word, end))
    return [(first[word], last[word]) for word in word_ids]


def fitted_stride(max_seq_length: int, doc_stride: int, max_query_length: int) -> tuple[int, int]:
    """(doc_stride, max_query_length) for windows of max_seq_length tokens: the given ones when a full-length
    question still leaves more than doc_stride context tokens, else both cut to max_seq_length // 4 (short buckets)."""
    if max_seq_length - max_query_length - 3 > doc_stride:
        return doc_stride, max_query_length
    return min(doc_stride, max_seq_length // 4), min(max_query_length, max_seq_length // 4)


def bundle_windows(tokenizer, question: str, context: str, settings: dict, max_seq_length: int | None = None) -> list[QAWindow]:
    """make_windows with a bundle's tokenizer settings (manifest["tokenizer"]), at max_seq_length or the bundle's own."""
    length = int(max_seq_length or settings["max_seq_length"])
    stride, query = fitted_stride(length, int(settings.get("doc_stride", 128)), int(settings.get("max_query_length", 64)))
    return make_windows(tokenizer, question, context, length, stride, query)


def _top(logits: np.ndarray, n: int) -> np.ndarray:
    """Indexes of the n largest logits, largest first (the same argsort HF's post-processing uses)."""
    return np.argsort(logits)[-1:-n - 1:-1]


def best_span(windows: list[QAWindow], start_logits, end_logits, context: str, n_best: int = 20,
              max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH, align_to_words: bool = True) -> Answer:
    """The highest-scoring valid span over all windows; NO_ANSWER ("" with score -inf) when there is none.

    Per window, the n_best top start and end positions are paired; a pair counts when both are context
    tokens, end >= start and it spans at most max_answer_length tokens. Logits may be padded (extra
    positions are ignored) and come as one 1-D array per window or one 2-D array. The winner's text runs
    from its start token's word start to its end token's word end (align_to_words; windows that carry words).
    """
    best = NO_ANSWER
    for window, starts, ends in zip(windows, start_logits, end_logits):
        starts = np.asarray(starts, dtype=np.float32).reshape(-1)
        ends = np.asarray(ends, dtype=np.float32).reshape(-1)
        offsets = window.offsets
        n = len(offsets)
        for s in _top(starts, n_best):
            if s >= n or offsets[s] is None:
                continue
            for e in _top(ends, n_best):
                if e >= n or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(starts[s] + ends[e])
                if score > best.score:
                    spans = window.words if align_to_words and window.words is not None else offsets
                    start_char, end_char = spans[s][0], spans[e][1]
                    best = Answer(context[start_char:end_char], start_char, end_char, score)
    return best
