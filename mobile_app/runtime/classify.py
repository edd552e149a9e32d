"""Text classification around the model: text -> encoded input, model scores -> a labelled prediction.

numpy + standard library only; `python -m export verify` encodes with `encode_text` too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mobile_app.runtime.bundle import BundleError


@dataclass(frozen=True)
class Prediction:
    """The top label, its probability, every label's probability, and the label's index."""
    label: str
    confidence: float
    probabilities: dict[str, float]
    index: int


def encode_text(tokenizer, text: str, max_length: int, text_pair: str | None = None):
    """[CLS] text [SEP] (text_pair [SEP]), cut to max_length tokens longest-first as Hugging Face's tokenizers do;
    empty or missing text gives [CLS][SEP]."""
    return tokenizer.encode("" if text is None else str(text), None if text_pair is None else str(text_pair),
                            max_length=max_length, truncation=True)


def softmax(logits) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    values = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(values - values.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def from_probabilities(probabilities, labels) -> Prediction:
    """A Prediction from one example's class probabilities (e.g. a Core ML classifier's output)."""
    probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    labels = list(labels)
    if probs.size != len(labels):
        raise BundleError(f"the model gives {probs.size} scores but the bundle lists {len(labels)} labels ({', '.join(labels)}); re-export the bundle")
    index = int(np.argmax(probs))
    return Prediction(labels[index], float(probs[index]), {label: float(p) for label, p in zip(labels, probs)}, index)


def classify(logits, labels) -> Prediction:
    """A Prediction from one example's logits (shape (n_labels,) or (1, n_labels))."""
    return from_probabilities(softmax(np.asarray(logits, dtype=np.float64).reshape(-1)), labels)
