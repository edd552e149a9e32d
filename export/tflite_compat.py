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


class _Op:
    """One operator as op_version.cc's rules see it: its tensors (types of inputs 0 and 1 and output 0) and options."""

    def __init__(self, ins: list[_Tensor], outs: list[_Tensor], op, schema):
        self.ins, self.outs, self._op, self._schema = ins, outs, op, schema
        self.t0 = ins[0].type if ins else "NOTYPE"
        self.t1 = ins[1].type if len(ins) > 1 else "NOTYPE"
        self.o0 = outs[0].type if outs else "NOTYPE"
        self.types = (self.t0, self.t1, self.o0)
        self.dims = ins[0].dims if ins else 0

    def option(self, table: str, field: str, default):
        """A field of the operator's builtin options table, or `default` when the operator has none."""
        found = self._op.BuiltinOptions()
        if found is None:
            return default
        options = getattr(self._schema, table)()
        options.Init(found.Bytes, found.Pos)
        return getattr(options, field)()


def _by_input_type(versions: dict[str, int]) -> list:
    """Rules that pick the version from input 0's type alone (else version 1)."""
    return [(version, lambda o, t=t: o.t0 == t) for t, version in versions.items()] + [(1, lambda o: True)]


_HYBRID = ("FLOAT32", "INT8", "FLOAT32")
# op -> [(version, rule)]: the first rule that holds gives the operator's version, in op_version.cc's order
# (GetBuiltinOperatorVersion), for the ops our BERT graphs use.
_VERSION_RULES = {
    "FULLY_CONNECTED": [
        (13, lambda o: o.types == ("INT16", "INT4", "INT16")),
        (12, lambda o: o.types == _HYBRID and o.ins[1].per_channel),
        (11, lambda o: o.types == ("INT16", "INT8", "INT16") and o.option("FullyConnectedOptions", "QuantizedBiasType", 0)),
        (7, lambda o: o.types == ("INT16", "INT16", "INT16")),
        (6, lambda o: len(o.ins) == 2),
        (5, lambda o: o.option("FullyConnectedOptions", "KeepNumDims", False)),
        (4, lambda o: o.types == ("INT8", "INT8", "INT8")),
        (10, lambda o: o.types == ("INT8", "INT4", "INT8")),
        (9, lambda o: o.types == _HYBRID and o.option("FullyConnectedOptions", "AsymmetricQuantizeInputs", False)),
        (3, lambda o: o.types == _HYBRID),
        (2, lambda o: o.option("FullyConnectedOptions", "WeightsFormat", 0) != 0),
        (1, lambda o: True)],
    "EMBEDDING_LOOKUP": [(4, lambda o: o.t1 == "INT4" or (len(o.ins) > 1 and o.ins[1].per_channel)), (1, lambda o: True)],
    "DEQUANTIZE": [
        (6, lambda o: o.t0 == "INT4"),
        (3, lambda o: o.t0 in ("INT16", "FLOAT16")),
        (5, lambda o: o.t0 == "INT8" and o.ins[0].per_channel),
        (2, lambda o: o.t0 == "INT8"),
        (1, lambda o: True)],
    "QUANTIZE": [
        (4, lambda o: "INT4" in (o.t0, o.o0)),
        (3, lambda o: bool(o.outs) and o.outs[0].per_channel),
        (2, lambda o: o.o0 == "INT16"),
        (1, lambda o: True)],
    "ADD": [
        (5, lambda o: o.t0 == "INT16" and not o.ins[0].quantized),
        (4, lambda o: o.t0 == "INT64"),
        (3, lambda o: (o.t0, o.o0) == ("INT16", "INT16") and not o.option("AddOptions", "PotScaleInt16", True)),
        (2, lambda o: o.t0 == "INT8"),
        (1, lambda o: True)],
    "SUB": [
        (5, lambda o: (o.t0, o.o0) == ("INT16", "INT16") and not o.option("SubOptions", "PotScaleInt16", True)),
        (4, lambda o: o.t0 == "INT64"),
        (3, lambda o: len(o.ins) > 1 and o.ins[0].dims != o.ins[1].dims and max(i.dims for i in o.ins) > 4),
        (2, lambda o: o.t0 == "INT8"),
        (1, lambda o: True)],
    "MUL": [
        (7, lambda o: (o.t0 == "INT16" and not o.ins[0].quantized) or o.t0 == "UINT32"),
        (6, lambda o: o.t0 == "COMPLEX64"),
        (5, lambda o: o.t0 == "INT64"),
        (4, lambda o: o.t0 == "INT16"),
        (3, lambda o: len(o.ins) > 1 and bool(o.outs) and bool(o.ins[0].scale and o.ins[1].scale and o.outs[0].scale)
         and o.ins[0].scale * o.ins[1].scale / o.outs[0].scale >= 1.0),
        (2, lambda o: o.t0 == "INT8"),
        (1, lambda o: True)],
    "BATCH_MATMUL": [
        (3, lambda o: o.t0 == "INT16"),
        (2, lambda o: o.t0 == "INT8"),
        (4, lambda o: o.types == _HYBRID and o.option("BatchMatMulOptions", "AsymmetricQuantizeInputs", False)),
        (1, lambda o: True)],
    "SOFTMAX": _by_input_type({"INT16": 3, "INT8": 2}),
    "MEAN": _by_input_type({"INT16": 3, "INT8": 2}),
    "RSQRT": _by_input_type({"INT16": 3, "INT8": 2}),
    "TANH": [(3, lambda o: (o.t0, o.o0) == ("INT16", "INT16")), (2, lambda o: o.t0 == "INT8"), (1, lambda o: True)],
    "TRANSPOSE": [
        (7, lambda o: o.t0 == "INT4"),
        (6, lambda o: o.dims > 5),
        (5, lambda o: o.t0 == "INT16"),
        (4, lambda o: o.dims > 4),
        (3, lambda o: o.t0 == "BOOL"),
        (2, lambda o: o.t0 == "INT8"),
        (1, lambda o: True)],
    "SLICE": [
        (6, lambda o: o.t0 == "UINT32"),
        (5, lambda o: o.dims > 4),
        (4, lambda o: o.t0 == "INT16"),
        (3, lambda o: o.t0 == "STRING"),
        (2, lambda o: o.t0 == "INT8"),
        (1, lambda o: True)],
    "SQUARED_DIFFERENCE": _by_input_type({"INT8": 2}),
    "CAST": [
        (7, lambda o: "BFLOAT16" in (o.t0, o.o0)),
        (6, lambda o: (o.t0, o.o0) == ("INT4", "FLOAT32")),
        (5, lambda o: bool({"FLOAT64", "FLOAT16"} & {o.t0, o.o0})),
        (4, lambda o: "UINT16" in (o.t0, o.o0)),
        (3, lambda o: "INT8" in (o.t0, o.o0)),
        (2, lambda o: "UINT32" in (o.t0, o.o0)),
        (1, lambda o: True)],
    "GELU": [(2, lambda o: o.t0 in ("INT8", "UINT8")), (1, lambda o: True)],
    "CONCATENATION": _by_input_type({"UINT32": 4, "INT16": 3, "INT8": 2}),
    "RESHAPE": [(1, lambda o: True)],
}


def _version(name: str, ins: list[_Tensor], outs: list[_Tensor], op, schema) -> int | None:
    """GetBuiltinOperatorVersion for one operator; None for an op without rules here (the file's version is kept)."""
    rules = _VERSION_RULES.get(name)
    if rules is None:
        return None
    seen = _Op(ins, outs, op, schema)
    return next(version for version, holds in rules if holds(seen))


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


def inline_and_stamp(data: bytes, metadata: dict[str, bytes] | None = None) -> bytes:
    """The same model with every weight buffer inside the flatbuffer and each op code at its derived version, plus
    `metadata` entries (name -> bytes; e.g. the student's sha256, mobile_app/runtime/artifact_student.py).

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
    for name, value in (metadata or {}).items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(value, dtype=np.uint8)
        obj.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(obj.buffers) - 1
        obj.metadata = [m for m in (obj.metadata or []) if m.name not in (name, name.encode())] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))
