"""The PyTorch student behind the app's Backend interface: the reference every artifact is compared with.

Padded to the same buckets and trimmed the same way as the artifacts (mobile_app.runtime.backends.Backend), and run
through the same TaskRunner, so the reference sees exactly the inputs the phone's model sees.
"""
from __future__ import annotations

import numpy as np
import torch

from mobile_app.runtime.backends import Backend
from mobile_app.runtime.contract import INPUT_NAMES


class TorchRunner(Backend):
    """The PyTorch student (ExportableBert) as a Backend."""

    name = "pytorch"

    def __init__(self, model, buckets, pad_id: int = 0):
        super().__init__("pytorch-student", {"format": "pytorch", "precision": "fp32"}, buckets, pad_id)
        self.model = model.eval()

    @torch.no_grad()
    def _predict(self, padded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.model(*(torch.from_numpy(padded[name]) for name in INPUT_NAMES))
        out = out if isinstance(out, tuple) else (out,)
        return {name: value.numpy() for name, value in zip(self.model.output_names, out)}
