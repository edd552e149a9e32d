"""Examples -> model features (token ids and targets), batching, and QA span decoding.

Classification: one feature per text, padded per batch. QA: the HF fast tokenizer windows long contexts
with a stride (overflowing tokens + offsets); a window without the answer points start/end at [CLS].
"""
from __future__ import annotations

import numpy as np
import torch

from mobile_app.runtime.contract import INPUT_NAMES
from mobile_app.runtime.qa import QAWindow, best_span

FEATURE_KEYS = INPUT_NAMES  # the model inputs a feature carries, named as the bundle names them


def classification_features(tokenizer, examples: list[dict], max_length: int) -> list[dict]:
    """One feature per example: its text, or its text pair cut longest-first (as the phone's tokenizer cuts it)."""
    pairs = [e["text_pair"] for e in examples] if examples and "text_pair" in examples[0] else None
    encoded = tokenizer([e["text"] for e in examples], pairs, truncation=True, max_length=max_length)
    return [{**{k: encoded[k][i] for k in FEATURE_KEYS}, "labels": int(e["label"])} for i, e in enumerate(examples)]


def text_features(tokenizer, texts: list[str], max_length: int) -> list[dict]:
    """Plain texts for general distillation (no targets)."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    return [{k: encoded[k][i] for k in FEATURE_KEYS} for i in range(len(texts))]


def _clip_question(tokenizer, question: str, max_query_length: int) -> str:
    """Cut a question after its first `max_query_length` tokens, as SQuAD feature builders do."""
    encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    return question if len(offsets) <= max_query_length else question[:offsets[max_query_length - 1][1]]


def _qa_windows(tokenizer, examples, max_length, doc_stride, max_query_length, padding):
    questions = [_clip_question(tokenizer, e["question"].lstrip(), max_query_length) for e in examples]
    return tokenizer(questions, [e["context"] for e in examples], truncation="only_second", max_length=max_length,
                     stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True, padding=padding)


def qa_train_features(tokenizer, examples: list[dict], max_length: int, doc_stride: int, max_query_length: int) -> list[dict]:
    """Windows with start/end token positions of the first answer ([CLS] = 0 when the answer is outside).

    Not padded: batches pad to their longest window (short paragraphs cost less)."""
    enc = _qa_windows(tokenizer, examples, max_length, doc_stride, max_query_length, padding=False)
    features = []
    for i, offsets in enumerate(enc["offset_mapping"]):
        example = examples[enc["overflow_to_sample_mapping"][i]]
        start_char = example["answers"]["answer_start"][0]
        end_char = start_char + len(example["answers"]["text"][0])
        sequence_ids = enc.sequence_ids(i)
        context = [t for t, s in enumerate(sequence_ids) if s == 1]
        start = end = 0
        if context and offsets[context[0]][0] <= start_char and offsets[context[-1]][1] >= end_char:
            start = next(t for t in context if offsets[t][1] > start_char)
            end = next(t for t in reversed(context) if offsets[t][0] < end_char)
        features.append({**{k: enc[k][i] for k in FEATURE_KEYS}, "start_positions": start, "end_positions": end})
    return features


def qa_eval_features(tokenizer, examples: list[dict], max_length: int, doc_stride: int, max_query_length: int) -> tuple[list[dict], list[tuple[int, QAWindow]]]:
    """(model inputs, (example index, the window as the phone's QA code reads it)) per window.

    Not padded: batches pad to their longest window, as the phone pads to its bucket and reads only the window's own
    tokens. Each window carries its context offsets and every context token's whole-word span (HF's word ids, over
    all windows of the example), so that `mobile_app.qa.best_span` picks and snaps answers here exactly as it does on
    the phone and in verify."""
    enc = _qa_windows(tokenizer, examples, max_length, doc_stride, max_query_length, padding=False)
    words: dict[int, dict[int, list[int]]] = {}
    for i, offsets in enumerate(enc["offset_mapping"]):
        spans = words.setdefault(enc["overflow_to_sample_mapping"][i], {})
        for (start, end), word, seq in zip(offsets, enc.word_ids(i), enc.sequence_ids(i)):
            if seq == 1:
                span = spans.setdefault(word, [start, end])
                span[0], span[1] = min(span[0], start), max(span[1], end)
    inputs, windows = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        example = enc["overflow_to_sample_mapping"][i]
        sequence_ids = enc.sequence_ids(i)
        context = [s == 1 for s in sequence_ids]
        row = {k: enc[k][i] for k in FEATURE_KEYS}
        inputs.append(row)
        windows.append((example, QAWindow(row["input_ids"], row["token_type_ids"], row["attention_mask"],
                                          [tuple(o) if c else None for o, c in zip(offsets, context)],
                                          context.index(True) if any(context) else len(context),
                                          [tuple(words[example][w]) if c else None for w, c in zip(enc.word_ids(i), context)])))
    return inputs, windows


def qa_answers(examples: list[dict], windows: list[tuple[int, QAWindow]], start_logits: np.ndarray, end_logits: np.ndarray,
               max_answer_length: int) -> dict[str, str]:
    """{id: the answer text the phone would show}: `mobile_app.qa.best_span` over each example's windows."""
    grouped: dict[int, list[int]] = {}
    for row, (example, _) in enumerate(windows):
        grouped.setdefault(example, []).append(row)
    answers = {}
    for index, example in enumerate(examples):
        rows = grouped.get(index, [])
        answers[example["id"]] = best_span([windows[r][1] for r in rows], [start_logits[r] for r in rows],
                                           [end_logits[r] for r in rows], example["context"],
                                           max_answer_length=max_answer_length).text
    return answers


# a logit that softmax turns into zero probability, finite so that 0 * log-probability stays 0
PAD_LOGIT = -1e4


def collate(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad token lists to the longest in the batch; scalar targets become a 1-d tensor; float rows (the
    teacher's cached logits) pad with PAD_LOGIT to the longest row."""
    width = max(len(f["input_ids"]) for f in features)
    batch = {}
    for key in features[0]:
        values = [f[key] for f in features]
        if isinstance(values[0], np.ndarray):
            longest = max(len(v) for v in values)
            batch[key] = torch.from_numpy(np.stack([np.pad(v, (0, longest - len(v)), constant_values=PAD_LOGIT) for v in values]))
        elif isinstance(values[0], list):
            fill = pad_id if key == "input_ids" else 0
            batch[key] = torch.tensor([v + [fill] * (width - len(v)) for v in values], dtype=torch.long)
        else:
            batch[key] = torch.tensor(values, dtype=torch.long)
    return batch
