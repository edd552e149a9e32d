"""Tasks as data: a task is a name, a kind, its labels, its data, its lengths and buckets, and a few example inputs.

One `TaskSpec` is read by distill, export, verify, the pipeline and (through the bundle) the app. The demo tasks are
definitions shipped in distill/task_definitions/*.json; a user's task is made from flags (`task_from_flags`: files,
columns, labels, kind, or a hub dataset) and saved with its student as task.json, so export and verify read the same
definition. Standard library only, so flags and data are checked before anything heavy is imported.

Labels: given with --labels (their order is the model's), else the teacher's id2label when it has a head, else the
train file's label names sorted; a file may give labels as names or as indexes into that list.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from distill import data
from mobile_app.runtime.contract import DEFAULT_MAX_ANSWER_LENGTH, HEADS
from mobile_app.runtime.errors import UserError

DATA_DIR_ENV = "TINYBERT_DATA_DIR"
DEFINITIONS_DIR = Path(__file__).resolve().parent / "task_definitions"
TASK_FILE = "task.json"  # the definition a student was distilled for, saved in its folder
TASK_KINDS = HEADS
DEFAULT_BUCKETS = {"classification": (32, 64, 128), "qa": (256, 384)}
DEFAULT_MAX_SEQ_LENGTH = {"classification": 128, "qa": 384}
EXAMPLES_PER_BUNDLE = 6  # example inputs a bundle carries for the app, when the definition names none
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_GENERIC_LABEL = re.compile(r"LABEL_\d+")


@dataclass(frozen=True)
class DataSource:
    """Where a task's examples are and how to read them. Paths are relative to --data-dir for shipped definitions,
    absolute for a user's; `file` holds every example when there are no separate train and eval files."""
    train_file: str | None = None
    eval_file: str | None = None
    file: str | None = None
    format: str | None = None                # csv | tsv | jsonl | squad; None: by extension
    columns: tuple[str, ...] = ()            # the column names of a file without a header row
    text_column: str | None = None           # None: sentence1 (with sentence2 as the pair) when present, else text or sentence
    text_pair_column: str | None = None
    label_column: str = "label"
    split: dict | None = None                # how eval is made when there is no eval file (stratified; by_article for QA)
    train_file_optional: bool = False        # QA demo: without SQuAD's train file, the eval file is split by article
    hub: dict | None = None                  # {"dataset", "config", "train_split", "eval_split"} and column overrides

    def paths(self, root: Path | None) -> dict[str, Path]:
        """{"train"/"eval"/"file": path}, resolved against `root` (the data folder) when relative."""
        named = {key: getattr(self, f"{key}_file" if key != "file" else "file") for key in ("train", "eval", "file")}
        return {key: (root / value if root is not None and not Path(value).is_absolute() else Path(value))
                for key, value in named.items() if value}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str                                # "classification" (one text or a text pair) or "qa" (extractive)
    labels: tuple[str, ...]                  # class names in the model's order; empty for QA (and until resolved)
    data: DataSource
    title: str = ""
    max_seq_length: int = 128                # the longest input the phone runs (and QA's window)
    buckets: tuple[int, ...] = (32, 64, 128)
    train_max_seq_length: int | None = None  # the length distillation trains at, when shorter
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH
    examples: tuple[dict, ...] = ()          # example inputs the app offers to tap
    presets: dict = field(default_factory=dict, compare=False)  # preset -> this task's settings on top of the kind's
    builtin: bool = False

    @property
    def head(self) -> str:
        return self.kind

    @property
    def is_qa(self) -> bool:
        return self.kind == "qa"

    @property
    def is_pair(self) -> bool:
        return self.data.text_pair_column is not None

    @property
    def metric(self) -> str:
        """The headline metric, a key of what distill.evaluate returns."""
        return "f1" if self.is_qa else "accuracy"

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["data"] = {k: v for k, v in out["data"].items() if v not in (None, (), [], False) or k == "label_column"}
        return json.loads(json.dumps(out))

    @classmethod
    def from_dict(cls, raw: dict, where: str = "task definition") -> "TaskSpec":
        try:
            source = DataSource(**{k: tuple(v) if k == "columns" else v for k, v in (raw.get("data") or {}).items()})
            fields_ = {k: v for k, v in raw.items() if k != "data"}
            for key in ("labels", "buckets"):
                fields_[key] = tuple(fields_.get(key) or ())
            fields_["examples"] = tuple(fields_.get("examples") or ())
            spec = cls(data=source, **fields_)
        except TypeError as error:
            raise UserError(f"{where} has an unknown or missing field ({error}); see docs/tasks.md for the fields") from None
        return spec.checked(where)

    def checked(self, where: str = "task") -> "TaskSpec":
        """The spec, or a UserError saying which field is wrong."""
        if not TASK_NAME.fullmatch(self.name or ""):
            raise UserError(f"{where}: task name {self.name!r} must be letters, digits, '_', '-' or '.' (at most 64), e.g. topics")
        if self.kind not in TASK_KINDS:
            raise UserError(f"{where}: task kind {self.kind!r} is not one of {', '.join(TASK_KINDS)}")
        if not self.buckets or any(not isinstance(b, int) or b < 8 for b in self.buckets):
            raise UserError(f"{where}: buckets must be whole numbers of at least 8 tokens, got {list(self.buckets)}")
        if len(set(self.labels)) != len(self.labels):
            raise UserError(f"{where}: labels {list(self.labels)} name a class twice; give each class once")
        return self

    def with_labels(self, labels) -> "TaskSpec":
        return dataclasses.replace(self, labels=tuple(str(label) for label in labels))

    def load(self, data_dir: str | Path | None = None) -> dict[str, list[dict]]:
        """{"train": [...], "eval": [...]} examples from the task's files (under `data_dir`, $TINYBERT_DATA_DIR for a
        shipped definition) or its hub dataset; classification examples carry their label's index in `labels`."""
        spec = self if self.is_qa or self.labels else self.resolved(data_dir=data_dir)
        if self.data.hub:
            return _hub_splits(spec)
        return _file_splits(spec, self._root(data_dir))

    def eval_examples(self, data_dir: str | Path | None = None) -> list[dict]:
        """The eval split alone (what verify reads): the eval file when the task has one, else the eval part of a split."""
        paths = self.data.paths(self._root(data_dir))
        split_from_eval = self.is_qa and self.data.train_file_optional and not paths.get("train", Path()).is_file()
        if self.data.hub or "eval" not in paths or split_from_eval:
            return self.load(data_dir)["eval"]
        if self.is_qa:
            return data.read_squad(paths["eval"])
        if not self.labels:
            raise UserError(f"task {self.name} has no labels to read {paths['eval']} with; pass --labels")
        return _classification_examples(self, _table_rows(self, paths["eval"]), str(paths["eval"]))

    def _root(self, data_dir) -> Path | None:
        if not self.builtin:
            return Path(data_dir) if data_dir is not None else None
        if data_dir is None:
            data_dir = os.environ.get(DATA_DIR_ENV)
            if data_dir is None:
                folders = ", ".join(sorted({Path(p).parts[0] for p in self.data.paths(None).values()}))
                raise UserError(f"no data for task {self.name!r}: pass --data-dir (a folder with {folders}/) or set ${DATA_DIR_ENV}")
        root = Path(data_dir)
        if not root.is_dir():
            raise UserError(f"data directory {root} does not exist; point --data-dir at a folder holding sst2/, sms_spam/, squad_v1/")
        return root

    def resolved(self, teacher_labels: list[str] | None = None, data_dir: str | Path | None = None) -> "TaskSpec":
        """The spec with its labels fixed: its own (checked against a teacher's), else the teacher's, else the train
        file's label names sorted. A teacher whose labels disagree with the data's is refused in one line."""
        if self.is_qa:
            return self
        teacher = [str(label) for label in teacher_labels or []]
        if teacher and all(_GENERIC_LABEL.fullmatch(label) for label in teacher):
            teacher = []  # LABEL_0, LABEL_1, ...: the head names no classes, so the task's order is taken
        if self.labels:
            if teacher and [t.lower() for t in teacher] != [label.lower() for label in self.labels]:
                raise UserError(f"the teacher's labels are {', '.join(teacher)} but task {self.name} has {', '.join(self.labels)} "
                                "in that order; pass --labels in the teacher's order, or a teacher fine-tuned for these labels")
            return self
        found = _train_label_names(self, self._root(data_dir) if not self.data.hub else None)
        if teacher:
            unknown = [name for name in found if _label_index(name, teacher) is None]
            if unknown:
                raise UserError(f"the teacher's labels are {', '.join(teacher)} but the train data has labels "
                                f"{', '.join(unknown[:5])} that are not among them; pass --labels, or a teacher fine-tuned on these labels")
            return self.with_labels(teacher)
        numeric = all(name.lstrip("-").isdigit() for name in found)
        return self.with_labels(sorted(found, key=int) if numeric else sorted(found))


