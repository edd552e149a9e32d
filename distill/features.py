"""Examples -> model features (token ids and targets), batching, and QA span decoding.

Classification: one feature per text, padded per batch. QA: the HF fast tokenizer windows long contexts
with a stride (overflowing tokens + offsets); a window without the answer points start/end at [CLS].
"""
from __future__ import annotations

import numpy as np
import torch

from mobile_app.runtime.contract import INPUT_NAMES

FEATURE_KEYS = INPUT_NAMES  # the model inputs a feature carries, named as the bundle names them


def classification_features(tokenizer, examples: list[dict], max_length: int) -> list[dict]:
    encoded = tokenizer([e["text"] for e in examples], truncation=True, max_length=max_length)
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


def qa_eval_features(tokenizer, examples: list[dict], max_length: int, doc_stride: int, max_query_length: int) -> tuple[list[dict], list[dict]]:
    """(model inputs, span info) per window; span info keeps the example index and context offsets.

    Padded to max_length so every process's logits have one shape for gathering."""
    enc = _qa_windows(tokenizer, examples, max_length, doc_stride, max_query_length, padding="max_length")
    inputs, spans = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        sequence_ids = enc.sequence_ids(i)
        inputs.append({k: enc[k][i] for k in FEATURE_KEYS})
        spans.append({"example": enc["overflow_to_sample_mapping"][i],
                      "offsets": [tuple(o) if s == 1 else None for o, s in zip(offsets, sequence_ids)]})
    return inputs, spans


def best_spans(examples: list[dict], spans: list[dict], start_logits: np.ndarray, end_logits: np.ndarray,
               max_answer_length: int, n_best: int = 20) -> dict[str, str]:
    """The highest start+end score span of context tokens over each example's windows -> {id: answer text}."""
    best: dict[int, tuple[float, str]] = {}
    for span, starts, ends in zip(spans, start_logits, end_logits):
        offsets = span["offsets"]
        top_starts = np.argsort(starts)[::-1][:n_best]
        top_ends = np.argsort(ends)[::-1][:n_best]
        context = examples[span["example"]]["context"]
        for s in top_starts:
            for e in top_ends:
                if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                    continue
                if e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(starts[s] + ends[e])
                if span["example"] not in best or score > best[span["example"]][0]:
                    best[span["example"]] = (score, context[offsets[s][0]:offsets[e][1]])
    return {example["id"]: best.get(i, (0.0, ""))[1] for i, example in enumerate(examples)}


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
