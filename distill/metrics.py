"""Task metrics: accuracy, F1 of the positive class (macro F1 over 3 or more classes), and SQuAD v1.1's official EM/F1."""
from __future__ import annotations

import collections
import re
import string


def accuracy(predictions, labels) -> float:
    labels = list(labels)
    return 100.0 * sum(int(p) == int(y) for p, y in zip(predictions, labels)) / max(1, len(labels))


def binary_f1(predictions, labels, positive: int = 1) -> float:
    pairs = list(zip((int(p) for p in predictions), (int(y) for y in labels)))
    tp = sum(p == positive and y == positive for p, y in pairs)
    fp = sum(p == positive and y != positive for p, y in pairs)
    fn = sum(p != positive and y == positive for p, y in pairs)
    return 0.0 if tp == 0 else 100.0 * 2 * tp / (2 * tp + fp + fn)


def macro_f1(predictions, labels, classes: int) -> float:
    """The mean over classes of each class's F1 (a rare class counts as much as a common one)."""
    return sum(binary_f1(predictions, labels, positive=c) for c in range(classes)) / max(1, classes)


def normalize_answer(text: str) -> str:
    """The official SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_f1(prediction: str, truth: str) -> float:
    pred_tokens, true_tokens = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(pred_tokens) & collections.Counter(true_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(true_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], examples: list[dict]) -> dict[str, float]:
    """EM and F1 in percent, each the max over a question's reference answers, as the official script does."""
    em = f1 = 0.0
    for example in examples:
        prediction = predictions.get(example["id"], "")
        truths = example["answers"]["text"]
        em += max(float(normalize_answer(prediction) == normalize_answer(t)) for t in truths)
        f1 += max(squad_f1(prediction, t) for t in truths)
    n = max(1, len(examples))
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}
