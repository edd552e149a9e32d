"""The Android backend loads its Java classes on the main thread and runs from any thread after that.

There is no JVM here, so `jnius` is a stand-in that records which thread asked for each class and hands back
small Python classes with the methods the backend calls. It is the one stand-in these tests allow: pyjnius
itself, the LiteRT AAR and an Android device cannot run on this machine (mobile_app/PACKAGING.md).
"""
from __future__ import annotations

import sys
import threading
import types

import pytest

import mobile_app.runtime.litert_android as litert_android
from mobile_app.runtime.backends import BackendUnavailableError

ENTRY = {"file": "m.tflite", "precision": "int8-dynamic", "signatures": {"16": "seq_16"}}


class _Recorder:
    """A `jnius` stand-in: autoclass(name) records the calling thread and returns a stand-in Java class."""

    def __init__(self):
        self.calls: list[tuple[str, threading.Thread]] = []

    def autoclass(self, name: str):
        self.calls.append((name, threading.current_thread()))
        return _JAVA_STANDINS[name]


class _Interpreter:
    def __init__(self, file, options):
        self.file, self.options = file, options

    def getSignatureKeys(self):
        return ["seq_16"]


class _Options:
    def setNumThreads(self, n):
        self.threads = n


_JAVA_STANDINS = {litert_android.INTERPRETER: _Interpreter, litert_android.OPTIONS: _Options, "java.io.File": str,
                  "java.nio.ByteBuffer": object, "java.nio.ByteOrder": types.SimpleNamespace(nativeOrder=lambda: "little"),
                  "java.util.HashMap": dict}


@pytest.fixture()
def jnius(monkeypatch):
    recorder = _Recorder()
    monkeypatch.setitem(sys.modules, "jnius", types.SimpleNamespace(autoclass=recorder.autoclass))
    monkeypatch.setattr(litert_android, "_java", {})
    return recorder


def _in_worker(call):
    """call() on a worker thread: its result, or the exception it raised."""
    box = {}

    def run():
        try:
            box["result"] = call()
        except Exception as error:  # handed back to the test
            box["error"] = error

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(10)
    return box


def test_classes_load_on_the_main_thread_and_a_worker_opens_and_uses_them(jnius, tmp_path):
    (tmp_path / "m.tflite").write_bytes(b"stand-in")
    litert_android.load_java_classes()  # what the app's build() does on Android
    assert sorted(name for name, _ in jnius.calls) == sorted(litert_android.JAVA_CLASSES)
    assert all(thread is threading.main_thread() for _, thread in jnius.calls)
    box = _in_worker(lambda: litert_android.LiteRTAndroidBackend(tmp_path / "m.tflite", ENTRY, num_threads=3))
    assert "error" not in box, box.get("error")
    backend = box["result"]
    assert backend.tflite_version == "2.22.0" and backend.interpreter.options.threads == 3
    assert len(jnius.calls) == len(litert_android.JAVA_CLASSES)  # the worker loaded nothing itself


def test_a_worker_that_comes_first_is_refused_in_one_line_without_touching_jnius(jnius, tmp_path):
    (tmp_path / "m.tflite").write_bytes(b"stand-in")
    box = _in_worker(lambda: litert_android.LiteRTAndroidBackend(tmp_path / "m.tflite", ENTRY))
    error = box.get("error")
    assert isinstance(error, BackendUnavailableError) and "\n" not in str(error)
    assert "main thread" in str(error) and "load_java_classes() at app start" in str(error)
    assert jnius.calls == []


def test_a_missing_litert_library_names_the_gradle_dependency(monkeypatch):
    def autoclass(name):
        raise RuntimeError(f"Class not found {name!r}")  # what pyjnius raises for a class the APK lacks

    monkeypatch.setitem(sys.modules, "jnius", types.SimpleNamespace(autoclass=autoclass))
    monkeypatch.setattr(litert_android, "_java", {})
    with pytest.raises(BackendUnavailableError, match="com.google.ai.edge.litert:litert:2.3.0 to android.gradle_dependencies"):
        litert_android.load_java_classes()
