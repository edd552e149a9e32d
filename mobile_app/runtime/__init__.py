"""The on-device runtime: numpy and the standard library only, so the phone, the app and `verify` run the same code.

Nothing here imports Kivy, torch, transformers or `export`; `export` and the app both build on it.
"""
from mobile_app.runtime.task_runner import TaskRunner, load_task

__all__ = ["TaskRunner", "load_task"]
