"""What an exporter needs to know about a student folder besides its weights: task, tokenizer, vocab, buckets.

Shared by the TFLite and Core ML exporters so both read a student the same way and write the same
manifest header.
"""
from __future__ import annotations

import json
from pathlib import Path

from mobile_app.runtime.errors import UserError
from distill.tasks import TASK_NAME, DEFAULT_BUCKETS, DEFAULT_MAX_SEQ_LENGTH, TASK_FILE, DataSource, TaskSpec, demo_task_names, get_task, read_task_file
from mobile_app.runtime.contract import VOCAB_NAME
from mobile_app.runtime.tokenizer import write_vocab as write_tokens

DISTILL_REPORT = "distill_report.json"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path} ({error}); re-save the student folder") from None


def resolve_task(student_dir: str | Path, task: str | None, head: str, config=None, bundle_dir: str | Path | None = None) -> TaskSpec:
    """The task a model answers: the definition saved with a distilled student (task.json), else the demo task named by
    --task or its distill_report.json, else a task made from the model itself (a fine-tuned model exported as it is):
    named by --task or the bundle folder, its kind from the head and its labels from the config. Its head must match."""
    student_dir = Path(student_dir)
    if (student_dir / TASK_FILE).is_file():
        spec = read_task_file(student_dir / TASK_FILE)
        if task is not None and task != spec.name:
            raise UserError(f"{student_dir} was distilled for task {spec.name!r}, not {task!r}; drop --task or pass --task {spec.name}")
    else:
        if task is None:
            report = student_dir / DISTILL_REPORT
            task = _read_json(report).get("task") if report.is_file() else None
        if task is None and bundle_dir is not None:
            task = Path(bundle_dir).name
            if not TASK_NAME.fullmatch(task):
                raise UserError(f"cannot name the task after the bundle folder {task!r} (letters, digits, '_', '-', '.'); pass --task NAME")
        if task is None:
            raise UserError(f"cannot tell the task of {student_dir} (no {TASK_FILE}); pass --task NAME")
        spec = get_task(task) if task in demo_task_names() else _task_of_model(task, head, config)
    if spec.head != head:
        raise UserError(f"{student_dir} is a {head} model but task {spec.name!r} needs a {spec.head} model; pass the right --task or student")
    return spec


def _task_of_model(name: str, head: str, config) -> TaskSpec:
    """A task for a fine-tuned model that came with no definition: its head's kind and its config's labels."""
    labels = ()
    if head == "classification" and config is not None:
        labels = tuple(str(config.id2label.get(i, config.id2label.get(str(i), f"LABEL_{i}"))) for i in range(config.num_labels))
    return TaskSpec(name=name, kind=head, labels=labels, data=DataSource(), title=name.replace("_", " ").capitalize(),
                    max_seq_length=DEFAULT_MAX_SEQ_LENGTH[head], buckets=DEFAULT_BUCKETS[head]).checked(f"--task {name}")


def check_labels(model, spec: TaskSpec) -> None:
    """A classifier's label count (and names, when the config names them) must be the task's."""
    if spec.head != "classification":
        return
    config = model.config
    if config.num_labels != len(spec.labels):
        raise UserError(f"the student has {config.num_labels} labels but task {spec.name!r} has {len(spec.labels)}"
                        f" ({', '.join(spec.labels)}); pass the right --task")
    names = [str(config.id2label.get(i, "")) for i in range(config.num_labels)]
    if not all(name.startswith("LABEL_") for name in names) and [n.lower() for n in names] != [label.lower() for label in spec.labels]:
        raise UserError(f"the student's labels {names} are not task {spec.name!r}'s {list(spec.labels)}; pass the right --task")


def check_buckets(buckets, max_positions: int) -> list[int]:
    """Sorted unique positive bucket lengths, each within the model's position embeddings."""
    try:
        found = sorted({int(b) for b in buckets})
    except (TypeError, ValueError):
        raise UserError(f"buckets must be whole numbers, got {list(buckets)}; e.g. --buckets 32 64 128") from None
    if not found or found[0] < 8:
        raise UserError(f"buckets must be at least 8 tokens long, got {found or 'none'}; e.g. --buckets 32 64 128")
    if found[-1] > max_positions:
        raise UserError(f"bucket {found[-1]} is longer than the model's {max_positions} position embeddings; use buckets <= {max_positions}")
    return found


def tokenizer_settings(student_dir: str | Path, spec: TaskSpec, buckets: list[int]) -> dict:
    """The manifest's tokenizer section: the student's tokenizer_config.json plus the task's lengths, fitted to the buckets."""
    config_path = Path(student_dir) / "tokenizer_config.json"
    config = _read_json(config_path) if config_path.is_file() else {}
    max_seq_length = min(spec.max_seq_length, max(buckets))
    settings = {
        "vocab": VOCAB_NAME,
        "do_lower_case": bool(config.get("do_lower_case", True)),
        "strip_accents": config.get("strip_accents"),
        "tokenize_chinese_chars": bool(config.get("tokenize_chinese_chars", True)),
        "max_seq_length": max_seq_length,
    }
    if spec.is_qa:
        from mobile_app.runtime.qa import fitted_stride

        # Buckets shorter than the task's (tests, small phones) get a stride and question budget that fit them.
        stride, query = fitted_stride(max_seq_length, spec.doc_stride, spec.max_query_length)
        settings.update(doc_stride=stride, max_query_length=query, max_answer_length=spec.max_answer_length)
    return settings


def write_vocab(student_dir: str | Path, dest: str | Path) -> Path:
    """The student's vocab.txt at dest, read from its vocab.txt or tokenizer.json (transformers 5 saves only that)."""
    student_dir, dest = Path(student_dir), Path(dest)
    vocab_txt, tokenizer_json = student_dir / VOCAB_NAME, student_dir / "tokenizer.json"
    if vocab_txt.is_file():  # copied line for line: the ids the student was trained with
        dest.write_text("\n".join(vocab_txt.read_text(encoding="utf-8").splitlines()) + "\n", encoding="utf-8")
        return dest
    if tokenizer_json.is_file():
        model = _read_json(tokenizer_json).get("model") or {}
        vocab = model.get("vocab")
        if model.get("type") != "WordPiece" or not isinstance(vocab, dict):
            raise UserError(f"{tokenizer_json} is not a WordPiece tokenizer; export needs a BERT vocab.txt in {student_dir}")
    else:
        raise UserError(f"{student_dir} has no tokenizer (no {VOCAB_NAME} or tokenizer.json); save the tokenizer with the student")
    try:
        return write_tokens(vocab, dest)
    except ValueError:
        raise UserError(f"{tokenizer_json} has gaps in its vocab ids; save the tokenizer's vocab.txt into {student_dir}") from None


def check_vocab_size(vocab_path: Path, model) -> None:
    """Every token id the tokenizer can emit must have an embedding row."""
    count = sum(1 for _ in open(vocab_path, encoding="utf-8"))
    rows = model.config.vocab_size
    if count > rows:
        raise UserError(f"the tokenizer has {count} tokens but the model embeds only {rows}; save the student with its own tokenizer")


def write_labels(spec: TaskSpec, dest: str | Path) -> Path | None:
    """labels.txt (one name a line, in logit order) for classifiers; None for QA."""
    if not spec.labels:
        return None
    dest = Path(dest)
    dest.write_text("\n".join(spec.labels) + "\n", encoding="utf-8")
    return dest
