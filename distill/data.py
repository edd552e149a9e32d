"""Reading a task's examples as users keep them: CSV, TSV or JSON Lines tables, SQuAD JSON, or a hub dataset.

Readers return rows as plain dicts (column -> value) so that export and benchmarks use them without torch;
distill/tasks.py turns rows into examples with the task's columns and labels. Every problem is one UserError line
that names the file (and line) and what to do. Splits are deterministic: the same files and seed, the same examples.
"""
from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from pathlib import Path

from mobile_app.runtime.errors import UserError

SPLIT_SEED = 42
TABLE_FORMATS = ("csv", "tsv", "jsonl")
FORMATS = TABLE_FORMATS + ("squad",)
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "squad"}


def format_of(path: str | Path, given: str | None = None) -> str:
    """The file's format: `given`, else by extension (.csv, .tsv, .jsonl; .json is SQuAD)."""
    if given is not None:
        if given not in FORMATS:
            raise UserError(f"unknown data format {given!r}; use one of {', '.join(FORMATS)}")
        return given
    found = _EXTENSIONS.get(Path(path).suffix.lower())
    if found is None:
        raise UserError(f"cannot tell the format of {path} from its extension; name it .csv, .tsv, .jsonl or .json (SQuAD)")
    return found


def require_file(path: str | Path, what: str = "data file") -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found at {path}; pass an existing file (or --data-dir holding the task's files)")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty; pass a file with a header row and examples")
    return path


def _not_utf8(path: Path, error: UnicodeDecodeError) -> UserError:
    kind = "UTF-16 text" if error.object[:2] in (b"\xff\xfe", b"\xfe\xff") else "not UTF-8 text"
    return UserError(f"{path}: {kind} (byte {error.start} of a read block is {error.object[error.start:error.start + 1]!r}); "
                     "save the file as UTF-8")


def _delimited(path: Path, delimiter: str, header: bool, columns: tuple[str, ...]) -> list[tuple[int, dict]]:
    """(line number, row) of a CSV or TSV. TSV is read without quote handling, as GLUE's files need (bare quotes)."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    rows = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
            names = list(columns)
            for number, fields in enumerate(reader, start=1):
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if not names:
                    names = [name.strip() for name in fields]
                    if header:
                        continue
                if len(fields) != len(names):
                    kind = "tab-separated" if delimiter == "\t" else "comma-separated"
                    raise UserError(f"{path}:{number}: expected {len(names)} {kind} columns ({', '.join(names)}), got {len(fields)}")
                rows.append((number, dict(zip(names, fields))))
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from None
    except csv.Error as error:
        raise UserError(f"{path}: not a {'TSV' if delimiter == chr(9) else 'CSV'} file ({error}); save it as UTF-8 with one example per line") from None
    return rows


def _json_lines(path: Path) -> list[tuple[int, dict]]:
    rows = []
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise UserError(f"{path}:{number}: not a JSON object ({error.msg}); JSON Lines holds one object per line") from None
                if not isinstance(row, dict):
                    raise UserError(f"{path}:{number}: expected a JSON object with the example's fields, got {type(row).__name__}")
                rows.append((number, row))
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from None
    return rows


def read_table(path: str | Path, fmt: str | None = None, columns: tuple[str, ...] = ()) -> list[tuple[int, dict]]:
    """(line number, {column: value}) of every example row of a CSV, TSV or JSON Lines file. `columns` names the
    columns of a file without a header row."""
    path = require_file(path)
    fmt = format_of(path, fmt)
    if fmt == "squad":
        raise UserError(f"{path} is SQuAD JSON, which holds questions for extractive QA; pass --task-kind qa, or a table for classification")
    rows = _json_lines(path) if fmt == "jsonl" else _delimited(path, "\t" if fmt == "tsv" else ",", not columns, tuple(columns))
    if not rows:
        raise UserError(f"{path} holds no examples; pass a file with a header row and examples")
    return rows


def is_squad(path: str | Path) -> bool:
    """Whether a file is SQuAD JSON (by extension and its top-level "data" list), without failing on anything else."""
    path = Path(path)
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8-sig") as handle:
            document = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(document, dict) and isinstance(document.get("data"), list)


def read_squad(path: str | Path) -> list[dict]:
    """SQuAD v1.1 JSON flattened to one dict per question, keeping its article title."""
    path = require_file(path, "SQuAD JSON file")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            document = json.load(handle)
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise UserError(f"{path}: expected the SQuAD layout {{'data': [{{'title', 'paragraphs'}}]}}")
    examples = []
    for article in document["data"]:
        for paragraph in article.get("paragraphs", []):
            context = paragraph.get("context")
            for qa in paragraph.get("qas", []):
                answers = qa.get("answers") or []
                if not context or not qa.get("question") or not answers:
                    raise UserError(f"{path}: question {qa.get('id')!r} lacks a context, question or answers")
                for answer in answers:
                    start = answer.get("answer_start") if isinstance(answer, dict) else None
                    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str) or type(start) is not int:
                        raise UserError(f"{path}: question {qa.get('id')!r}: each answer needs a \"text\" string and an integer "
                                        f"\"answer_start\", got {json.dumps(answer)[:80]}")
                    if context[start:start + len(answer["text"])] != answer["text"]:
                        raise UserError(f"{path}: question {qa['id']!r}: answer_start {start} does not point at {answer['text']!r}")
                examples.append({
                    "id": qa["id"],
                    "title": article.get("title", ""),
                    "question": qa["question"],
                    "context": context,
                    "answers": {"text": [a["text"] for a in answers], "answer_start": [a["answer_start"] for a in answers]},
                })
    if not examples:
        raise UserError(f"{path}: no questions")
    return examples


def stratified_split(examples: list[dict], fractions=(0.8, 0.1, 0.1), seed: int = SPLIT_SEED) -> dict[str, list[dict]]:
    """Split per label with a seeded shuffle so every split keeps the class ratio (train/dev/test)."""
    by_label = defaultdict(list)
    for index, example in enumerate(examples):
        by_label[example["label"]].append(index)
    names = ("train", "dev", "test")[:len(fractions)]
    splits = {name: [] for name in names}
    rng = random.Random(seed)
    for label in sorted(by_label):
        indices = by_label[label]
        rng.shuffle(indices)
        start = 0
        for name, fraction in zip(names[:-1], fractions[:-1]):
            count = round(len(indices) * fraction)
            splits[name] += indices[start:start + count]
            start += count
        splits[names[-1]] += indices[start:]
    return {name: [examples[i] for i in sorted(idx)] for name, idx in splits.items()}


def split_by_article(examples: list[dict], eval_fraction: float = 0.2, seed: int = SPLIT_SEED) -> dict[str, list[dict]]:
    """When only an eval file exists: whole articles go to train or eval so no passage leaks across."""
    titles = sorted({e["title"] for e in examples})
    random.Random(seed).shuffle(titles)
    n_eval = max(1, round(len(titles) * eval_fraction))
    eval_titles = set(titles[:n_eval])
    return {
        "train": [e for e in examples if e["title"] not in eval_titles],
        "eval": [e for e in examples if e["title"] in eval_titles],
    }


def load_hub_dataset(name: str, config: str | None = None):
    """A hub dataset (or a local dataset folder) through `datasets` (needs `pip install tinybert-mobile[hub]`;
    network access for a hub id)."""
    try:
        import datasets  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise UserError("hub datasets need the 'datasets' package: pip install 'tinybert-mobile[hub]', or pass --train-file/--eval-file") from None
    try:
        return datasets.load_dataset(name, config)
    except Exception as error:  # network, missing dataset or config
        raise UserError(f"could not load dataset {name!r}{f' ({config})' if config else ''} ({type(error).__name__}: "
                        f"{str(error).splitlines()[0][:160]}); pass --train-file/--eval-file for local files") from None
