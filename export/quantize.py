"""Post-training quantization of a float .tflite with ai-edge-quantizer: one recipe per bundle precision.

The float model is converted once; every other precision is derived from its bytes, so all variants hold the
same graph and signatures. Static int8 needs calibration inputs per signature (see export/model_inputs.py).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from distill.errors import UserError

TFLITE_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")
# What each precision stores and computes, recorded in the manifest entry.
PRECISION_NOTES = {
    "fp32": "float32 weights and activations",
    "fp16": "float16 weights (dequantized on load), float32 compute",
    "int8-dynamic": "int8 per-channel weights, float activations quantized on the fly",
    "int8-static": "int8 weights and embedding table, int16 activations calibrated on train examples, float fallback where unsupported",
}

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


def _recipe(precision: str):
    from ai_edge_quantizer import recipe, recipe_manager
    from ai_edge_quantizer.qtyping import TFLOperationName

    if precision == "int8-dynamic":
        return recipe.dynamic_wi8_afp32()
    if precision == "int8-static":
        manager = recipe_manager.RecipeManager()
        manager.add_static_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, activation_num_bits=16, weight_num_bits=8)
        # The static recipe leaves the embedding table (most of a small BERT's bytes) in float32; store it as int8.
        manager.add_dynamic_config(regex=".*", operation_name=TFLOperationName.EMBEDDING_LOOKUP, num_bits=8)
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
                    calibration: Mapping[str, list[dict[str, np.ndarray]]] | None = None) -> bytes:
    """The model bytes at `precision`; `calibration` ({signature key: [input dicts]}) is needed for int8-static."""
    if precision == "fp32":
        return bytes(float_model)
    from ai_edge_quantizer import Quantizer

    quantizer = Quantizer(bytes(float_model), _recipe(precision))
    calibration_result = None
    if quantizer.need_calibration:
        if not calibration:
            raise UserError(f"{precision} needs calibration examples; pass --data-dir with the task's train split")
        calibration_result = quantizer.calibrate(dict(calibration), num_threads=2)
    result = quantizer.quantize(calibration_result, enable_progress_report=False)
    return bytes(result.quantized_model)
