"""TFLite on Android: the LiteRT Android library's Interpreter (Java) called through pyjnius.

NOT RUN HERE: this machine has no Android SDK, device or JVM with the LiteRT AAR, so this module has never
executed; mobile_app/PACKAGING.md says what is and is not verified. What is verified is the interpreter it
wraps: buildozer.spec pins `com.google.ai.edge.litert:litert:2.3.0`, the release of the ai-edge-litert 2.3.0
wheel that every parity test here runs; the export's default profile (TFLite 2.8) runs on it.

The code is kept to the calls the LiteRT Interpreter API documents (org.tensorflow.lite.Interpreter, kept under
that package name in the LiteRT AAR): one signature per bucket run with `runSignature(inputs, outputs, key)`,
int32 inputs as native-order ByteBuffers, float32 outputs read back from ByteBuffers sized by the signature's
output tensors. Padding, bucket choice and trimming are `Backend.run`'s, shared with the desktop backend.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mobile_app.runtime.backends import BackendUnavailableError, BundleError, SignatureBackend, check_runtime

# The LiteRT Android library pinned in buildozer.spec, and the TFLite runtime inside it (runtime_versions.py).
LITERT_ANDROID_RELEASE = "2.3.0"


class LiteRTAndroidBackend(SignatureBackend):
    """A .tflite artifact run by the LiteRT Android library (entry['signatures'] = {"<bucket>": "<signature key>"})."""

    name = "litert-android"

    def __init__(self, path: str | Path, entry: dict, num_threads: int = 2, pad_id: int = 0):
        from mobile_app.runtime.runtime_versions import litert_tflite_version

        super().__init__(path, entry, pad_id)
        try:
            from jnius import autoclass
        except ImportError:
            raise BackendUnavailableError("pyjnius is missing; add pyjnius to buildozer.spec's requirements") from None
        try:
            interpreter_class = autoclass("org.tensorflow.lite.Interpreter")
            options_class = autoclass("org.tensorflow.lite.Interpreter$Options")
        except Exception:  # jnius raises JavaException for a class the APK does not have
            raise BackendUnavailableError("the LiteRT Android library is not in the APK; add com.google.ai.edge.litert:litert:"
                                          f"{LITERT_ANDROID_RELEASE} to android.gradle_dependencies") from None
        self.interpreter_name = f"LiteRT Android {LITERT_ANDROID_RELEASE}"
        self.tflite_version = litert_tflite_version(LITERT_ANDROID_RELEASE)
        check_runtime(self.path, self.entry, self.interpreter_name, self.tflite_version)
        self._byte_buffer = autoclass("java.nio.ByteBuffer")
        self._native_order = autoclass("java.nio.ByteOrder").nativeOrder()
        self._hash_map = autoclass("java.util.HashMap")
        options = options_class()
        options.setNumThreads(num_threads)
        try:
            self.interpreter = interpreter_class(autoclass("java.io.File")(str(self.path)), options)
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