# ---- rows -> examples ---------------------------------------------------------------------------------------------


def _label_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value).strip()


def _label_index(value: str, labels) -> int | None:
    """A label given by name (exactly, else ignoring case) or as an index into `labels`."""
    labels = list(labels)
    if value in labels:
        return labels.index(value)
    lowered = [label.lower() for label in labels]
    if value.lower() in lowered:
        return lowered.index(value.lower())
    if value.lstrip("-").isdigit() and not any(label.lstrip("-").isdigit() for label in labels) and 0 <= int(value) < len(labels):
        return int(value)
    return None


def text_columns(spec: TaskSpec, names, where: str) -> tuple[str, str | None, str]:
    """(text, text pair or None, label) columns of a table, after the defaults; a missing one is one line."""
    source = spec.data
    text, pair = source.text_column, source.text_pair_column
    if text is None:
        if "sentence1" in names:
            text, pair = "sentence1", pair or ("sentence2" if "sentence2" in names else None)
        else:
            text = next((c for c in ("text", "sentence") if c in names), None)
    if text is None:
        raise UserError(f"{where} has no text column (columns: {', '.join(names)}); pass --text-column NAME")
    for flag, column in (("--text-column", text), ("--text-pair-column", pair), ("--label-column", source.label_column)):
        if column is not None and column not in names:
            raise UserError(f"{where} has no column {column!r} (columns: {', '.join(names)}); pass {flag} NAME")
    return text, pair, source.label_column


