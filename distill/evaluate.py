"""Score a teacher or student on the eval split with the task's metric (sharded over processes, gathered)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from distill import metrics
from distill.features import PAD_LOGIT, classification_features, collate, qa_answers, qa_eval_features
from distill.attention_scores import encoder_of, forward_inputs
from distill.objectives import task_logits
from mobile_app.runtime.qa import fitted_stride


def predict_logits(accelerator, model, features: list[dict], batch_size: int, desc: str, pad_id: int = 0) -> list[np.ndarray]:
    """Logits for every feature, in order: [logits] or [start_logits, end_logits] as numpy arrays.

    Features run in length order (batches pad to their longest, not to a fixed length); per-token logits past a
    feature's own tokens are PAD_LOGIT, which no span search picks."""
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    width = max(len(f["input_ids"]) for f in features)
    loader = accelerator.prepare_data_loader(DataLoader([features[i] for i in order], batch_size=batch_size,
                                                        collate_fn=lambda f: collate(f, pad_id)))
    model.eval()
    chunks: list[list[np.ndarray]] = []
    with torch.no_grad():
        for batch in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False, dynamic_ncols=True):
            outputs = task_logits(model(**forward_inputs(model, batch)))
            if len(outputs) == 2:  # QA: logits per token; a window's padding, in its batch and to one width, gets PAD_LOGIT
                padding = batch["attention_mask"] == 0
                outputs = [F.pad(o.masked_fill(padding, PAD_LOGIT), (0, width - o.shape[-1]), value=PAD_LOGIT) for o in outputs]
            chunks.append([accelerator.gather_for_metrics(o.contiguous()).cpu().numpy() for o in outputs])
    arrays = [np.concatenate(parts) for parts in zip(*chunks)]
    if len(arrays[0]) != len(features):
        raise RuntimeError(f"gathered {len(arrays[0])} predictions for {len(features)} features")
    back = np.argsort(order)  # from length order back to the features' order
    return [array[back] for array in arrays]


def evaluate(accelerator, model, task, tokenizer, examples: list[dict], settings, desc: str = "eval") -> dict[str, float]:
    """{"accuracy", "f1"} for classification (F1 of the positive class, macro F1 over 3 or more classes),
    {"exact_match", "f1"} for QA.

    QA is scored on the windows the app runs: the task's length and stride (384 and 128 for SQuAD, within the
    model's positions), whatever length the model was trained at."""
    if task.is_qa:
        length = min(task.max_seq_length, encoder_of(model).config.max_position_embeddings)
        stride, query = fitted_stride(length, task.doc_stride, task.max_query_length)
        inputs, windows = qa_eval_features(tokenizer, examples, length, stride, query)
        start, end = predict_logits(accelerator, model, inputs, settings.eval_batch_size, desc, tokenizer.pad_token_id)
        return metrics.squad_scores(qa_answers(examples, windows, start, end, settings.max_answer_length), examples)
    features = classification_features(tokenizer, examples, settings.max_seq_length)
    (logits,) = predict_logits(accelerator, model, features, settings.eval_batch_size, desc, tokenizer.pad_token_id)
    predictions = logits.argmax(-1)
    labels = [e["label"] for e in examples]
    classes = len(task.labels)
    f1 = metrics.binary_f1(predictions, labels) if classes <= 2 else metrics.macro_f1(predictions, labels, classes)
    return {"accuracy": metrics.accuracy(predictions, labels), "f1": f1}
