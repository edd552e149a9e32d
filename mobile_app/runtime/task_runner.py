"""The app's entry point to a model: `load_task(bundle_dir)` -> a TaskRunner that classifies text or answers questions.

It checks the bundle (manifest, file hashes, task), builds the tokenizer from the bundle's vocab and settings, and
opens one artifact through mobile_app/runtime/backend_factory.py. `TaskRunner.run_example` is the one path from a raw
example to an answer: the app calls it, and `python -m export verify` calls it for the PyTorch reference, in-process
artifacts and every interpreter's worker, so the parity proof is a proof of this code. numpy + standard library only:
importing it pulls in neither torch nor transformers, so it runs on Android and iOS.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mobile_app.runtime.backend_factory import open_backend
from mobile_app.runtime.backends import Backend
from mobile_app.runtime.bundle import BundleError, artifacts, load_manifest
from mobile_app.runtime.errors import NotTextError
from mobile_app.runtime.classify import Prediction, classify, encode_text, from_probabilities
from mobile_app.runtime.contract import DEFAULT_MAX_ANSWER_LENGTH, OUTPUT_NAMES, PER_TOKEN_OUTPUTS, PROBABILITIES_OUTPUT, SLOWER_THAN_FP32
from mobile_app.runtime.qa import Answer, best_span, bundle_windows
from mobile_app.runtime.tokenizer import WordPieceTokenizer

LOGITS = OUTPUT_NAMES["classification"][0]
START, END = PER_TOKEN_OUTPUTS


def _text(value) -> str:
    """Text to tokenize: None is empty, bytes are UTF-8 (bad bytes become U+FFFD), anything else its str()."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _check_text(**values) -> None:
    """Refuse a non-text argument of the public calls: str, or UTF-8 bytes; None only where the call allows it."""
    for name, value in values.items():
        if not isinstance(value, (str, bytes, bytearray)):
            raise NotTextError(f"{name} must be a str or UTF-8 bytes, got {type(value).__name__}; pass the text itself")


def input_fields(encoding) -> tuple[list[int], list[int], list[int]]:
    """(input_ids, attention_mask, token_type_ids) of an Encoding or a QAWindow: what Backend.run takes."""
    return list(encoding.input_ids), list(encoding.attention_mask), list(encoding.token_type_ids)


def prediction_key(result):
    """What parity compares of a result: a classifier's label index, or a QA answer's [start_char, end_char, text]."""
    if isinstance(result, Answer):
        return [result.start_char, result.end_char, result.text]
    return result.index