@lru_cache(maxsize=16)
def _rows(path: Path, fmt: str | None, columns: tuple[str, ...], stamp: tuple[int, int]) -> tuple:
    return tuple(data.read_table(path, fmt, columns))


def _table_rows(spec: TaskSpec, path: Path) -> list[tuple[int, dict]]:
    path = data.require_file(path)
    stat = path.stat()
    return list(_rows(path, spec.data.format, spec.data.columns, (stat.st_mtime_ns, stat.st_size)))


def _train_label_names(spec: TaskSpec, root: Path | None) -> list[str]:
    """Distinct label names of the train examples (the whole file when train and eval share one)."""
    if spec.data.hub and not any((spec.data.train_file, spec.data.file)):
        return sorted({row[1] for row in _hub_rows(spec, spec.data.hub.get("train_split", "train"))[1]})
    paths = spec.data.paths(root)
    path = paths.get("train") or paths.get("file")
    if path is None:
        raise UserError(f"task {spec.name} has no train file to read its labels from; pass --train-file or --labels")
    rows = _table_rows(spec, path)
    _, _, label = text_columns(spec, list(rows[0][1]), str(path))
    names = {_label_text(row.get(label)) for _, row in rows} - {""}
    return sorted(names)


def _classification_examples(spec: TaskSpec, rows: list[tuple[int, dict]], where: str) -> list[dict]:
    """Rows -> {"text", "text_pair"?, "label"} with the label's index; rows with empty text are skipped, counted in one line."""
    text, pair, label = text_columns(spec, list(rows[0][1]), where)
    examples, empty = [], 0
    for number, row in rows:
        first = str(row.get(text) or "").strip()
        second = str(row.get(pair) or "").strip() if pair else None
        if not first or (pair and not second):
            empty += 1
            continue
        raw = _label_text(row.get(label))
        if not raw:
            raise UserError(f"{where}:{number}: the row has no {label!r} value; give every example a label")
        index = _label_index(raw, spec.labels)
        if index is None:
            raise UserError(f"{where}:{number}: label {raw!r} is not one of the task's labels ({', '.join(spec.labels)}); "
                            "fix the row, or pass --labels with every class")
        example = {"text": first, "label": index}
        if pair:
            example["text_pair"] = second
        examples.append(example)
    if empty:
        print(f"note: skipped {empty} row{'s' if empty != 1 else ''} of {where} with empty text")
    if not examples:
        raise UserError(f"{where} holds no examples with text; check --text-column")
    return examples


