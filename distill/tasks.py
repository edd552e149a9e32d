"""The task registry: everything task-specific (labels, lengths, metric, data, head) lives here once."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from distill import data
from mobile_app.runtime.errors import UserError
from mobile_app.runtime.contract import DEFAULT_MAX_ANSWER_LENGTH, TASK_HEADS, TASK_NAMES

DATA_DIR_ENV = "TINYBERT_DATA_DIR"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    head: str                      # "classification" or "qa"
    labels: tuple[str, ...]        # class names; empty for QA
    max_seq_length: int
    metric: str                    # the headline metric, a key of what `evaluate` returns
    buckets: tuple[int, ...]       # sequence-length buckets for fixed-shape exports
    files: dict[str, str]          # relative paths inside a --data-dir
    hub_dataset: tuple[str, str | None]
    read_splits: Callable[["TaskSpec", Path | None, dict[str, str]], dict[str, list[dict]]] = field(repr=False)
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH

    @property
    def is_qa(self) -> bool:
        return self.head == "qa"

    def load(self, data_dir: str | Path | None = None, files: dict[str, str] | None = None, hub: bool = False) -> dict[str, list[dict]]:
        """Return {"train": [...], "eval": [...]} from explicit files, a data dir, $TINYBERT_DATA_DIR or the hub."""
        if hub:
            return _hub_splits(self)
        if data_dir is None and not files:
            data_dir = os.environ.get(DATA_DIR_ENV)
            if data_dir is None:
                folders = ", ".join(sorted({p.split("/")[0] for p in self.files.values()}))
                raise UserError(f"no data for task {self.name!r}: pass --data-dir (a folder with {folders}/) or set ${DATA_DIR_ENV}")
        root = Path(data_dir) if data_dir is not None else None
        if root is not None and not root.is_dir():
            raise UserError(f"data directory {root} does not exist; point --data-dir at a folder holding sst2/, sms_spam/, squad_v1/")
        resolved = {key: str(root / rel) if root is not None else None for key, rel in self.files.items()}
        resolved.update(files or {})
        return self.read_splits(self, root, resolved)


def _sentiment_splits(spec, root, files):
    return {"train": data.read_sst2(files["train"]), "eval": data.read_sst2(files["eval"])}


def _spam_splits(spec, root, files):
    """Stratified 80/10/10 train/dev/test with seed 42; the test split is the evaluation split."""
    split = data.stratified_split(data.read_sms_spam(files["all"]))
    return {"train": split["train"], "dev": split["dev"], "eval": split["test"]}


def _qa_splits(spec, root, files):
    """SQuAD train when given; otherwise dev split by article, 80% of articles to train (seed 42)."""
    dev = data.read_squad(files["eval"])
    train_path = files.get("train")
    if train_path and Path(train_path).is_file():
        return {"train": data.read_squad(train_path), "eval": dev}
    return data.split_by_article(dev)


def _hub_splits(spec: TaskSpec) -> dict[str, list[dict]]:
    name, config = spec.hub_dataset
    ds = data.load_hub_dataset(name, config)
    if spec.name == "sentiment":
        return {split: [{"text": r["sentence"], "label": r["label"]} for r in ds[hub]] for split, hub in (("train", "train"), ("eval", "validation"))}
    if spec.name == "spam":
        rows = [{"text": r["sms"].strip(), "label": r["label"]} for r in ds["train"]]
        split = data.stratified_split(rows)
        return {"train": split["train"], "dev": split["dev"], "eval": split["test"]}
    return {split: [dict(r, answers={"text": list(r["answers"]["text"]), "answer_start": list(r["answers"]["answer_start"])}) for r in ds[hub]]
            for split, hub in (("train", "train"), ("eval", "validation"))}


TASKS: dict[str, TaskSpec] = {
    "sentiment": TaskSpec(
        name="sentiment", head="classification", labels=("negative", "positive"), max_seq_length=128,
        metric="accuracy", buckets=(32, 64, 128), files={"train": "sst2/train.tsv", "eval": "sst2/dev.tsv"},
        hub_dataset=("glue", "sst2"), read_splits=_sentiment_splits),
    "spam": TaskSpec(
        name="spam", head="classification", labels=("ham", "spam"), max_seq_length=128,
        metric="accuracy", buckets=(32, 64, 128), files={"all": "sms_spam/SMSSpamCollection"},
        hub_dataset=("sms_spam", None), read_splits=_spam_splits),
    "qa": TaskSpec(
        name="qa", head="qa", labels=(), max_seq_length=384, metric="f1", buckets=(256, 384),
        files={"train": "squad_v1/train-v1.1.json", "eval": "squad_v1/dev-v1.1.json"},
        hub_dataset=("squad", None), read_splits=_qa_splits),
}
assert tuple(TASKS) == TASK_NAMES and all(spec.head == TASK_HEADS[name] for name, spec in TASKS.items()), "tasks drifted from the bundle contract"


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise UserError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None
