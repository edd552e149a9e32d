"""Model backends behind one interface: `Backend.run(input_ids, attention_mask, token_type_ids) -> {name: array}`.

A backend takes ONE example as 1-D int sequences (unpadded, or padded with attention 0), pads it to the
smallest bucket the artifact was exported for, runs it, and trims per-token outputs (start/end logits)
back to the input length. numpy + standard library at import time; the interpreter is imported when a
backend is opened.

Every backend returns the same shapes: a classifier `logits` (or, for a Core ML classifier, `probabilities`) as
one float32 row in label order, a QA model `start_logits` and `end_logits` per input token. Which backend opens
which artifact is decided in one place, mobile_app/runtime/backend_factory.py.

TFLite (Linux, macOS, Windows): `TFLiteBackend` over ai_edge_litert's interpreter (else tflite_runtime,
else tensorflow.lite), one signature runner per bucket; on Android, `LiteRTAndroidBackend`
(mobile_app/runtime/litert_android.py). Before loading a file every TFLite backend compares what the export
recorded the file needs (mobile_app/runtime/runtime_versions.py) with its interpreter's TFLite version and
refuses a file it cannot run in one line, instead of failing deep in the interpreter or answering garbage.

Core ML: `CoreMLBackend` runs a .mlpackage through coremltools' MLModel, which predicts on macOS only.
On Linux there is no Core ML runtime; `python -m export verify` checks Core ML artifacts numerically
there (coremltools' MIL evaluator). On iOS there is no coremltools either; two routes run the same
bundle (bundle.json + vocab.txt + the .mlpackage):
  * Swift: compile the package into the app (Xcode turns it into .mlmodelc), port the ~200 lines of
    tokenizer.py/qa.py, and call `MLModel.prediction(from:)` with MLMultiArray int32 inputs of shape
    (1, bucket) named input_ids / attention_mask / token_type_ids, padded as `Backend.run` pads.
  * Python (kivy-ios): keep this runtime and the Kivy app, and replace `CoreMLBackend._predict` with a
    pyobjus bridge to CoreML.framework (`MLModel.modelWithContentsOfURL_error_` on the compiled model,
    `MLDictionaryFeatureProvider` of `MLMultiArray` inputs); everything around it stays as it is.
"""
from __future__ import annotations

import platform
import threading
from pathlib import Path

import numpy as np

from mobile_app.runtime.bundle import BundleError
from mobile_app.runtime.contract import (COREML_LABEL_OUTPUT, COREML_PROBABILITIES_OUTPUT, INPUT_NAMES, PER_TOKEN_OUTPUTS,
                                         PROBABILITIES_OUTPUT)
from mobile_app.runtime.runtime_versions import litert_tflite_version, missing_runtime


class BackendUnavailableError(BundleError):
    """The artifact's runtime cannot run on this machine (e.g. Core ML off macOS, no TFLite interpreter)."""


class Backend:
    """Pads one example to a bucket, runs it, trims per-token outputs. Subclasses implement `_predict`."""

    name = "backend"

    def __init__(self, path: str | Path, entry: dict, buckets, pad_id: int = 0):
        self.path = Path(path)
        self.entry = dict(entry)
        self.precision = self.entry.get("precision", "")
        self.buckets = sorted(int(b) for b in buckets)
        if not self.buckets:
            raise BundleError(f"{self.path.name}: its manifest entry lists no sequence-length buckets; re-export the bundle")
        self.pad_id = pad_id
        self._lock = threading.Lock()  # interpreters are not re-entrant; the app runs models off the UI thread

    @property
    def max_length(self) -> int:
        return self.buckets[-1]

    def bucket_for(self, n: int) -> int:
        """The smallest bucket that holds n tokens."""
        for bucket in self.buckets:
            if n <= bucket:
                return bucket
        raise ValueError(f"an input of {n} tokens is longer than the largest bucket {self.buckets[-1]} of {self.path.name}; "
                         f"truncate it to {self.buckets[-1]} tokens")

    def pad(self, input_ids, attention_mask, token_type_ids) -> tuple[dict[str, np.ndarray], int]:
        """Batch-1 int32 arrays of the smallest fitting bucket, and the input length they stand for."""
        rows = [np.asarray(a, dtype=np.int32).reshape(-1) for a in (input_ids, attention_mask, token_type_ids)]
        n = len(rows[0])
        if any(len(r) != n for r in rows):
            raise ValueError(f"input_ids, attention_mask and token_type_ids must have one length, got {[len(r) for r in rows]}")
        if n > self.buckets[-1]:  # padded past the largest bucket: drop the trailing padding
            attended = np.flatnonzero(rows[1])
            n = int(attended[-1]) + 1 if attended.size else 1
            rows = [r[:n] for r in rows]
        bucket = self.bucket_for(n)
        padded = {}
        for name, row, fill in zip(INPUT_NAMES, rows, (self.pad_id, 0, 0)):
            out = np.full((1, bucket), fill, dtype=np.int32)
            out[0, :n] = row
            padded[name] = out
        return padded, n

    def run(self, input_ids, attention_mask, token_type_ids) -> dict[str, np.ndarray]:
        """{output name: array} for one example; batch axis dropped, per-token outputs cut to the input length."""
        padded, n = self.pad(input_ids, attention_mask, token_type_ids)
        with self._lock:
            raw = self._predict(padded)
        outputs = {}
        for name, value in raw.items():
            value = np.asarray(value)
            if value.ndim >= 1 and value.shape[0] == 1:
                value = value[0]
            if name in PER_TOKEN_OUTPUTS:
                value = value[..., :n]
            outputs[name] = value
        return outputs

    def _predict(self, padded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path.name}, precision={self.precision!r}, buckets={self.buckets})"


