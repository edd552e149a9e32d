"""Post-training quantization of a float .tflite with ai-edge-quantizer: one recipe per bundle precision and
runtime profile.

The float model is converted once; every other precision is derived from its bytes, so all variants hold the
same graph and signatures. Static int8 needs calibration inputs per signature (see export/model_inputs.py).

A profile is the oldest TFLite runtime the files must run on (`--min-runtime`). The recipe is picked from the
op versions that runtime has (export/tflite_compat.py): per-channel hybrid int8 needs FULLY_CONNECTED v12 and
EMBEDDING_LOOKUP v4 (TFLite 2.17 / 2.18; older kernels read one scale of a per-channel tensor and answer
garbage), so older profiles get int8 per-channel weights behind DEQUANTIZE v5 (TFLite 2.7) and float compute;
int8-static's int16 activations need RSQRT v3 (TFLite 2.15), so older profiles cannot have it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from mobile_app.runtime.errors import UserError
from mobile_app.runtime.contract import DEFAULT_TFLITE_PROFILES, TFLITE_PRECISIONS
from mobile_app.runtime.runtime_versions import litert_tflite_version, normalize, version_key

# What each precision stores and computes, recorded in the manifest entry.
PRECISION_NOTES = {
    "fp32": "float32 weights and activations",
    "fp16": "float16 weights (dequantized on load), float32 compute",
    "int8-dynamic": "int8 per-channel weights, float activations quantized on the fly",
    "int8-words4": "int8 per-channel weights as int8-dynamic, the word table exactly as the student holds it on a 4-bit grid "
                   "(two codes per byte, unpacked per looked-up row), float activations",
    "int8-static": "int8 weights and embedding table, int16 activations calibrated on train examples, float fallback where unsupported",
}

# int8-dynamic under a profile older than per-channel hybrid kernels (see the module docstring).
WEIGHT_ONLY_INT8_NOTES = ("int8 per-channel weights dequantized to float in the graph (DEQUANTIZE), float32 compute: "
                          "the runtime profile predates per-channel hybrid FULLY_CONNECTED")
# `--min-runtime litert`: the TFLite inside LiteRT 2.3.0, the release of the verified ai-edge-litert wheel and of the
# LiteRT Android library the Android build pins (mobile_app/PACKAGING.md): per-channel hybrid int8 and int8-static.
LITERT_RELEASE = "2.3.0"
LITERT_MIN_RUNTIME = litert_tflite_version(LITERT_RELEASE)
# The default profile: TFLite 2.8, the oldest interpreter of the verify matrix (python-for-android's tflite-runtime
# recipe), so the files the app ships load and pass parity on every interpreter the kit verifies, LiteRT included.
DEFAULT_MIN_RUNTIME = "2.8.0"

# An op scope is its output tensor names joined with ";" (trailing too); litert-torch names a signature output
# tensor `<signature>_<output name>_output`, e.g. `seq_128_start_logits_output;`.
FLOAT_OUTPUTS_REGEX = r"logits_output;"


def check_precisions(precisions: Iterable[str]) -> list[str]:
    """The requested precisions in canonical order; an unknown one is a UserError."""
    wanted = list(dict.fromkeys(precisions))
    unknown = [p for p in wanted if p not in TFLITE_PRECISIONS]
    if unknown or not wanted:
        raise UserError(f"unknown TFLite precision {', '.join(unknown) or '(none given)'}; choose from {' '.join(TFLITE_PRECISIONS)}")
    return [p for p in TFLITE_PRECISIONS if p in wanted]


def parse_min_runtime(value: str | None) -> str:
    """A `--min-runtime` value ('2.8', '2.14.0', or 'litert' for LiteRT 2.3.0; default 2.8) as a full TFLite version."""
    if value is None or str(value).strip().lower() == "default":
        return DEFAULT_MIN_RUNTIME
    if str(value).strip().lower() == "litert":
        return LITERT_MIN_RUNTIME
    text = str(value).strip()
    parts = text.split(".")
    if not (2 <= len(parts) <= 3 and all(p.isdigit() for p in parts)):
        raise UserError(f"--min-runtime {text!r} is not a TFLite version; give one like 2.8, 2.14 or 2.18.0, or 'litert' (LiteRT {LITERT_RELEASE})")
    version = normalize(text)
    if version_key(version)[0] != 2 or version_key(version) > version_key(LITERT_MIN_RUNTIME):
        raise UserError(f"--min-runtime {text!r} is not a TFLite release this kit can target: give 2.0 up to {LITERT_MIN_RUNTIME} "
                        f"(the TFLite of LiteRT {LITERT_RELEASE}), or 'litert'")
    return version


def parse_profiles(values) -> list[str]:
    """`--min-runtime` values (one or several; default contract.DEFAULT_TFLITE_PROFILES) as full TFLite versions,
    oldest first, each once: the profiles an export makes files for."""
    if values is None or isinstance(values, str):
        values = DEFAULT_TFLITE_PROFILES if values is None else [values]
    return sorted(dict.fromkeys(parse_min_runtime(v) for v in values), key=version_key)


def _has(min_runtime: str, op: str, version: int) -> bool:
    from export.tflite_compat import runtime_for

    return version_key(runtime_for(op, version)) <= version_key(min_runtime)


def _per_channel_hybrid(min_runtime: str) -> bool:
    return _has(min_runtime, "FULLY_CONNECTED", 12) and _has(min_runtime, "EMBEDDING_LOOKUP", 4)


def profile_gap(precision: str, min_runtime: str) -> str | None:
    """Why `precision` cannot be made for a profile (checked before quantizing), or None."""
    from export.tflite_compat import runtime_for

    if precision == "int8-static" and not _has(min_runtime, "RSQRT", 3):
        return f"its int16 activations need RSQRT v3 (TFLite >= {runtime_for('RSQRT', 3)})"
    return None


def precision_notes(precision: str, min_runtime: str = DEFAULT_MIN_RUNTIME) -> str:
    if precision == "int8-dynamic" and not _per_channel_hybrid(min_runtime):
        return WEIGHT_ONLY_INT8_NOTES
    if precision == "int8-words4" and not _per_channel_hybrid(min_runtime):
        return WEIGHT_ONLY_INT8_NOTES + "; the word table on its 4-bit grid, two codes per byte, unpacked per looked-up row"
    return PRECISION_NOTES[precision]


def _recipe(precision: str, min_runtime: str = DEFAULT_MIN_RUNTIME, keep_float: tuple[str, ...] = ()):
    """ai-edge-quantizer's recipe for `precision` under the `min_runtime` profile; ops whose scope matches a regex of
    `keep_float` stay as they are (int8-words4: the packed word lookup and its float row scales)."""
    from ai_edge_quantizer import recipe, recipe_manager
    from ai_edge_quantizer.qtyping import QuantGranularity, TFLOperationName

    if precision == "int8-words4":  # int8-dynamic's recipe around the packed lookup
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(_recipe("int8-dynamic", min_runtime))
        for scope in keep_float:
            manager.add_quantization_config(regex=scope, operation_name=TFLOperationName.ALL_SUPPORTED,
                                            algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
        return manager.get_quantization_recipe()
    if precision == "int8-dynamic":
        if _per_channel_hybrid(min_runtime):
            return recipe.dynamic_wi8_afp32()
        manager = recipe_manager.RecipeManager()
        manager.add_weight_only_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=8,
                                       granularity=QuantGranularity.CHANNELWISE)
        return manager.get_quantization_recipe()
    if precision == "int8-static":
        manager = recipe_manager.RecipeManager()
        manager.add_static_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, activation_num_bits=16, weight_num_bits=8)
        # The static recipe leaves the embedding table (most of a small BERT's bytes) in float32; store it as int8
        # (per channel where the profile has EMBEDDING_LOOKUP v4).
        granularity = QuantGranularity.CHANNELWISE if _has(min_runtime, "EMBEDDING_LOOKUP", 4) else QuantGranularity.TENSORWISE
        manager.add_dynamic_config(regex=".*", operation_name=TFLOperationName.EMBEDDING_LOOKUP, num_bits=8, granularity=granularity)
        # Keep the ops producing the signature outputs in float, so every precision returns float32 logits.
        manager.add_quantization_config(regex=FLOAT_OUTPUTS_REGEX, operation_name=TFLOperationName.ALL_SUPPORTED,
                                        algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
        return manager.get_quantization_recipe()
    if precision == "fp16":
        manager = recipe_manager.RecipeManager()
        manager.add_weight_only_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, num_bits=16,
                                       algorithm_key=recipe.AlgorithmName.FLOAT_CASTING)
        return manager.get_quantization_recipe()
    raise ValueError(f"no quantization recipe for {precision!r}")


def quantize_tflite(float_model: bytes, precision: str,
                    calibration: Mapping[str, list[dict[str, np.ndarray]]] | None = None,
                    min_runtime: str = DEFAULT_MIN_RUNTIME, keep_float: tuple[str, ...] = (),
                    metadata: dict[str, bytes] | None = None) -> bytes:
    """The model bytes at `precision` for the `min_runtime` profile, weights inline and op versions stamped
    (export/tflite_compat.py); `calibration` ({signature key: [input dicts]}) is needed for int8-static; ops in the
    scopes of `keep_float` (regexes) are not quantized; `metadata` entries are written into the file."""
    from export.tflite_compat import inline_and_stamp

    if precision == "fp32":
        return inline_and_stamp(bytes(float_model), metadata)
    from ai_edge_quantizer import Quantizer

    quantizer = Quantizer(bytes(float_model), _recipe(precision, min_runtime, keep_float))
    calibration_result = None
    if quantizer.need_calibration:
        if not calibration:
            raise UserError(f"{precision} needs calibration examples; pass --data-dir with the task's train split")
        calibration_result = quantizer.calibrate(dict(calibration), num_threads=2)
    result = quantizer.quantize(calibration_result, enable_progress_report=False)
    # ai-edge-quantizer writes weights of files over 256 KiB after the flatbuffer (Buffer.offset), which TFLite
    # before 2.14 cannot read, and keeps the float model's op versions; store both the way every runtime reads.
    return inline_and_stamp(bytes(result.quantized_model), metadata)
