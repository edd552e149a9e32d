"""What a .tflite file asks of the interpreter that runs it: its ops at the versions their tensors call for,
where its weights live, and the oldest TensorFlow Lite runtime that has all of that.

The file is read with the flatbuffer schema module that ships in ai-edge-litert
(`ai_edge_litert.schema_py_generated`, generated from TFLite's schema.fbs). The op versions stored in the file
are not trusted: ai-edge-quantizer keeps the float model's op codes, so a per-channel hybrid FULLY_CONNECTED
still says version 5. An old interpreter then picks its version-5 kernel, which reads one scale where there is
one per channel, and answers garbage instead of refusing. So each operator's version is derived again from its
tensors, with the rules of TFLite's tools/versioning/op_version.cc (GetBuiltinOperatorVersion) for the ops our
BERT graphs use, and mapped to a runtime with the table of tools/versioning/runtime_version.cc
(FindMinimumRuntimeVersionForOp). Both were read at google-ai-edge/LiteRT, tflite/tools/versioning/
(op_version.cc @ b6485cf9, runtime_version.cc @ 05215c29). `inline_and_stamp` writes the derived versions
into the file, as TFLite's own converter does (UpdateOpVersion), so an interpreter that lacks a kernel refuses
the file by name instead of running the wrong one.

Only export code imports this module (it needs ai-edge-litert); the phone reads what it recorded in bundle.json.
"""
from __future__ import annotations

import numpy as np

from mobile_app.runtime.errors import UserError
from mobile_app.runtime.runtime_versions import version_key

# ---- runtime_version.cc: (op, version) -> oldest TFLite runtime, for the ops our exported graphs contain ----
_RUNTIME_TABLE = {
    "ADD": {1: "1.5.0", 2: "1.14.0", 3: "2.4.0", 4: "2.6.0", 5: "2.13.0"},
    "SUB": {1: "1.6.0", 2: "1.14.0", 3: "2.3.0", 4: "2.4.0", 5: "2.4.0"},
    "MUL": {1: "1.5.0", 2: "1.14.0", 3: "1.15.0", 4: "2.3.0", 5: "2.6.0", 6: "2.11.0", 7: "2.13.0"},
    "BATCH_MATMUL": {1: "2.3.0", 2: "2.3.0", 3: "2.4.0", 4: "2.5.0"},
    "CONCATENATION": {1: "1.5.0", 2: "1.14.0", 3: "2.3.0"},
    "CAST": {1: "1.5.0", 2: "2.7.0", 3: "2.8.0", 4: "2.9.0", 5: "2.12.0", 6: "2.15.0", 7: "2.17.0"},
    "DEQUANTIZE": {1: "1.13.1", 2: "1.14.0", 3: "1.15.0", 4: "2.2.0", 5: "2.7.0", 6: "2.18.0"},
    "QUANTIZE": {1: "1.14.0", 2: "1.15.0", 3: "2.7.0"},
    "EMBEDDING_LOOKUP": {1: "1.13.0", 2: "1.14.0", 3: "1.14.0", 4: "2.18.0"},
    "FLOOR": {1: "1.9.0"},
    "FULLY_CONNECTED": {1: "1.5.0", 2: "1.10.0", 3: "1.14.0", 4: "1.14.0", 5: "2.0.0", 6: "2.1.0", 7: "2.3.0",
                        8: "2.3.0", 9: "2.3.0", 10: "2.11.0", 11: "2.15.0", 12: "2.17.0", 13: "2.18.0"},
    # runtime_version.cc says 2.9.0, but GELU (builtin 150) is in TFLite 2.8's schema and tensorflow-cpu 2.8.4's
    # interpreter runs our fp32 GELU graphs (tests/test_tflite_compat.py); 2.8 patch releases add no ops.
    "GELU": {1: "2.8.0", 2: "2.9.0"},
    "MEAN": {1: "1.6.0", 2: "1.14.0", 3: "2.4.0"},
    "RESHAPE": {1: "1.5.0"},
    "RSQRT": {1: "1.10.0", 2: "2.5.0", 3: "2.15.0"},
    "SLICE": {1: "1.14.0", 2: "1.14.0", 3: "1.14.0", 4: "2.4.0", 5: "2.5.0", 6: "2.14.0"},
    "SOFTMAX": {1: "1.5.0", 2: "1.14.0", 3: "2.3.0"},
    "SQUARED_DIFFERENCE": {1: "1.13.1", 2: "2.5.0"},
    "TANH": {1: "1.14.0", 2: "1.14.0", 3: "2.3.0"},
    "TRANSPOSE": {1: "1.6.0", 2: "1.14.0", 3: "1.15.0", 4: "2.3.0", 5: "2.4.0", 6: "2.12.0", 7: "2.14.4"},
}
# Buffer.offset/size (weights appended after the flatbuffer, as ai-edge-quantizer writes files over 256 KiB):
# tflite-runtime 2.13.0 and TFLite 2.8 fail with "Input tensor N lacks data", tflite-runtime 2.14.0 loads them
# (measured here; runtime_version.cc has no entry for file layouts).
EXTERNAL_BUFFERS_RUNTIME = "2.14.0"
SOURCE = ("runtime_version.cc / op_version.cc of google-ai-edge/LiteRT tflite/tools/versioning "
          "(05215c29 / b6485cf9), GELU and external buffers as measured")


