"""TFLite on Android: the LiteRT Android library's Interpreter (Java) called through pyjnius.

NOT RUN HERE: this machine has no Android SDK, device or JVM with the LiteRT AAR, so this module has never
executed; mobile_app/PACKAGING.md says what is and is not verified. What is verified is the interpreter it
wraps: buildozer.spec pins `com.google.ai.edge.litert:litert:2.3.0`, the release of the ai-edge-litert 2.3.0
wheel that every parity test here runs, whose aarch64 build verify runs under QEMU; on it the app opens a bundle's
LiteRT-profile file (hybrid int8 on int8 kernels), else the TFLite 2.8 one. What is tested here of this module is its
class loading on the main thread, with a stand-in `jnius` (tests/test_litert_android.py).

The code is kept to the calls the LiteRT Interpreter API documents (org.tensorflow.lite.Interpreter, kept under
that package name in the LiteRT AAR): one signature per bucket run with `runSignature(inputs, outputs, key)`,
int32 inputs as native-order ByteBuffers, float32 outputs read back from ByteBuffers sized by the signature's
output tensors. Padding, bucket choice and trimming are `Backend.run`'s, shared with the desktop backend.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from mobile_app.runtime.backends import BackendUnavailableError, BundleError, SignatureBackend, check_runtime

# The LiteRT Android library pinned in buildozer.spec, and the TFLite runtime inside it (runtime_versions.py).
LITERT_ANDROID_RELEASE = "2.3.0"
# Every Java class the backend calls. pyjnius finds the APK's classes only from the app's main thread (a worker
# thread's class loader is the system one), so they are loaded there once, at app start, and reused by backends
# opened on any thread; inference then runs on worker threads as on the desktop.
INTERPRETER, OPTIONS = "org.tensorflow.lite.Interpreter", "org.tensorflow.lite.Interpreter$Options"
JAVA_CLASSES = (INTERPRETER, OPTIONS, "java.io.File", "java.nio.ByteBuffer", "java.nio.ByteOrder", "java.util.HashMap")
_java: dict = {}
_loading = threading.Lock()


def load_java_classes() -> dict:
    """{class name: pyjnius class} of JAVA_CLASSES, loaded once; call it on the main thread (the app does at start)."""
    with _loading:
        if _java:
            return _java
        if threading.current_thread() is not threading.main_thread():
            raise BackendUnavailableError("the LiteRT Java classes must be loaded on the app's main thread (pyjnius finds the APK's "
                                          "classes only there); call mobile_app.runtime.litert_android.load_java_classes() at app start")
        try:
            from jnius import autoclass
        except ImportError:
            raise BackendUnavailableError("pyjnius is missing; add pyjnius to buildozer.spec's requirements") from None
        try:
            loaded = {name: autoclass(name) for name in JAVA_CLASSES}
        except Exception:  # jnius raises JavaException for a class the APK does not have
            raise BackendUnavailableError("the LiteRT Android library is not in the APK; add com.google.ai.edge.litert:litert:"
                                          f"{LITERT_ANDROID_RELEASE} to android.gradle_dependencies") from None
        _java.update(loaded)
        return _java


class LiteRTAndroidBackend(SignatureBackend):
    """A .tflite artifact run by the LiteRT Android library (entry['signatures'] = {"<bucket>": "<signature key>"}).
    It may be opened and run on any thread once load_java_classes() ran on the main thread."""

    name = "litert-android"

    def __init__(self, path: str | Path, entry: dict, num_threads: int = 2, pad_id: int = 0):
        from mobile_app.runtime.runtime_versions import litert_tflite_version

        super().__init__(path, entry, pad_id)
        java = load_java_classes()
        self.interpreter_name = f"LiteRT Android {LITERT_ANDROID_RELEASE}"
        self.tflite_version = litert_tflite_version(LITERT_ANDROID_RELEASE)
        check_runtime(self.path, self.entry, self.interpreter_name, self.tflite_version)
        self._byte_buffer = java["java.nio.ByteBuffer"]
        self._native_order = java["java.nio.ByteOrder"].nativeOrder()
        self._hash_map = java["java.util.HashMap"]
        options = java[OPTIONS]()
        options.setNumThreads(num_threads)
        try:
            self.interpreter = java[INTERPRETER](java["java.io.File"](str(self.path)), options)
        except Exception as error:
            raise BundleError(f"{self.path.name} is not a loadable TFLite model ({error}); re-export the bundle") from None
        self.check_signatures(self.interpreter.getSignatureKeys())

    def _predict(self, padded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = self.signatures[padded["input_ids"].shape[1]]
        inputs = self._hash_map()
        for name, array in padded.items():
            inputs.put(name, self._byte_buffer.wrap(np.ascontiguousarray(array, dtype="<i4").tobytes()).order(self._native_order))
        outputs, shapes = self._hash_map(), {}
        for name in self.interpreter.getSignatureOutputs(key):
            tensor = self.interpreter.getOutputTensorFromSignature(name, key)
            shapes[name] = tuple(tensor.shape())
            outputs.put(name, self._byte_buffer.allocate(tensor.numBytes()).order(self._native_order))
        self.interpreter.runSignature(inputs, outputs, key)
        # Java bytes are signed; a heap ByteBuffer's array() holds the float32 output in native (little-endian) order.
        return {name: np.asarray(list(outputs.get(name).array()), dtype=np.int8).view("<f4").reshape(shapes[name])
                for name in shapes}
