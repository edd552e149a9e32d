"""Raw task examples -> the int32 inputs a bucket takes, through the ON-DEVICE tokenizer and QA windowing.

Static-int8 calibration feeds models from here; like verification (mobile_app.runtime.task_runner) it uses
the app's own code, so the ids are the ids the phone computes (mobile_app.runtime.tokenizer / classify / qa),
padded the way the phone pads.
"""
from __future__ import annotations

import random

import numpy as np

from mobile_app.runtime.errors import UserError
from mobile_app.runtime.task_runner import input_fields as encoded_fields

CALIBRATION_SEED = 0


def pad_to_bucket(input_ids, attention_mask, token_type_ids, bucket: int, pad_id: int = 0) -> dict[str, np.ndarray]:
    """Batch-1 int32 arrays of exactly `bucket` tokens, padded as the app's backends pad."""
    from mobile_app.runtime.backends import Backend

    padded, _ = Backend("calibration", {}, [bucket], pad_id).pad(input_ids, attention_mask, token_type_ids)
    return padded


def encode_classification(tokenizer, text: str, max_length: int, text_pair: str | None = None):
    """One encoded text or text pair (input_ids, token_type_ids, attention_mask lists) as the app encodes it."""
    from mobile_app.runtime.classify import encode_text

    return encode_text(tokenizer, text, max_length, text_pair)


def qa_windows(tokenizer, example: dict, settings: dict, max_seq_length: int | None = None) -> list:
    """The app's QA windows of one SQuAD example (question + context, doc stride), each with offsets."""
    from mobile_app.runtime.qa import bundle_windows

    return bundle_windows(tokenizer, example["question"], example["context"], settings, max_seq_length)


def calibration_set(spec, tokenizer, settings: dict, train_examples: list[dict], buckets, count: int) -> dict[str, list[dict]]:
    """{signature key: [padded inputs]}: the same `count` seeded train examples encoded at every bucket length."""
    from mobile_app.runtime.contract import signature_key

    if count < 1:
        raise UserError(f"calibration needs at least 1 example, got {count}; pass a positive --calibration-examples")
    chosen = random.Random(CALIBRATION_SEED).sample(train_examples, min(count, len(train_examples)))
    result = {}
    for bucket in buckets:
        rows = []
        for example in chosen:
            if spec.is_qa:
                encoding = qa_windows(tokenizer, example, settings, max_seq_length=bucket)[0]
            else:
                encoding = encode_classification(tokenizer, example["text"], bucket, example.get("text_pair"))
            ids, mask, types = encoded_fields(encoding)
            rows.append(pad_to_bucket(ids, mask, types, bucket, tokenizer.pad_id))
        result[signature_key(bucket)] = rows
    return result