def _check_classes(spec: TaskSpec, splits: dict[str, list[dict]], where: dict[str, str]) -> None:
    trained = {example["label"] for example in splits["train"]}
    if len(trained) < 2:
        only = spec.labels[next(iter(trained))] if trained else "none"
        raise UserError(f"{where['train']}: every train example has label {only!r}; a classifier needs at least 2 classes")
    unseen = sorted({example["label"] for example in splits["eval"]} - trained)
    if unseen:
        names = ", ".join(repr(spec.labels[i]) for i in unseen)
        raise UserError(f"{where['eval']}: label {names} never occurs in the train data ({where['train']}); "
                        "the model cannot learn it: add train examples of it or drop those eval rows")


def _split(spec: TaskSpec, examples: list[dict], default: dict) -> dict[str, list[dict]]:
    how = dict(default, **(spec.data.split or {}))
    seed = int(how.get("seed", data.SPLIT_SEED))
    if how["method"] == "by_article":
        return data.split_by_article(examples, float(how.get("eval_fraction", 0.2)), seed)
    parts = data.stratified_split(examples, tuple(how.get("fractions", (0.9, 0.1))), seed)
    names = list(parts)
    chosen = how.get("eval", names[-1])
    splits = {"train": parts["train"], "eval": parts[chosen]}
    splits.update({name: part for name, part in parts.items() if name not in ("train", chosen)})
    return splits


def _file_splits(spec: TaskSpec, root: Path | None) -> dict[str, list[dict]]:
    paths = spec.data.paths(root)
    if spec.is_qa:
        train, evaluation = paths.get("train"), paths.get("eval")
        if paths.get("file") or (train and not evaluation):
            return _split(spec, data.read_squad(paths.get("file") or train), {"method": "by_article"})
        if evaluation is None:
            raise UserError(f"task {spec.name} names no eval file; pass --eval-file (SQuAD JSON)")
        if train is None or (spec.data.train_file_optional and not train.is_file()):
            return _split(spec, data.read_squad(evaluation), {"method": "by_article"})
        return {"train": data.read_squad(train), "eval": data.read_squad(evaluation)}
    if paths.get("file") or (paths.get("train") and not paths.get("eval")):
        path = paths.get("file") or paths["train"]
        splits = _split(spec, _classification_examples(spec, _table_rows(spec, path), str(path)), {"method": "stratified"})
        where = {"train": str(path), "eval": str(path)}
    else:
        if "eval" not in paths or "train" not in paths:
            raise UserError(f"task {spec.name} needs --train-file (and --eval-file, or the eval split is cut from the train file)")
        splits = {split: _classification_examples(spec, _table_rows(spec, paths[split]), str(paths[split])) for split in ("train", "eval")}
        where = {split: str(paths[split]) for split in ("train", "eval")}
    _check_classes(spec, splits, where)
    return splits


@lru_cache(maxsize=4)
def _hub_dataset(name: str, config: str | None):
    return data.load_hub_dataset(name, config)