def find_interpreter():
    """(Interpreter class, its package and version, the TFLite runtime version inside) of the desktop TFLite this
    Python has: ai_edge_litert, else tflite_runtime, else tensorflow.lite."""
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, f"ai-edge-litert {ai_edge_litert.__version__}", litert_tflite_version(ai_edge_litert.__version__)
    except ImportError:
        pass
    try:
        import tflite_runtime
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, f"tflite-runtime {tflite_runtime.__version__}", tflite_runtime.__version__
    except ImportError:
        pass
    try:
        import tensorflow as tf
        return tf.lite.Interpreter, f"tensorflow {tf.__version__}", tf.__version__
    except ImportError:
        raise BackendUnavailableError("no TFLite interpreter found; install ai-edge-litert (or tflite-runtime on the device)") from None


def check_runtime(path: Path, entry: dict, interpreter: str, tflite_version: str) -> None:
    """Refuse, in one line, an artifact whose recorded needs exceed this interpreter's TFLite version."""
    lacking = missing_runtime(entry, tflite_version)
    if lacking:
        major_minor = ".".join(tflite_version.split(".")[:2])
        raise BackendUnavailableError(f"{path.name}: {lacking}, but this interpreter is {interpreter} (TFLite {tflite_version}); "
                                      f"re-export with `python -m export tflite --min-runtime {major_minor}` or use a newer interpreter")


class SignatureBackend(Backend):
    """A .tflite artifact with one signature per bucket (entry['signatures'] = {"<bucket>": "<signature key>"}): what
    every binding of a TFLite interpreter shares (the file, the bucket -> signature map, the check of its keys)."""

    def __init__(self, path: str | Path, entry: dict, pad_id: int = 0):
        listed = entry.get("signatures") or {}
        super().__init__(path, entry, listed.keys(), pad_id)
        if not self.path.is_file():
            raise BundleError(f"{self.path} not found; re-export the bundle")
        self.signatures = {int(bucket): key for bucket, key in listed.items()}

    def check_signatures(self, available) -> None:
        """Refuse a file that lacks a signature its manifest entry lists."""
        missing = sorted(set(self.signatures.values()) - set(available))
        if missing:
            raise BundleError(f"{self.path.name} lacks the signatures {', '.join(missing)} its manifest entry lists; re-export the bundle")


class TFLiteBackend(SignatureBackend):
    """A .tflite artifact through the desktop/Python TFLite interpreter (ai-edge-litert, tflite-runtime or tf.lite)."""

    name = "tflite"

    def __init__(self, path: str | Path, entry: dict, num_threads: int = 2, pad_id: int = 0):
        super().__init__(path, entry, pad_id)
        Interpreter, self.interpreter_name, self.tflite_version = find_interpreter()
        check_runtime(self.path, self.entry, self.interpreter_name, self.tflite_version)
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        except (ValueError, RuntimeError) as error:
            raise BundleError(f"{self.path.name} is not a loadable TFLite model ({error}); re-export the bundle") from None
        self.check_signatures(self.interpreter.get_signature_list())
        self._runners = {bucket: self.interpreter.get_signature_runner(key) for bucket, key in self.signatures.items()}

    def _predict(self, padded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._runners[padded["input_ids"].shape[1]](**padded)


class CoreMLBackend(Backend):
    """A Core ML .mlpackage via coremltools (macOS only; see the module docstring for Linux and iOS)."""

    name = "coreml"

    def __init__(self, path: str | Path, entry: dict, buckets=None, pad_id: int = 0):
        super().__init__(path, entry, buckets or entry.get("buckets") or (), pad_id)
        if platform.system() != "Darwin":
            raise BackendUnavailableError(f"Core ML runs only on macOS/iOS, not {platform.system()}; on Linux check "
                                          f"{self.path.name} numerically with `python -m export verify BUNDLE_DIR`, or pick fmt='tflite'")
        try:
            import coremltools as ct
        except ImportError:
            raise BackendUnavailableError("coremltools is not installed; `pip install coremltools==9.0` to run Core ML artifacts on macOS") from None
        if not self.path.exists():
            raise BundleError(f"{self.path} not found; re-export the bundle")
        self.model = ct.models.MLModel(str(self.path))
        self.labels = list(entry.get("labels") or [])

    def _predict(self, padded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.model.predict(padded)
        if COREML_PROBABILITIES_OUTPUT in result:  # a Core ML classifier: probabilities by label, not logits
            probs = result[COREML_PROBABILITIES_OUTPUT]
            labels = self.labels or list(probs)
            return {PROBABILITIES_OUTPUT: np.array([probs[label] for label in labels], dtype=np.float32),
                    COREML_LABEL_OUTPUT: np.asarray(result[COREML_LABEL_OUTPUT], dtype=object)}
        return {name: np.asarray(value, dtype=np.float32).reshape(1, -1) if name in PER_TOKEN_OUTPUTS else np.asarray(value)
                for name, value in result.items()}
