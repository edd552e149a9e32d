"""Readers for the three task datasets, from local files (offline) or the Hugging Face hub.

Each reader returns plain dicts so that export and benchmarks can use them without torch.
Splits are deterministic: the same files and seed always give the same examples.
"""
from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from pathlib import Path

from mobile_app.runtime.errors import UserError

SPLIT_SEED = 42


def _require_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found at {path}; pass --data-dir holding sst2/, sms_spam/, squad_v1/ or an explicit file path")
    return path


def _not_utf8(path: Path, error: UnicodeDecodeError) -> UserError:
    kind = "UTF-16 text" if error.object[:2] in (b"\xff\xfe", b"\xfe\xff") else "not UTF-8 text"
    return UserError(f"{path}: {kind} (byte {error.start} of a read block is {error.object[error.start:error.start + 1]!r}); "
                     "save the file as UTF-8")


def _tsv_rows(path: Path):
    """Yield (line_number, fields) of a TSV read without quote handling (the datasets contain bare quotes).
    UTF-8, with or without a byte-order mark; anything else is a UserError."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            for number, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                yield number, row
    except UnicodeDecodeError as error:
        raise _not_utf8(path, error) from None
    except csv.Error as error:
        raise UserError(f"{path}: not a tab-separated text file ({error}); save it as UTF-8 TSV") from None


def read_sst2(path: str | Path) -> list[dict]:
    """GLUE SST-2 TSV: a `sentence<TAB>label` header, then one labelled sentence per line."""
    path = _require_file(path, "SST-2 file")
    examples = []
    for number, row in _tsv_rows(path):
        if number == 1:
            if [c.strip() for c in row[:2]] != ["sentence", "label"]:
                raise UserError(f"{path}:1: expected the header 'sentence<TAB>label', got {row!r}")
            continue
        if len(row) != 2:
            raise UserError(f"{path}:{number}: expected 2 tab-separated columns (sentence, label), got {len(row)}")
        text, label = row[0].strip(), row[1].strip()
        if label not in ("0", "1"):
            raise UserError(f"{path}:{number}: label must be 0 or 1, got {label!r}")
        if not text:
            raise UserError(f"{path}:{number}: empty sentence")
        examples.append({"text": text, "label": int(label)})
    if not examples:
        raise UserError(f"{path}: no examples")
    return examples


def read_sms_spam(path: str | Path) -> list[dict]:
    """UCI SMS Spam Collection: `ham|spam<TAB>text`, no header."""
    path = _require_file(path, "SMS Spam Collection file")
    examples = []
    for number, row in _tsv_rows(path):
        if len(row) != 2:
            raise UserError(f"{path}:{number}: expected 2 tab-separated columns (ham|spam, text), got {len(row)}")
        label, text = row[0].strip(), row[1].strip()
        if label not in ("ham", "spam"):
            raise UserError(f"{path}:{number}: label must be 'ham' or 'spam', got {label!r}")
        if not text:
            raise UserError(f"{path}:{number}: empty message")
        examples.append({"text": text, "label": int(label == "spam")})
    if not examples:
        raise UserError(f"{path}: no examples")
    return examples


def stratified_split(examples: list[dict], fractions=(0.8, 0.1, 0.1), seed: int = SPLIT_SEED) -> dict[str, list[dict]]:
    """Split per label with a seeded shuffle so every split keeps the class ratio (train/dev/test)."""
    by_label = defaultdict(list)
    for index, example in enumerate(examples):
        by_label[example["label"]].append(index)
    splits = {"train": [], "dev": [], "test": []}
    rng = random.Random(seed)
    for label in sorted(by_label):
        indices = by_label[label]
        rng.shuffle(indices)
        n_train = round(len(indices) * fractions[0])
        n_dev = round(len(indices) * fractions[1])
        splits["train"] += indices[:n_train]
        splits["dev"] += indices[n_train:n_train + n_dev]
        splits["test"] += indices[n_train + n_dev:]
    return {name: [examples[i] for i in sorted(idx)] for name, idx in splits.items()}


def read_squad(path: str | Path) -> list[dict]:
    """SQuAD v1.1 JSON flattened to one dict per question, keeping its article title."""
    path = _require_file(path, "SQuAD JSON file")
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


def split_by_article(examples: list[dict], eval_fraction: float = 0.2, seed: int = SPLIT_SEED) -> dict[str, list[dict]]:
    """When only SQuAD dev exists: whole articles go to train or eval so no passage leaks across."""
    titles = sorted({e["title"] for e in examples})
    random.Random(seed).shuffle(titles)
    n_eval = max(1, round(len(titles) * eval_fraction))
    eval_titles = set(titles[:n_eval])
    return {
        "train": [e for e in examples if e["title"] not in eval_titles],
        "eval": [e for e in examples if e["title"] in eval_titles],
    }


def load_hub_dataset(name: str, config: str | None = None):
    """Load a hub dataset (needs `pip install tinybert-mobile[hub]` and network access)."""
    try:
        import datasets  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise UserError("hub datasets need the 'datasets' package: pip install 'tinybert-mobile[hub]', or pass --data-dir") from None
    try:
        return datasets.load_dataset(name, config)
    except Exception as error:  # network, missing dataset
        raise UserError(f"could not load hub dataset {name!r} ({type(error).__name__}: {str(error).splitlines()[0]})"
                        f"; pass --data-dir for offline files") from None
