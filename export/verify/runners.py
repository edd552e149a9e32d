"""Something with `.run(input_ids, attention_mask, token_type_ids) -> {output name: array}` for each model kind.

Verification treats every model alike through this interface: the PyTorch student (the reference) and
each bundle artifact through the runtime the phone uses (TFLite -> mobile_app.runtime.backends.TFLiteBackend;
Core ML -> export.verify.coreml_eval.CoreMLEvaluatorBackend on Linux, mobile_app.runtime.backends.CoreMLBackend on
macOS). Inputs are one unpadded encoding; every runner pads it to the smallest bucket that holds it
(mobile_app.runtime.backends.Backend.pad) and trims per-token outputs back to its length.
"""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import torch

from mobile_app.runtime.backends import Backend
from mobile_app.runtime.contract import INPUT_NAMES
from mobile_app.runtime.bundle import BundleError


class TorchRunner(Backend):
    """The PyTorch student (ExportableBert) behind the app's Backend, so it is padded and trimmed as the artifacts are."""

    name = "pytorch"

    def __init__(self, model, buckets, pad_id: int = 0):
        super().__init__("pytorch-student", {"format": "pytorch", "precision": "fp32"}, buckets, pad_id)
        self.model = model.eval()

    @torch.no_grad()
    def _predict(self, padded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.model(*(torch.from_numpy(padded[name]) for name in INPUT_NAMES))
        out = out if isinstance(out, tuple) else (out,)
        return {name: value.numpy() for name, value in zip(self.model.output_names, out)}


def _coreml_runner(path: Path, entry: dict):
    if platform.system() == "Darwin":
        from mobile_app.runtime.backends import CoreMLBackend

        return CoreMLBackend(str(path), entry)
    from export.verify.coreml_eval import CoreMLEvaluatorBackend

    return CoreMLEvaluatorBackend(str(path), entry)


def _tflite_runner(path: Path, entry: dict):
    from mobile_app.runtime.backends import TFLiteBackend

    return TFLiteBackend(str(path), entry)


RUNNER_FACTORIES = {"tflite": _tflite_runner, "coreml": _coreml_runner}


def artifact_runner(bundle_dir: str | Path, entry: dict):
    """The on-device runner of one manifest artifact entry."""
    factory = RUNNER_FACTORIES.get(entry.get("format"))
    if factory is None:
        raise BundleError(f"{bundle_dir}: artifact {entry.get('file')} has unknown format {entry.get('format')!r}; re-export the bundle")
    return factory(Path(bundle_dir) / entry["file"], entry)


def artifact_label(entry: dict) -> str:
    """How reports and errors name an artifact: its file name."""
    return entry["file"]


def artifact_kind(entry: dict) -> str:
    """`format/precision`, the key of the parity threshold table."""
    return f"{entry.get('format')}/{entry.get('precision')}"


def runner_runtime(runner) -> str:
    """How the matrix names the runtime an in-process runner is (Core ML artifacts): Core ML or coremltools' evaluator."""
    from importlib.metadata import version

    names = {"CoreMLBackend": "core-ml", "CoreMLEvaluatorBackend": "coremltools-evaluator"}
    name = names.get(type(runner).__name__, type(runner).__name__)
    return f"{name}-{version('coremltools')}" if name in names.values() else name
