"""What a bundle shows the phone must be what the student was trained with: its labels and its tokenizer.

Parity feeds the PyTorch student and the artifacts the same encodings, so on its own it cannot see a bundle
whose vocab.txt or labels differ from the student's (both sides would read the bundle's copies). These checks
hold the bundle's copies against the student's own: the label names in its config (or distill report), and
the token ids its own tokenizer (Hugging Face `tokenizers`, from the student folder) gives every eval text.
"""
from __future__ import annotations

import json
from pathlib import Path

from mobile_app.runtime.bundle import BundleError

REPORT_FILE = "distill_report.json"


def student_labels(model, student_dir: Path) -> list[str] | None:
    """The student's label names in logit order: its config's, else its distill report's; None when it names none."""
    config = model.config
    names = [str(config.id2label.get(i, "")) for i in range(config.num_labels)]
    if names and not all(name.startswith("LABEL_") for name in names):
        return names
    report = Path(student_dir) / REPORT_FILE
    if report.is_file():
        labels = json.loads(report.read_text(encoding="utf-8")).get("labels")
        if labels:
            return [str(label) for label in labels]
    return None


def check_labels(model, student_dir: Path, manifest: dict, bundle_dir: Path) -> None:
    """Refuse a classification bundle whose labels are not the student's, in the student's order."""
    if manifest.get("head") != "classification":
        return
    trained = student_labels(model, student_dir)
    shown = [str(label) for label in manifest.get("labels", [])]
    if trained is not None and [t.lower() for t in trained] != [s.lower() for s in shown]:
        raise BundleError(f"{bundle_dir}: bundle.json labels {shown} are not the student's {trained} (logit order); "
                          "the app would show the wrong label: re-export the bundle")


def _texts(spec, example: dict) -> list[str]:
    if spec.is_qa:
        return [example["question"], example["context"]]
    return [example["text"]] + ([example["text_pair"]] if example.get("text_pair") else [])


def check_tokenizer(student_dir: Path, bundle_tokenizer, spec, examples: list[dict], bundle_dir: Path) -> None:
    """Refuse a bundle whose vocab or tokenizer settings give other ids than the student's own tokenizer on any eval text."""
    from transformers import AutoTokenizer

    try:
        own = AutoTokenizer.from_pretrained(str(student_dir), use_fast=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError) as error:
        raise BundleError(f"cannot load the tokenizer of the student {student_dir} ({str(error).splitlines()[0][:100]}); "
                          "verify compares the bundle's vocab with it: pass --student with its tokenizer files") from None
    specials = {"[CLS]": bundle_tokenizer.cls_id, "[SEP]": bundle_tokenizer.sep_id, "[PAD]": bundle_tokenizer.pad_id}
    for token, bundle_id in specials.items():
        if own.convert_tokens_to_ids(token) != bundle_id:
            raise BundleError(f"{bundle_dir}: the bundle's vocab gives {token} id {bundle_id} but the student's tokenizer "
                              f"{own.convert_tokens_to_ids(token)}; the bundle's vocab.txt is not the student's: re-export the bundle")
    texts = [text for example in examples for text in _texts(spec, example)]
    expected = own(texts, add_special_tokens=False)["input_ids"] if texts else []
    differ = [i for i, (text, ids) in enumerate(zip(texts, expected)) if bundle_tokenizer.encode_pieces(text)[0] != list(ids)]
    if differ:
        first = texts[differ[0]]
        snippet = " ".join(first.split())[:50]
        raise BundleError(f"{bundle_dir}: the bundle's tokenizer (vocab.txt and bundle.json settings) encodes {len(differ)} of "
                          f"{len(texts)} eval texts unlike the student's own tokenizer (first: {snippet!r}); re-export the bundle")
