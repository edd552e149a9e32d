"""The app's entry point to a model: `load_task(bundle_dir)` -> a TaskRunner that classifies text or answers questions.

It checks the bundle (manifest, file hashes, task), builds the tokenizer from the bundle's vocab and
settings, and opens one artifact through a backend. numpy + standard library only: importing it pulls
in neither torch nor transformers, so it runs on Android and iOS.
"""
from __future__ import annotations

import time
from pathlib import Path

from mobile_app.runtime.backends import Backend, open_backend
from mobile_app.runtime.bundle import BundleError, artifacts, load_manifest
from mobile_app.runtime.classify import Prediction, classify, encode_text, from_probabilities
from mobile_app.runtime.qa import Answer, best_span, bundle_windows
from mobile_app.runtime.tokenizer import WordPieceTokenizer


def _text(value) -> str:
    """Text to tokenize: None is empty, bytes are UTF-8 (bad bytes become U+FFFD), anything else its str()."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


class TaskRunner:
    """One task's tokenizer and model; `classify(text)` or `answer(question, context)` with their latency."""

    def __init__(self, bundle_dir: str | Path, manifest: dict, tokenizer: WordPieceTokenizer, backend: Backend, fmt: str = "tflite"):
        self.bundle_dir = Path(bundle_dir)
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.backend = backend
        self.fmt = fmt
        self.settings = manifest["tokenizer"]
        self.head = manifest.get("head")

    # ---- artifact choice ------------------------------------------------------------------------
    @property
    def artifact_name(self) -> str:
        return self.backend.entry["file"]

    @property
    def precision(self) -> str:
        return self.backend.precision

    def available_precisions(self) -> list[str]:
        """Precisions of this format's artifacts in the bundle, in manifest order."""
        return [entry["precision"] for entry in artifacts(self.manifest, self.fmt)]

    def set_precision(self, precision: str) -> None:
        """Switch to the artifact of another precision (same format); an unknown one is refused with BundleError."""
        if precision != self.backend.precision:
            self.backend = open_backend(self.bundle_dir, self.manifest, self.fmt, precision, pad_id=self.tokenizer.pad_id)

    # ---- inference ------------------------------------------------------------------------------
    def _max_length(self) -> int:
        """The longest input the artifact takes: the bundle's max_seq_length, capped at the largest bucket."""
        return min(int(self.settings.get("max_seq_length", self.backend.max_length)), self.backend.max_length)

    def _require(self, head: str, call: str) -> None:
        if self.head != head:
            other = "answer(question, context)" if self.head == "qa" else "classify(text)"
            raise BundleError(f"the {self.manifest.get('task')!r} bundle is a {self.head} model; call {other}, not {call}")

    def classify(self, text: str) -> tuple[Prediction, float]:
        """(Prediction, latency in ms: tokenize + model + softmax). Empty text classifies [CLS][SEP]; long text is truncated."""
        self._require("classification", "classify(text)")
        start = time.perf_counter()
        encoding = encode_text(self.tokenizer, _text(text), self._max_length())
        outputs = self.backend.run(encoding.input_ids, encoding.attention_mask, encoding.token_type_ids)
        labels = self.manifest["labels"]
        prediction = classify(outputs["logits"], labels) if "logits" in outputs else from_probabilities(outputs["probabilities"], labels)
        return prediction, (time.perf_counter() - start) * 1000.0

    def answer(self, question: str, context: str) -> tuple[Answer, float]:
        """(Answer, latency in ms over all context windows). No valid span gives Answer("", ..., score=-inf)."""
        self._require("qa", "answer(question, context)")
        start = time.perf_counter()
        context = _text(context)
        windows = bundle_windows(self.tokenizer, _text(question), context, self.settings, self._max_length())
        starts, ends = [], []
        for window in windows:
            outputs = self.backend.run(window.input_ids, window.attention_mask, window.token_type_ids)
            starts.append(outputs["start_logits"])
            ends.append(outputs["end_logits"])
        answer = best_span(windows, starts, ends, context, max_answer_length=int(self.settings.get("max_answer_length", 30)))
        return answer, (time.perf_counter() - start) * 1000.0


def load_task(bundle_dir: str | Path, task: str | None = None, fmt: str = "tflite", precision: str | None = None,
              verify_files: bool = True) -> TaskRunner:
    """Open a checked bundle: a tampered, incomplete or other-task bundle is refused with BundleError."""
    manifest = load_manifest(bundle_dir, task=task, verify_files=verify_files)
    if manifest.get("head") not in ("classification", "qa"):
        raise BundleError(f"{bundle_dir}: bundle.json has head {manifest.get('head')!r}; expected 'classification' or 'qa'; re-export the bundle")
    tokenizer = WordPieceTokenizer.from_manifest(bundle_dir, manifest)
    backend = open_backend(bundle_dir, manifest, fmt, precision, pad_id=tokenizer.pad_id)
    return TaskRunner(bundle_dir, manifest, tokenizer, backend, fmt)