def runtime_for(op: str, version: int) -> str:
    """The oldest TFLite runtime with `op` at `version` (runtime_version.cc)."""
    return _RUNTIME_TABLE[op][version]


class _Tensor:
    """The parts of a tensor that op_version.cc looks at."""

    def __init__(self, tensor, names):
        self.type = names[tensor.Type()] if tensor is not None else "NOTYPE"
        quant = tensor.Quantization() if tensor is not None else None
        scales = quant.ScaleLength() if quant is not None else 0
        self.quantized = scales > 0
        self.per_channel = scales > 1
        self.scale = quant.Scale(0) if scales == 1 else 0.0
        self.dims = tensor.ShapeLength() if tensor is not None else 0


def _options(op, schema, cls):
    table = op.BuiltinOptions()
    if table is None:
        return None
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return options


def _version(name: str, ins: list[_Tensor], outs: list[_Tensor], op, schema) -> int | None:
    """GetBuiltinOperatorVersion for one operator; None for an op without a rule here (the file's version is kept)."""
    t0 = ins[0].type if ins else "NOTYPE"
    t1 = ins[1].type if len(ins) > 1 else "NOTYPE"
    o0 = outs[0].type if outs else "NOTYPE"
    if name == "FULLY_CONNECTED":
        fc = _options(op, schema, schema.FullyConnectedOptions)
        if (t0, t1, o0) == ("INT16", "INT4", "INT16"):
            return 13
        if (t0, t1, o0) == ("FLOAT32", "INT8", "FLOAT32") and ins[1].per_channel:
            return 12
        if (t0, t1, o0) == ("INT16", "INT8", "INT16") and fc is not None and fc.QuantizedBiasType():
            return 11
        if (t0, t1, o0) == ("INT16", "INT16", "INT16"):
            return 7
        if len(ins) == 2:
            return 6
        if fc is not None and fc.KeepNumDims():
            return 5
        if (t0, t1, o0) == ("INT8", "INT8", "INT8"):
            return 4
        if (t0, t1, o0) == ("INT8", "INT4", "INT8"):
            return 10
        if (t0, t1, o0) == ("FLOAT32", "INT8", "FLOAT32"):
            return 9 if fc is not None and fc.AsymmetricQuantizeInputs() else 3
        return 2 if fc is not None and fc.WeightsFormat() != 0 else 1
    if name == "EMBEDDING_LOOKUP":
        return 4 if t1 == "INT4" or (len(ins) > 1 and ins[1].per_channel) else 1
    if name == "DEQUANTIZE":
        if t0 == "INT4":
            return 6
        if t0 in ("INT16", "FLOAT16"):
            return 3
        if t0 == "INT8":
            return 5 if ins[0].per_channel else 2
        return 1
    if name == "QUANTIZE":
        if "INT4" in (t0, o0):
            return 4
        if outs and outs[0].per_channel:
            return 3
        return 2 if o0 == "INT16" else 1
    if name == "ADD":
        if t0 == "INT16" and not ins[0].quantized:
            return 5
        if t0 == "INT64":
            return 4
        if t0 == "INT16" and o0 == "INT16":
            add = _options(op, schema, schema.AddOptions)
            if add is not None and not add.PotScaleInt16():
                return 3
        return 2 if t0 == "INT8" else 1
    if name == "SUB":
        if t0 == "INT16" and o0 == "INT16":
            sub = _options(op, schema, schema.SubOptions)
            if sub is not None and not sub.PotScaleInt16():
                return 5
        if t0 == "INT64":
            return 4
        if len(ins) > 1 and ins[0].dims != ins[1].dims and max(i.dims for i in ins) > 4:
            return 3
        return 2 if t0 == "INT8" else 1
    if name == "MUL":
        if (t0 == "INT16" and not ins[0].quantized) or t0 == "UINT32":
            return 7
        if t0 == "COMPLEX64":
            return 6
        if t0 == "INT64":
            return 5
        if t0 == "INT16":
            return 4
        if len(ins) > 1 and outs and ins[0].scale and ins[1].scale and outs[0].scale and \
                ins[0].scale * ins[1].scale / outs[0].scale >= 1.0:
            return 3
        return 2 if t0 == "INT8" else 1
    if name == "BATCH_MATMUL":
        if t0 == "INT16":
            return 3
        if t0 == "INT8":
            return 2
        if (t0, t1, o0) == ("FLOAT32", "INT8", "FLOAT32"):
            bmm = _options(op, schema, schema.BatchMatMulOptions)
            if bmm is not None and bmm.AsymmetricQuantizeInputs():
                return 4
        return 1
    if name in ("SOFTMAX", "MEAN", "RSQRT"):
        return 3 if t0 == "INT16" else 2 if t0 == "INT8" else 1
    if name == "TANH":
        return 3 if (t0, o0) == ("INT16", "INT16") else 2 if t0 == "INT8" else 1
    if name == "TRANSPOSE":
        dims = ins[0].dims
        return (7 if t0 == "INT4" else 6 if dims > 5 else 5 if t0 == "INT16" else 4 if dims > 4 else
                3 if t0 == "BOOL" else 2 if t0 == "INT8" else 1)
    if name == "SLICE":
        dims = ins[0].dims
        return (6 if t0 == "UINT32" else 5 if dims > 4 else 4 if t0 == "INT16" else 3 if t0 == "STRING" else
                2 if t0 == "INT8" else 1)
    if name == "SQUARED_DIFFERENCE":
        return 2 if t0 == "INT8" else 1
    if name == "CAST":
        types = (t0, o0)
        if "BFLOAT16" in types:
            return 7
        if types == ("INT4", "FLOAT32"):
            return 6
        if {"FLOAT64", "FLOAT16"} & set(types):
            return 5
        if "UINT16" in types:
            return 4
        if "INT8" in types:
            return 3
        return 2 if "UINT32" in types else 1
    if name == "GELU":
        return 2 if t0 in ("INT8", "UINT8") else 1
    if name == "CONCATENATION":
        return 4 if t0 == "UINT32" else 3 if t0 == "INT16" else 2 if t0 == "INT8" else 1
    if name == "RESHAPE":
        return 1
    return None


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _read(data: bytes):
    schema = _schema()
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise UserError("not a TFLite flatbuffer (no TFL3 identifier)")
    return schema, schema.Model.GetRootAs(data, 0)


