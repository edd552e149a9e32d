"""The peer beside our .tflite: ONNX Runtime dynamic int8 of the same student (bench-only; `pip install .[bench]`).

Exported from the same ExportableBert the .tflite files come from (torch.onnx, TorchScript exporter, dynamic
sequence axis), then `onnxruntime.quantization.quantize_dynamic` (int8 weights, per-tensor). It sits behind the
app's Backend so it is padded to the same buckets and fed the same inputs as every artifact.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mobile_app.runtime.backends import Backend
from mobile_app.runtime.contract import INPUT_NAMES


def export_onnx_int8(student_dir: str | Path, out_dir: Path) -> Path:
    """out_dir/student_int8.onnx (reused when present: delete it after retraining the student)."""
    import torch

    from export.wrapper import ExportableBert, load_student

    out_dir.mkdir(parents=True, exist_ok=True)
    float_path, int8_path = out_dir / "student_fp32.onnx", out_dir / "student_int8.onnx"
    if int8_path.is_file():
        return int8_path
    model = ExportableBert(load_student(student_dir)).eval()
    with torch.no_grad():
        torch.onnx.export(model, model.example_inputs(128), str(float_path), input_names=list(INPUT_NAMES),
                          output_names=list(model.output_names), dynamic_axes={n: {1: "seq"} for n in INPUT_NAMES}, dynamo=False)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(float_path), str(int8_path), weight_type=QuantType.QInt8)
    float_path.unlink()
    return int8_path


class OnnxBackend(Backend):
    """An ONNX Runtime CPU session with `num_threads` intra-op threads, padded like the .tflite artifacts."""

    name = "onnxruntime"

    def __init__(self, path: Path, buckets, num_threads: int = 1, pad_id: int = 0):
        import onnxruntime

        super().__init__(path, {"format": "onnx", "precision": "int8-dynamic"}, buckets, pad_id)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = num_threads, 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _predict(self, padded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(None, padded)))


def onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__
