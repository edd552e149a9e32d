"""The teacher's logits on the transfer set, computed once before prediction-layer distillation.

The frozen teacher runs in eval mode, so its logits are the same in every epoch; computing them in each step
costs a teacher forward pass per batch (what the cache saves: benchmarks/RESULTS.md, "Teacher-logit cache"). Computed once,
in length order with fixed batches, on every process, the cache is the same after a `--resume` and on each of
several processes. QA logits are per token, so each row keeps its own length and
`collate` pads it with PAD_LOGIT, a score that softmax turns into zero probability.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from distill.features import FEATURE_KEYS, collate
from distill.attention_scores import forward_inputs
from distill.objectives import CLASSIFICATION_SOFT_TARGETS as CLASSIFICATION_KEYS, QA_SOFT_TARGETS as QA_KEYS, task_logits


def with_teacher_logits(teacher, features: list[dict], batch_size: int, pad_id: int, device, show: bool = True) -> list[dict]:
    """Copies of `features` that also carry the teacher's logits (float32 numpy rows)."""
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    targets: list[dict] = [{} for _ in features]
    teacher.eval()
    with torch.no_grad():
        for start in tqdm(range(0, len(order), batch_size), desc="teacher logits", disable=not show, leave=False, dynamic_ncols=True):
            rows = order[start:start + batch_size]
            batch = collate([{k: features[i][k] for k in FEATURE_KEYS} for i in rows], pad_id)
            outputs = task_logits(teacher(**forward_inputs(teacher, {k: v.to(device) for k, v in batch.items()})))
            keys = QA_KEYS if len(outputs) == 2 else CLASSIFICATION_KEYS
            for key, output in zip(keys, outputs):
                values = output.float().cpu().numpy()
                for row, i in enumerate(rows):
                    # QA: one logit per token of this feature (not of the batch's padding)
                    targets[i][key] = values[row, :len(features[i]["input_ids"])] if key in QA_KEYS else values[row]
    return [{**feature, **target} for feature, target in zip(features, targets)]
