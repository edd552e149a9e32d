"""Writing model folders all-or-nothing (built in a sibling staging folder, then swapped in) and their records."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mobile_app.runtime.errors import UserError
from mobile_app.runtime.contract import VOCAB_NAME
from mobile_app.runtime.files import replace_dir
from mobile_app.runtime.tokenizer import write_vocab


def check_writable(folder: Path, flag: str = "--out") -> None:
    """Refuse an output folder that cannot be written, by writing a probe into its nearest existing ancestor (an
    access check says yes to root on read-only mounts and /proc); leaves nothing behind."""
    folder = Path(folder)
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {folder}: {existing} exists and is not a folder; pass a folder path")
    try:
        Path(tempfile.mkdtemp(prefix=".write-probe-", dir=existing)).rmdir()
    except OSError as error:
        raise UserError(f"{flag} {folder} cannot be written ({existing}: {error.strerror}); choose a writable folder") from None


def save_model_folder(model, tokenizer, folder: Path) -> None:
    """A standard HF folder: config.json, model.safetensors and the tokenizer files (vocab.txt included)."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    write_vocab(tokenizer.get_vocab(), Path(folder) / VOCAB_NAME)


def publish_model_folder(accelerator, target: Path, model, tokenizer, key_file: str, record: dict) -> None:
    """Write a trained model folder with its cache-key record, once (main process) and atomically; all processes wait."""
    if accelerator.is_main_process:
        with replace_dir(target) as stage:
            save_model_folder(model, tokenizer, stage)
            (stage / key_file).write_text(json.dumps(record, indent=2))
    accelerator.wait_for_everyone()


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


def cached_record(folder: Path, record_file: str, key: str, key_field: str = "key", force: bool = False) -> dict | None:
    """The folder's record when it was made from `key`, else None (also with `force`): the distill stages' one reuse rule."""
    path = Path(folder) / record_file
    if force or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and record.get(key_field) == key else None
