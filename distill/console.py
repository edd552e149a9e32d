"""The console is for the user: library warnings and log records go to the run's log file, not the terminal.

torch, torchao, transformers, coremltools, litert-torch and the quantizer warn through Python's `warnings` and
`logging` (torch and transformers with their own stderr handlers, others through logging's last-resort
handler). `route_library_output(log_path)` sends all of them to one file, opened only when something is
written, and stops transformers' weight-loading bars; the kit's own lines and progress bars stay on the
console. `library_note()` is the one line that says where they went. Every CLI calls both.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

# loggers that install their own console handler; everything else reaches the root logger
_OWN_HANDLERS = ("torch", "transformers")
_state: dict = {"handler": None}


class _CountingFileHandler(logging.FileHandler):
    """A log file created on the first record, that counts the records it took."""

    def __init__(self, path: Path):
        super().__init__(path, delay=True, encoding="utf-8")
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return
        self.count += 1
        super().emit(record)


def _take_over(name: str, handler: logging.Handler) -> None:
    logger = logging.getLogger(name)
    for old in list(logger.handlers):  # the library's console handler, or an earlier call's file
        if old is not handler and (isinstance(old, _CountingFileHandler) or not isinstance(old, logging.FileHandler)):
            logger.removeHandler(old)
    if handler not in logger.handlers:
        logger.addHandler(handler)
    logger.propagate = False


def route_library_output(log_path: str | Path) -> Path:
    """Send library warnings and logging to `log_path` (appended; created on the first record); returns the path.

    Call it once arguments are checked (it imports torch, whose import installs torch's console handler)."""
    log_path = Path(log_path).absolute()
    # TensorFlow Lite's and absl's C++ INFO lines go to the process's stderr directly, past Python: keep warnings only
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    os.environ.setdefault("GLOG_minloglevel", "1")
    finish = _state.get("handler")
    if finish is not None:
        logging.getLogger().removeHandler(finish)
        finish.close()
    handler = _CountingFileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    _state["handler"] = handler
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    import torch  # noqa: F401  - installs torch's handler, which is replaced next

    for name in _OWN_HANDLERS:
        _take_over(name, handler)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
        hf_logging.disable_progress_bar()
        _take_over("transformers", handler)
    except ImportError:
        pass
    return log_path


def library_note() -> str | None:
    """'N library messages: PATH' when any were written since route_library_output, else None."""
    handler = _state.get("handler")
    if handler is None or not handler.count:
        return None
    handler.flush()
    return f"({handler.count} library message{'s' if handler.count != 1 else ''} in {handler.baseFilename})"


@contextlib.contextmanager
def library_stdout():
    """Inside: what a library prints to sys.stdout (litert-torch's conversion tree) goes to the log file too."""
    handler = _state.get("handler")
    if handler is None:
        yield
        return
    path = Path(handler.baseFilename)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        yield
