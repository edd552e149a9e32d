"""The console is for the user: library warnings and log records go to the run's log file, not the terminal.

torch, torchao, transformers, coremltools, litert-torch and the quantizer warn through Python's `warnings` and
`logging` (torch and transformers with their own stderr handlers, others through logging's last-resort
handler). `route_library_output(log_path)` holds all of them for one log file and stops transformers'
weight-loading bars; the kit's own lines and progress bars stay on the console. `library_note()` writes
the file at the end (not for a refused command, which writes nothing) and is the one line that says where
they went. Every CLI calls both.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

# loggers that install their own console handler; everything else reaches the root logger
_OWN_HANDLERS = ("torch", "transformers")
_state: dict = {"handler": None}


class _HeldLog(logging.Handler):
    """Log records held in memory, written to the log file when the command ends in something other than bad input
    (a refused command writes nothing, not even its log)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a record that cannot be formatted must not stop the run
            self.handleError(record)


def _take_over(name: str, handler: logging.Handler) -> None:
    logger = logging.getLogger(name)
    for old in list(logger.handlers):  # the library's console handler, or an earlier call's file
        if old is not handler and (isinstance(old, _HeldLog) or not isinstance(old, logging.FileHandler)):
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
    handler = _HeldLog(log_path)
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


def library_note(save: bool = True) -> str | None:
    """Write the held library messages to the log file (save=True) and return the one line that says so, or None when
    there were none or the command was refused (save=False: nothing is written)."""
    handler = _state.get("handler")
    if handler is None or not handler.lines:
        return None
    lines, handler.lines = handler.lines, []
    if not save:
        return None
    try:
        handler.path.parent.mkdir(parents=True, exist_ok=True)
        with open(handler.path, "a", encoding="utf-8") as log:
            log.write("\n".join(lines) + "\n")
    except OSError:
        return None
    return f"({len(lines)} library message{'s' if len(lines) != 1 else ''} in {handler.path})"


@contextlib.contextmanager
def library_stdout():
    """Inside: what a library prints to sys.stdout or sys.stderr (litert-torch's conversion tree and timings,
    ai-edge-quantizer's progress bars) is held with the log records; bars keep only their last state. The kit's own
    bars, made before, keep writing to the console."""
    handler = _state.get("handler")
    if handler is None:
        yield
        return
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            yield
    finally:
        for line in printed.getvalue().splitlines():
            last = line.split("\r")[-1].replace("\x1b[A", "").strip()
            if last:
                handler.lines.append(last)