def _op_names(schema) -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _walk_ops(schema, model):
    """(opcode index, op name, derived version or None) for every operator of every subgraph."""
    op_names = _op_names(schema)
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for j in range(graph.OperatorsLength()):
            op = graph.Operators(j)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
            ins = [_Tensor(graph.Tensors(i) if i >= 0 else None, type_names) for i in op.InputsAsNumpy()] \
                if op.InputsLength() else []
            outs = [_Tensor(graph.Tensors(i), type_names) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
            yield op.OpcodeIndex(), name, _version(name, ins, outs, op, schema)


def inspect_tflite(data: bytes) -> dict:
    """What the file needs: {"ops": {op: {"version", "runtime"}}, "buffers": {...}, "min_runtime", "min_runtime_for"}.

    Raises UserError for an op or op version the table above does not cover (add it from runtime_version.cc)."""
    schema, model = _read(data)
    ops: dict[str, int] = {}
    for index, name, derived in _walk_ops(schema, model):
        stored = model.OperatorCodes(index).Version()
        version = max(stored, derived or 0)
        ops[name] = max(ops.get(name, 0), version)
    needs = {}
    for name, version in sorted(ops.items()):
        runtime = _RUNTIME_TABLE.get(name, {}).get(version)
        if runtime is None:
            raise UserError(f"{name} version {version} is not in export/tflite_compat.py's runtime table; "
                            f"add it from TFLite's runtime_version.cc before shipping this file")
        needs[name] = {"version": version, "runtime": runtime}
    external = sum(1 for b in range(model.BuffersLength()) if model.Buffers(b).Offset() > 1)
    buffers = {"count": model.BuffersLength(), "external": external}
    reasons = [(info["runtime"], f"{name} v{info['version']}") for name, info in needs.items()]
    if external:
        buffers["runtime"] = EXTERNAL_BUFFERS_RUNTIME
        reasons.append((EXTERNAL_BUFFERS_RUNTIME, f"{external} weight buffers outside the flatbuffer"))
    runtime, because = max(reasons, key=lambda r: version_key(r[0]))
    return {"min_runtime": runtime, "min_runtime_for": because, "ops": needs, "buffers": buffers, "source": SOURCE}


def inline_and_stamp(data: bytes) -> bytes:
    """The same model with every weight buffer inside the flatbuffer and each op code at its derived version.

    Uses ai-edge-litert's flatbuffer_utils (it resolves Buffer.offset on read and packs data inline on write)."""
    from ai_edge_litert.tools import flatbuffer_utils

    schema, model = _read(data)
    derived: dict[int, int] = {}
    for index, _name, version in _walk_ops(schema, model):
        if version is not None:
            derived[index] = max(derived.get(index, 0), version)
    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    for buffer in obj.buffers:
        # a buffer read from after the flatbuffer comes back as a bytearray slice, which the schema's Pack writes a
        # byte per Python call (most of a file's export time); as a numpy vector it is written in one copy
        if buffer.data is not None and not isinstance(buffer.data, np.ndarray):
            buffer.data = np.frombuffer(bytes(buffer.data), dtype=np.uint8)
    for index, version in derived.items():
        code = obj.operatorCodes[index]
        code.version = max(code.version, version)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))
