"""The on-device runtime's answers on a fixed corpus, as JSON: run by every Python the runtime must work in.

tests/test_runtime_numpy1.py runs this file with the main environment's Python (numpy 2) and with each side
runtime's (numpy 1.x, as kivy-ios and python-for-android ship) and requires the same answers; the main
environment's answers are themselves checked against Hugging Face by tests/test_tokenizer*.py and
tests/test_qa_postprocess.py. Imports numpy, the standard library and mobile_app.runtime only.

  python tests/runtime_probe.py REQUEST.json   (prints the answers as one JSON object)
"""
from __future__ import annotations

import json
import platform
import sys

import numpy as np

from mobile_app.runtime import load_task
from mobile_app.runtime.backends import Backend
from mobile_app.runtime.classify import classify, softmax
from mobile_app.runtime.qa import best_span, bundle_windows, make_windows
from mobile_app.runtime.tokenizer import WordPieceTokenizer


def _encoding(e) -> list:
    return [list(e.input_ids), list(e.token_type_ids), list(e.attention_mask), [list(o) for o in e.offsets]]


def _distinct_logits(n: int, seed: int) -> np.ndarray:
    """Tie-free deterministic logits: argsort order does not depend on the sort algorithm of a numpy release."""
    return ((np.arange(n) * 389 + seed * 97) % 1009).astype(np.float64) / 50.0 - 10.0


def probe(request: dict) -> dict:
    tokenizer = WordPieceTokenizer.from_vocab(request["vocab"])
    out = {"numpy": np.__version__, "machine": platform.machine()}
    out["texts"] = [[tokenizer.tokenize(t), _encoding(tokenizer.encode(t, max_length=64))] for t in request["texts"]]
    out["pairs"] = [_encoding(tokenizer.encode(a, b, max_length=24)) for a, b in request["pairs"]]
    spans, windows_out = [], []
    for i, example in enumerate(request["squad"]):
        windows = make_windows(tokenizer, example["question"], example["context"], 96, 32, 16)
        windows_out.append([_encoding_window(w) for w in windows])
        starts = [_distinct_logits(len(w), i + k) for k, w in enumerate(windows)]
        ends = [_distinct_logits(len(w), 3 * i + k + 1) for k, w in enumerate(windows)]
        answer = best_span(windows, starts, ends, example["context"], max_answer_length=12)
        spans.append([answer.text, answer.start_char, answer.end_char, answer.score])
    out["windows"], out["spans"] = windows_out, spans
    out["classify"] = [[p.label, p.index, p.confidence] for p in (classify(row, ["a", "b", "c"]) for row in request["logits"])]
    out["softmax"] = softmax(np.asarray(request["logits"])).tolist()
    padded, n = Backend("probe", {}, [8, 16]).pad([101, 7, 8, 102], [1, 1, 1, 1], [0, 0, 0, 0])
    out["pad"] = [n] + [padded[k].tolist() for k in sorted(padded)]
    runner = load_task(request["bundle"], precision="fp32")
    out["task"] = [[p.label, p.probabilities] for p, _ in (runner.classify(t) for t in request["texts"])]
    qa = load_task(request["qa_bundle"], precision="fp32")
    out["answers"] = [[a.text, a.start_char, a.end_char] for a, _ in (qa.answer(e["question"], e["context"]) for e in request["squad"])]
    out["qa_windows"] = [[_encoding_window(w) for w in bundle_windows(qa.tokenizer, e["question"], e["context"], qa.settings)]
                         for e in request["squad"]]
    return out


def _encoding_window(w) -> list:
    return [list(w.input_ids), list(w.token_type_ids), list(w.attention_mask), [None if o is None else list(o) for o in w.offsets], w.context_start]


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        print(json.dumps(probe(json.load(handle))))
