"""One raw eval example -> the model inputs the phone computes -> its prediction from the model's outputs.

`python -m export verify` runs exactly this on every artifact and every runtime (the PyTorch reference in the
main environment, each TFLite interpreter in its own, export/verify/runtime_worker.py), so a parity figure is a
figure of the app's own tokenizer, padding and QA post-processing. numpy + standard library only.
"""
from __future__ import annotations

import numpy as np

from mobile_app.runtime.classify import classify, encode_text, from_probabilities
from mobile_app.runtime.contract import OUTPUT_NAMES, PER_TOKEN_OUTPUTS, PROBABILITIES_OUTPUT
from mobile_app.runtime.qa import best_span, bundle_windows

LOGITS = OUTPUT_NAMES["classification"][0]
START, END = PER_TOKEN_OUTPUTS

DEFAULT_MAX_ANSWER_LENGTH = 30


def example_inputs(tokenizer, manifest: dict, example: dict) -> list:
    """The encodings of one example: one for a text, the overlapping windows of question + context for QA."""
    settings = manifest["tokenizer"]
    if manifest["head"] == "qa":
        return bundle_windows(tokenizer, example["question"], example["context"], settings)
    return [encode_text(tokenizer, example["text"], settings["max_seq_length"])]


def input_fields(encoding) -> tuple[list[int], list[int], list[int]]:
    """(input_ids, attention_mask, token_type_ids) of an Encoding, a QAWindow or a dict of lists: what Backend.run takes."""
    get = encoding.get if isinstance(encoding, dict) else lambda key: getattr(encoding, key)
    return list(get("input_ids")), list(get("attention_mask")), list(get("token_type_ids"))


def example_prediction(manifest: dict, example: dict, windows: list, outputs: list[dict]):
    """Top-1 label index (classification) or the answer span [start_char, end_char, text] (QA)."""
    if manifest["head"] != "qa":
        if LOGITS in outputs[0]:
            return classify(outputs[0][LOGITS], manifest["labels"]).index
        probabilities = outputs[0][PROBABILITIES_OUTPUT]
        if isinstance(probabilities, dict):
            probabilities = [probabilities[label] for label in manifest["labels"]]
        return from_probabilities(probabilities, manifest["labels"]).index
    answer = best_span(windows, [np.asarray(o[START]).reshape(-1) for o in outputs],
                       [np.asarray(o[END]).reshape(-1) for o in outputs], example["context"],
                       max_answer_length=int(manifest["tokenizer"].get("max_answer_length", DEFAULT_MAX_ANSWER_LENGTH)))
    return [answer.start_char, answer.end_char, answer.text]