def _hub_rows(spec: TaskSpec, split: str) -> tuple[str, list[tuple[int, dict]]]:
    """(where, [(row number, row with ClassLabel ints as names)]) of one split of the task's hub dataset."""
    hub = spec.data.hub
    dataset = _hub_dataset(hub["dataset"], hub.get("config"))
    if split not in dataset:
        raise UserError(f"dataset {hub['dataset']} has no split {split!r} (it has {', '.join(dataset)}); pass --train-split/--eval-split")
    part = dataset[split]
    where = f"{hub['dataset']}[{split}]"
    if spec.is_qa:
        return where, [(i, dict(row)) for i, row in enumerate(part, start=1)]
    names = None
    feature = part.features.get(spec.data.label_column) if hasattr(part, "features") else None
    if feature is not None and hasattr(feature, "names"):
        names = feature.names
    rows = []
    for number, row in enumerate(part, start=1):
        row = dict(row)
        value = row.get(spec.data.label_column)
        if names is not None and isinstance(value, int) and 0 <= value < len(names):
            row[spec.data.label_column] = names[value]
        rows.append((number, row))
    return where, rows


def _hub_splits(spec: TaskSpec) -> dict[str, list[dict]]:
    hub = spec.data.hub
    columns = {key: hub[key] for key in ("text_column", "text_pair_column", "label_column") if key in hub}
    spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, **columns))  # the hub's own column names
    train_split, eval_split = hub.get("train_split") or "train", hub.get("eval_split")
    if eval_split is None and "validation" in _hub_dataset(hub["dataset"], hub.get("config")):
        eval_split = "validation"
    if spec.is_qa:
        def squad(split):
            return [dict(row, answers={"text": list(row["answers"]["text"]), "answer_start": list(row["answers"]["answer_start"])})
                    for _, row in _hub_rows(spec, split)[1]]
        if eval_split is None:
            return _split(spec, squad(train_split), {"method": "by_article"})
        return {"train": squad(train_split), "eval": squad(eval_split)}
    where, rows = _hub_rows(spec, train_split)
    train = _classification_examples(spec, rows, where)
    if eval_split is None:
        splits = _split(spec, train, {"method": "stratified"})
        _check_classes(spec, splits, {"train": where, "eval": where})
        return splits
    eval_where, eval_rows = _hub_rows(spec, eval_split)
    splits = {"train": train, "eval": _classification_examples(spec, eval_rows, eval_where)}
    _check_classes(spec, splits, {"train": where, "eval": eval_where})
    return splits


# ---- the shipped definitions and a user's task ------------------------------------------------------------------


@lru_cache(maxsize=1)
def _definitions() -> dict[str, TaskSpec]:
    found = {}
    for path in sorted(DEFINITIONS_DIR.glob("*.json"), key=lambda p: json.loads(p.read_text(encoding="utf-8")).get("order", 99)):
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw.pop("order", None)
        spec = TaskSpec.from_dict(dict(raw, builtin=True), where=str(path))
        found[spec.name] = spec
    return found


def demo_task_names() -> tuple[str, ...]:
    """The demo tasks shipped with the kit, in the order the app shows them."""
    return tuple(_definitions())


def get_task(name: str) -> TaskSpec:
    """A shipped definition by name."""
    try:
        return _definitions()[name]
    except KeyError:
        raise UserError(f"unknown task {name!r}; choose one of: {', '.join(_definitions())}, or give its data with "
                        "--train-file/--eval-file (a new task name)") from None


