"""Task-agnostic general distillation: the teacher's base encoder teaches a fresh student encoder on plain text.

Only the intermediate-layer losses are used (attention scores + hidden states), as in TinyBERT's general
stage. The corpus is text files with one text per line; offline, the task's own training texts serve.
The result, OUT/general/, is a BertModel folder that `--init general` loads into the task student.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from transformers import BertModel

from distill.model_weights import check_weight_files
from distill.embedding_init import project_teacher_embeddings
from mobile_app.runtime.errors import UserError
from distill.features import text_features
from distill.attention_scores import freeze_word_embeddings
from distill.objectives import IntermediateObjective
from distill.run_folder import cached_record, publish_model_folder
from distill.student import StudentShape, student_config
from distill.teacher import load_base_encoder, load_tokenizer, source_identity, teacher_config
from distill.trainer import Phase, run_phase

KEY_FILE = "general_key.json"


def read_corpus(paths) -> list[str]:
    """Non-empty lines of each text file."""
    texts = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"corpus file {path} not found; pass text files with one text per line")
        texts += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise UserError(f"the corpus {', '.join(map(str, paths))} has no text; pass files with one text per line")
    return texts


def task_texts(task, examples: list[dict]) -> list[str]:
    """The texts of a task's training examples: sentences/messages (both texts of a pair), or each distinct SQuAD
    context and question."""
    if not task.is_qa:
        return [text for e in examples for text in (e["text"], e.get("text_pair")) if text]
    contexts = list(dict.fromkeys(e["context"] for e in examples))
    return contexts + [e["question"] for e in examples]


def general_distill(accelerator, teacher_source: str, shape: StudentShape, texts: list[str], settings, seed: int,
                    out_dir: Path, resume: bool, budget, force: bool = False) -> tuple[Path, dict]:
    """Distil (or reuse, when the cache key matches) a general student encoder into OUT/general/."""
    general_dir = Path(out_dir) / "general"
    if settings.general_max_texts:
        texts = texts[:settings.general_max_texts]
    fields = settings.stage_fields("general_", ("max_seq_length", "batch_size", "warmup_ratio", "weight_decay", "train_precision"))
    key = hashlib.sha256(json.dumps({"teacher": source_identity(teacher_source), "shape": shape.__dict__, "settings": fields, "seed": seed,
                                     "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest()}, sort_keys=True).encode()).hexdigest()
    record = cached_record(general_dir, KEY_FILE, key, force=force)
    if record is not None:
        accelerator.print(f"general: reusing the general student cached in {general_dir}")
        return general_dir, {"dir": str(general_dir), "cached": True, **record.get("summary", {})}
    t_config = teacher_config(teacher_source)
    tokenizer = load_tokenizer(teacher_source)
    check_weight_files(teacher_source)
    teacher = load_base_encoder(teacher_source, t_config)
    teacher.to(accelerator.device)
    config = student_config(shape, t_config, head="qa")
    config.architectures = ["BertModel"]
    torch.manual_seed(seed)
    student = BertModel(config)
    objective = IntermediateObjective(student, teacher)
    if settings.general_embedding_init == "teacher-pca":
        project_teacher_embeddings(student, teacher, objective.projection)
    if settings.student_freeze_word_embeddings:
        freeze_word_embeddings(student)
    phase = Phase("general", objective, text_features(tokenizer, texts, settings.max_seq_length),
                  settings.general_epochs, settings.general_lr)
    summary = run_phase(accelerator, phase, batch_size=settings.batch_size, seed=seed, checkpoints=Path(out_dir) / "checkpoints",
                        resume=resume, budget=budget, warmup_ratio=settings.warmup_ratio, weight_decay=settings.weight_decay,
                        pad_id=tokenizer.pad_token_id, precision=settings.train_precision,
                        fused_optimizer=settings.fused_optimizer)
    summary = {"texts": len(texts), "embedding_init": settings.general_embedding_init, **summary}
    publish_model_folder(accelerator, general_dir, student, tokenizer, KEY_FILE, {"key": key, "teacher": teacher_source, "summary": summary})
    return general_dir, {"dir": str(general_dir), "cached": False, **summary}
