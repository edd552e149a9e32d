"""Writing output folders all-or-nothing: a model folder is built in a sibling temp folder, then swapped in."""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def replace_dir(target: Path):
    """Yield an empty staging folder; on success it replaces `target` (never a half-written folder at `target`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield stage
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            target.rename(old / "x")
        stage.rename(target)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def save_model_folder(model, tokenizer, folder: Path) -> None:
    """A standard HF folder: config.json, model.safetensors and the tokenizer files (vocab.txt included)."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    write_vocab(tokenizer, Path(folder) / "vocab.txt")


def publish_model_folder(accelerator, target: Path, model, tokenizer, key_file: str, record: dict) -> None:
    """Write a trained model folder with its cache-key record, once (main process) and atomically; all processes wait."""
    if accelerator.is_main_process:
        with replace_dir(target) as stage:
            save_model_folder(model, tokenizer, stage)
            (stage / key_file).write_text(json.dumps(record, indent=2))
    accelerator.wait_for_everyone()


def write_vocab(tokenizer, path: Path) -> None:
    """WordPiece vocab.txt, one token per line in id order (transformers 5 saves only tokenizer.json)."""
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError("tokenizer ids are not contiguous; cannot write vocab.txt")
    Path(path).write_text("".join(t + "\n" for t in tokens), encoding="utf-8")


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))
