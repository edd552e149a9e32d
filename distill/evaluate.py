"""Score a teacher or student on the eval split with the task's metric (sharded over processes, gathered)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from distill import metrics
from distill.features import classification_features, collate, qa_answers, qa_eval_features
from distill.objectives import task_logits


def predict_logits(accelerator, model, features: list[dict], batch_size: int, desc: str, pad_id: int = 0) -> list[np.ndarray]:
    """Logits for every feature, in order: [logits] or [start_logits, end_logits] as numpy arrays."""
    loader = accelerator.prepare_data_loader(DataLoader(features, batch_size=batch_size, collate_fn=lambda f: collate(f, pad_id)))
    model.eval()
    chunks: list[list[np.ndarray]] = []
    with torch.no_grad():
        for batch in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False, dynamic_ncols=True):
            outputs = task_logits(model(**batch))
            chunks.append([accelerator.gather_for_metrics(o.contiguous()).cpu().numpy() for o in outputs])
    arrays = [np.concatenate(parts) for parts in zip(*chunks)]
    if len(arrays[0]) != len(features):
        raise RuntimeError(f"gathered {len(arrays[0])} predictions for {len(features)} features")
    return arrays


def evaluate(accelerator, model, task, tokenizer, examples: list[dict], settings, desc: str = "eval") -> dict[str, float]:
    """{"accuracy", "f1"} for classification (F1 of the positive class), {"exact_match", "f1"} for QA."""
    if task.is_qa:
        inputs, windows = qa_eval_features(tokenizer, examples, settings.max_seq_length, settings.doc_stride, settings.max_query_length)
        start, end = predict_logits(accelerator, model, inputs, settings.eval_batch_size, desc, tokenizer.pad_token_id)
        return metrics.squad_scores(qa_answers(examples, windows, start, end, settings.max_answer_length), examples)
    features = classification_features(tokenizer, examples, settings.max_seq_length)
    (logits,) = predict_logits(accelerator, model, features, settings.eval_batch_size, desc, tokenizer.pad_token_id)
    predictions = logits.argmax(-1)
    labels = [e["label"] for e in examples]
    return {"accuracy": metrics.accuracy(predictions, labels), "f1": metrics.binary_f1(predictions, labels)}