def read_task_file(path: str | Path) -> TaskSpec:
    """The task definition saved in a file (task.json beside a student)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read the task definition {path} ({error}); re-run distill or pass the task's flags") from None
    return TaskSpec.from_dict(raw, where=str(path))


def task_from_flags(name: str | None, *, train_file=None, eval_file=None, text_column=None, text_pair_column=None,
                    label_column=None, task_kind=None, labels=None, dataset_name=None, dataset_config=None,
                    train_split=None, eval_split=None, buckets=None, max_seq_length=None) -> TaskSpec:
    """The task the flags describe: a shipped definition by name, or a user's task from files or a hub dataset
    (a shipped name with files given reads those files with that task's settings)."""
    files = train_file is not None or eval_file is not None
    hub = dataset_name is not None
    if files and hub:
        raise UserError("pass either --train-file/--eval-file or --dataset-name, not both")
    if name is None:
        raise UserError("pass --task NAME (a demo task: " + ", ".join(demo_task_names()) + "; or a new name with --train-file)")
    if not files and not hub:
        spec = get_task(name)
        columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
        if any(v is not None for v in columns.values()) or task_kind or labels:
            raise UserError(f"--text-column, --label-column, --labels and --task-kind describe your own data; "
                            f"pass them with --train-file/--eval-file (task {name!r} reads its own files)")
        return _sized(spec, buckets, max_seq_length)
    for path in (train_file, eval_file):
        if path is not None:
            data.require_file(path)
    squad = any(data.is_squad(path) for path in (train_file, eval_file) if path is not None)
    kind = task_kind or ("qa" if squad else "classification")
    if kind not in TASK_KINDS:
        raise UserError(f"--task-kind must be one of {', '.join(TASK_KINDS)}, got {task_kind!r}")
    base = _definitions().get(name)
    if base is not None and base.kind != kind:
        raise UserError(f"task {name!r} is a {base.kind} task but the data makes a {kind} one; pick another --task name")
    hub_source = None
    if hub:
        hub_source = {"dataset": dataset_name, "config": dataset_config, "train_split": train_split or "train",
                      "eval_split": eval_split}
    source = DataSource(train_file=str(Path(train_file).resolve()) if train_file else None,
                        eval_file=str(Path(eval_file).resolve()) if eval_file else None,
                        format="squad" if kind == "qa" else None, text_column=text_column, text_pair_column=text_pair_column,
                        label_column=label_column or "label", hub=hub_source)
    if base is not None:
        spec = dataclasses.replace(base, data=source, builtin=False, examples=(), labels=tuple(labels or base.labels))
    else:
        spec = TaskSpec(name=name, kind=kind, labels=tuple(labels or ()), data=source, title=_title(name),
                        max_seq_length=DEFAULT_MAX_SEQ_LENGTH[kind], buckets=DEFAULT_BUCKETS[kind]).checked("--task")
    if kind == "classification" and not hub:
        spec = _with_pair_column(spec)
    return _sized(spec, buckets, max_seq_length)


def _with_pair_column(spec: TaskSpec) -> TaskSpec:
    """The data source with its text columns settled from the train file's header (so that is_pair is known)."""
    paths = spec.data.paths(None)
    path = paths.get("train") or paths.get("eval")
    rows = _table_rows(spec, path)
    text, pair, _ = text_columns(spec, list(rows[0][1]), str(path))
    return dataclasses.replace(spec, data=dataclasses.replace(spec.data, text_column=text, text_pair_column=pair))


def _sized(spec: TaskSpec, buckets, max_seq_length) -> TaskSpec:
    changes = {}
    if buckets:
        changes["buckets"] = tuple(sorted({int(b) for b in buckets}))
    if max_seq_length:
        changes["max_seq_length"] = int(max_seq_length)
    return dataclasses.replace(spec, **changes).checked("--buckets") if changes else spec


def _title(name: str) -> str:
    return re.sub(r"[_.-]+", " ", name).strip().capitalize() or name


def example_inputs(spec: TaskSpec, eval_examples: list[dict]) -> tuple[dict, ...]:
    """The example inputs a bundle carries for the app: the definition's, else a few eval examples, one class at a time
    (QA: questions on different passages). Only the inputs: no labels or answers."""
    if spec.examples:
        return spec.examples
    picked: list[dict] = []
    if spec.is_qa:
        seen = set()
        for example in eval_examples:
            if example["context"] not in seen:
                seen.add(example["context"])
                picked.append({"question": example["question"], "context": example["context"]})
            if len(picked) == 3:
                break
        return tuple(picked)
    by_label: dict[int, list[dict]] = {}
    for example in eval_examples:
        by_label.setdefault(example["label"], []).append(example)
    rounds = max((len(v) for v in by_label.values()), default=0)
    for index in range(rounds):
        for label in sorted(by_label):
            if index < len(by_label[label]) and len(picked) < EXAMPLES_PER_BUNDLE:
                example = by_label[label][index]
                picked.append({k: example[k] for k in ("text", "text_pair") if k in example})
    return tuple(picked)