@dataclass(frozen=True)
class ExampleRun:
    """One example through the app's code: the model inputs, the model's outputs per input, the result and the time
    (tokenize + every model run + post-processing, in ms)."""
    inputs: list
    outputs: list[dict]
    result: Prediction | Answer
    latency_ms: float


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
        return list(dict.fromkeys(entry["precision"] for entry in artifacts(self.manifest, self.fmt)))

    def app_choices(self) -> list[str]:
        """The precisions the app's picker offers: the bundle's, less those slower than fp32 (contract.SLOWER_THAN_FP32)
        unless one is what runs now."""
        return [p for p in self.available_precisions() if p not in SLOWER_THAN_FP32 or p == self.precision]

    def set_precision(self, precision: str) -> None:
        """Switch to the artifact of another precision (same format); an unknown one is refused with BundleError."""
        if precision != self.backend.precision:
            self.backend = open_backend(self.bundle_dir, self.manifest, self.fmt, precision, pad_id=self.tokenizer.pad_id)

    # ---- one example: encode -> run -> post-process -------------------------------------------
    @property
    def max_length(self) -> int:
        """The longest input the artifact takes: the bundle's max_seq_length, capped at the largest bucket."""
        return min(int(self.settings.get("max_seq_length", self.backend.max_length)), self.backend.max_length)

    def encode(self, example: dict) -> list:
        """The model inputs of one raw example: one encoding of a text, or the windows of question + context (QA)."""
        if self.head == "qa":
            return bundle_windows(self.tokenizer, _text(example.get("question")), _text(example.get("context")), self.settings,
                                  self.max_length)
        pair = _text(example.get("text_pair")) if self.manifest.get("text_pair") else None
        return [encode_text(self.tokenizer, _text(example.get("text")), self.max_length, pair)]

    def predict(self, example: dict, inputs: list, outputs: list[dict]) -> Prediction | Answer:
        """The result of one example from its model outputs: a labelled Prediction, or the best Answer span."""
        labels = self.manifest["labels"]
        if self.head != "qa":
            first = outputs[0]
            return classify(first[LOGITS], labels) if LOGITS in first else from_probabilities(first[PROBABILITIES_OUTPUT], labels)
        max_answer = int(self.settings.get("max_answer_length", DEFAULT_MAX_ANSWER_LENGTH))
        return best_span(inputs, [o[START] for o in outputs], [o[END] for o in outputs], _text(example.get("context")),
                         max_answer_length=max_answer)

    def run_example(self, example: dict) -> ExampleRun:
        """Encode, run every model input, post-process; timed as the app's user waits for it."""
        started = time.perf_counter()
        inputs = self.encode(example)
        outputs = [self.backend.run(*input_fields(encoding)) for encoding in inputs]
        result = self.predict(example, inputs, outputs)
        return ExampleRun(inputs, outputs, result, (time.perf_counter() - started) * 1000.0)

    def warm_up(self) -> None:
        """Run one input per bucket, so that every signature is prepared (where old interpreters fail) before timing."""
        for bucket in self.backend.buckets:
            ids = [self.tokenizer.cls_id] + [self.tokenizer.sep_id] * (bucket - 1)
            self.backend.run(ids, [1] * bucket, [0] * bucket)

    # ---- what the app calls -------------------------------------------------------------------
    def _require(self, head: str, call: str) -> None:
        if self.head != head:
            other = "answer(question, context)" if self.head == "qa" else "classify(text)"
            raise BundleError(f"the {self.manifest.get('task')!r} bundle is a {self.head} model; call {other}, not {call}")

    def classify(self, text: str, text_pair: str | None = None) -> tuple[Prediction, float]:
        """(Prediction, latency in ms: tokenize + model + softmax). Empty text classifies [CLS][SEP]; long text is
        truncated. A sentence-pair task (bundle "text_pair") takes its second text as `text_pair`."""
        self._require("classification", "classify(text)")
        _check_text(text=text)
        if text_pair is not None or self.manifest.get("text_pair"):
            _check_text(text_pair=text_pair)
        run = self.run_example({"text": text, "text_pair": text_pair})
        return run.result, run.latency_ms

    def answer(self, question: str, context: str) -> tuple[Answer, float]:
        """(Answer, latency in ms over all context windows). No valid span gives Answer("", ..., score=-inf)."""
        self._require("qa", "answer(question, context)")
        _check_text(question=question, context=context)
        run = self.run_example({"question": question, "context": context})
        return run.result, run.latency_ms


def load_task(bundle_dir: str | Path, task: str | None = None, fmt: str = "tflite", precision: str | None = None,
              verify_files: bool = True, file: str | None = None, num_threads: int = 2) -> TaskRunner:
    """Open a checked bundle: a tampered, incomplete or other-task bundle is refused with BundleError.

    `file` opens that artifact of the bundle (any format) instead of choosing by format and precision."""
    manifest = load_manifest(bundle_dir, task=task, verify_files=verify_files)
    if manifest.get("head") not in ("classification", "qa"):
        raise BundleError(f"{bundle_dir}: bundle.json has head {manifest.get('head')!r}; expected 'classification' or 'qa'; re-export the bundle")
    tokenizer = WordPieceTokenizer.from_manifest(bundle_dir, manifest)
    backend = open_backend(bundle_dir, manifest, fmt, precision, pad_id=tokenizer.pad_id, file=file, num_threads=num_threads)
    return TaskRunner(bundle_dir, manifest, tokenizer, backend, backend.entry.get("format", fmt))
