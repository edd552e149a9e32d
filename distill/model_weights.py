"""A model folder's safetensors files, checked before transformers reads them.

A truncated or damaged weight file otherwise surfaces as a SafetensorError traceback from deep inside
`from_pretrained`, without the file's name. Reading each header (and its size check) is cheap: no tensor is loaded.
"""
from __future__ import annotations

from pathlib import Path

from mobile_app.runtime.errors import UserError


def check_weight_files(source: str | Path) -> None:
    """Refuse, in one line naming the file, a local folder's *.safetensors that cannot be read. Hub ids pass through."""
    folder = Path(source)
    if not folder.is_dir():
        return
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="numpy") as weights:
                weights.keys()
        except Exception as error:  # SafetensorError, OSError: the file is not whole
            raise UserError(f"{file} is truncated or corrupt, not a readable safetensors file ({error}); re-save or re-download the model") from None
