"""Run a saved .mlpackage without Apple hardware: execute its MIL program op by op in numpy.

`MLModel.predict` exists only on macOS. On Linux the saved ML Program is read back into a MIL Program
(coremltools' milproto loader) and evaluated in program order:
- constants and compressed weights (constexpr_affine_dequantize / constexpr_lut_to_dense /
  constexpr_blockwise_shift_scale, ...) are materialised once by coremltools' own code and cached;
- the hot ops (linear, matmul, softmax, layer_norm, ...) run as float32 BLAS kernels here; every other
  op runs through coremltools' own `value_inference`; an op with neither is refused by name at load time;
- an op whose declared output type is fp16 has its result rounded to fp16, so fp16 programs keep their
  fp16 value grid (overflow included); casts convert to their declared dtype;
- examples of one bucket are batched through the program: it was traced at batch 1, so a reshape whose
  target starts with 1 keeps the batch dimension instead (checked against unbatched runs in the tests).
A NaN/inf in an output is an error naming the op that first produced one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mobile_app.runtime.backends import Backend
from mobile_app.runtime.contract import COREML_LABEL_OUTPUT, COREML_PROBABILITIES_OUTPUT, PROBABILITIES_OUTPUT
from mobile_app.runtime.contract import INPUT_NAMES, PER_TOKEN_OUTPUTS
from mobile_app.runtime.bundle import BundleError

CLASSIFY = "classify"
# examples of one bucket run together up to this many tokens: a batch's (batch, heads, seq, seq) scores must stay
# small enough for the cache (64 QA windows of 384 tokens ran 4x slower than one at a time)
BATCH_TOKENS = 512
_CONST_OPS = ("const",)
_BATCH_AWARE = ("reshape",)  # always the kernel here: it carries the batch dimension through batch-1 shape constants


def _np_dtype(mil_dtype):
    from coremltools.converters.mil.mil import types

    return np.dtype(types.nptype_from_builtin(mil_dtype))


def _is_fp16(var) -> bool:
    from coremltools.converters.mil.mil import types

    return var.dtype == types.fp16


def round_to_fp16(value) -> np.ndarray:
    """float32 holding the nearest fp16 values (round to nearest even; overflow to inf).

    Through torch's vectorised conversion: numpy's float16 cast was half of a QA evaluation's time (RESULTS.md,
    "Core ML evaluator on Linux"); both give the same bits."""
    import torch

    array = np.ascontiguousarray(value, dtype=np.float32)
    return torch.from_numpy(array).to(torch.float16).to(torch.float32).numpy()


def storage_converter(var):
    """How a value of `var` is kept: fp16 as fp16-rounded float32, other tensors in their own dtype, the rest as is."""
    from coremltools.converters.mil.mil import types

    if not (types.is_tensor(var.sym_type) or types.is_scalar(var.sym_type)) or var.dtype == types.str:
        return lambda value: value
    if var.dtype == types.fp16:
        return round_to_fp16
    dtype = _np_dtype(var.dtype)
    return lambda value: np.asarray(value, dtype=dtype)


def to_storage(value, var):
    return storage_converter(var)(value)


def _declared(value, var):
    """A stored value in the dtype the program declares (fp16 back to float16), for coremltools' own code."""
    if isinstance(value, np.ndarray) and _is_fp16(var):
        return value.astype(np.float16)
    return value


class _Bound:
    """A Var with a runtime value, as coremltools' value_inference reads its inputs (`.val`, `.sym_val`)."""

    def __init__(self, var, value):
        self._var, self.val, self.sym_val = var, value, value

    @property
    def shape(self):
        return np.shape(self.val)

    @property
    def rank(self):
        return np.ndim(self.val)

    def __getattr__(self, name):
        return getattr(self._var, name)


class _BoundOp:
    """An op whose inputs are runtime values, so its own `value_inference` computes on them."""

    def __init__(self, op, values: dict):
        self._op = op
        self._input_vars = {}
        for name, var in op._input_vars.items():
            if var is None:
                self._input_vars[name] = None
            elif isinstance(var, (list, tuple)):
                self._input_vars[name] = tuple(_Bound(v, _declared(values[id(v)], v)) for v in var)
            else:
                self._input_vars[name] = _Bound(var, _declared(values[id(var)], var))

    def __getattr__(self, name):
        if name in self._input_vars:
            return self._input_vars[name]
        return getattr(self._op, name)


def _has_value_inference(op) -> bool:
    from coremltools.converters.mil.mil import Operation

    return type(op).value_inference is not Operation.value_inference


def _reference(op, values: dict):
    """coremltools' own value_inference of `op` on runtime values."""
    result = type(op).value_inference(_BoundOp(op, values))
    return list(result) if len(op.outputs) > 1 else [result]


# --- float32 kernels of the hot ops; each computes what coremltools' value_inference computes ----------------


def _broadcast_binary(fn):
    return lambda op, v, batch: [fn(v[id(op.x)], v[id(op.y)])]


def _erf(x):
    import torch

    return torch.special.erf(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def _linear(op, v, batch):
    x, weight_t = v[id(op.x)], v.get((id(op.weight), "T"))
    if weight_t is None:
        weight_t = v[id(op.weight)].T
    # One 2-D GEMM over all batch and sequence rows (a stacked matmul would call BLAS once per example).
    out = np.matmul(x.reshape(-1, x.shape[-1]), weight_t).reshape(*x.shape[:-1], weight_t.shape[-1])
    if op.bias is not None:
        out += v[id(op.bias)]
    return [out]


def _matmul(op, v, batch):
    x, y = v[id(op.x)], v[id(op.y)]
    if op.transpose_x.val:
        x = np.swapaxes(x, -1, -2)
    if op.transpose_y.val:
        y = np.swapaxes(y, -1, -2)
    return [np.matmul(x, y)]


def _softmax(op, v, batch):
    x, axis = v[id(op.x)], int(op.axis.val)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return [e / np.sum(e, axis=axis, keepdims=True)]


def _layer_norm(op, v, batch):
    x = v[id(op.x)]
    axes = tuple(range(x.ndim)) if op.axes is None else tuple(int(a) % x.ndim for a in op.axes.val)
    centred = x - np.mean(x, axis=axes, keepdims=True)
    out = centred / np.sqrt(np.mean(np.square(centred), axis=axes, keepdims=True) + np.float32(op.epsilon.val))
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    if op.gamma is not None:
        out = out * v[id(op.gamma)].reshape(shape)
    if op.beta is not None:
        out = out + v[id(op.beta)].reshape(shape)
    return [out]


def _gelu(op, v, batch):
    x, mode = v[id(op.x)], op.mode.val
    if mode == "TANH_APPROXIMATION":
        return [0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))]
    if mode == "SIGMOID_APPROXIMATION":
        return [x / (1 + np.exp(-1.702 * x))]
    return [0.5 * x * (1 + _erf(x / np.float32(np.sqrt(2))))]


def _reshape(op, v, batch):
    x, shape = v[id(op.x)], [int(s) for s in v[id(op.shape)]]
    # Traced at batch 1: a leading 1 that stood for the batch keeps the evaluator's batch.
    if batch > 1 and shape and shape[0] == 1 and x.ndim and x.shape[0] == batch:
        shape[0] = batch
    return [np.reshape(x, shape)]


def _transpose(op, v, batch):
    return [np.transpose(v[id(op.x)], [int(p) for p in op.perm.val])]


def _gather(op, v, batch):
    if op.batch_dims.val != 0:
        return _reference(op, v)
    indices = v[id(op.indices)].astype(np.int64)
    axis = int(op.axis.val)
    data = v[id(op.x)]
    # Negative indices count from the end, as coremltools' reference does; out-of-range is an error.
    return [np.take(data, np.where(indices < 0, indices + data.shape[axis], indices), axis=axis)]


def _cast(op, v, batch):
    return [v[id(op.x)]]  # the conversion to the declared dtype is done for every op by to_storage


def _classify(op, v, batch):
    """Class label and class-probability vector (label order) per example; Core ML returns these as a dict."""
    probs = np.asarray(v[id(op.probabilities)], dtype=np.float32)
    classes = list(op.classes.val)
    rows = probs.reshape(-1, probs.shape[-1])
    labels = np.array([classes[i] for i in np.argmax(rows, axis=-1)], dtype=object)
    return [labels, rows]


KERNELS = {
    "add": _broadcast_binary(np.add), "sub": _broadcast_binary(np.subtract), "mul": _broadcast_binary(np.multiply),
    "real_div": _broadcast_binary(np.divide), "maximum": _broadcast_binary(np.maximum), "minimum": _broadcast_binary(np.minimum),
    "linear": _linear, "matmul": _matmul, "softmax": _softmax, "layer_norm": _layer_norm, "gelu": _gelu,
    "tanh": lambda op, v, b: [np.tanh(v[id(op.x)])], "exp": lambda op, v, b: [np.exp(v[id(op.x)])],
    "sqrt": lambda op, v, b: [np.sqrt(v[id(op.x)])], "rsqrt": lambda op, v, b: [1 / np.sqrt(v[id(op.x)] + np.float32(op.epsilon.val))],
    "reshape": _reshape, "transpose": _transpose, "gather": _gather, "cast": _cast, CLASSIFY: _classify,
}


class MilProgramEvaluator:
    """A saved ML Program, loaded for op-by-op execution; `reference=True` runs every op through coremltools' own
    value_inference (slow; used to check the kernels)."""

    def __init__(self, mlpackage_path, reference: bool = False):
        self.path = Path(mlpackage_path)
        self.reference = reference
        self.spec, self.program = _load_program(self.path)
        self.function = self.program.functions["main"]
        self.input_names = list(self.function.inputs)
        self.output_names = [var.name for var in self.function.outputs]
        self.ops = list(self.function.operations)
        self._check_ops()
        self.constants = self._materialise_constants()
        self._steps = [(op, self._compute_of(op), [(id(var), storage_converter(var)) for var in op.outputs])
                       for op in self.ops if not (op.op_type in _CONST_OPS or op.op_type.startswith("constexpr_"))]
        self.first_non_finite: str | None = None

    def _compute_of(self, op):
        """The function computing `op`: its kernel here, else (or in reference mode) coremltools' value_inference."""
        if op.op_type in KERNELS and not (self.reference and _has_value_inference(op) and op.op_type not in _BATCH_AWARE):
            return KERNELS[op.op_type]
        return lambda op, values, batch: _reference(op, values)

    def _check_ops(self) -> None:
        for op in self.ops:
            if op.op_type in _CONST_OPS or op.op_type.startswith("constexpr_"):
                continue
            if op.blocks:
                raise BundleError(f"{self.path.name}: op {op.op_type!r} ({op.name}) has nested blocks (control flow)"
                                  f", which the Core ML evaluator does not run; export without control flow")
            if op.op_type not in KERNELS and not _has_value_inference(op):
                raise BundleError(f"{self.path.name}: op {op.op_type!r} ({op.name}) "
                                  f"has no evaluator implementation (no kernel, no coremltools value_inference); "
                                  "this artifact cannot be verified on Linux - verify it on macOS or add the op to export/verify/coreml_eval.py")

    def _materialise_constants(self) -> dict:
        """Every const and constexpr output, once, in storage form; linear weights also pre-transposed."""
        values = {}
        for op in self.ops:
            if op.op_type in _CONST_OPS:
                values[id(op.outputs[0])] = to_storage(op.outputs[0].val, op.outputs[0]) if op.outputs[0].val is not None else op.outputs[0].sym_val
            elif op.op_type.startswith("constexpr_"):
                if not hasattr(op, "materialized_val_inference"):
                    raise BundleError(f"{self.path.name}: compressed-weight op {op.op_type!r} ({op.name})"
                                      f" cannot be materialised by this coremltools; re-export or verify on macOS")
                result = op.materialized_val_inference()
                results = result if isinstance(result, tuple) else (result,)
                for var, value in zip(op.outputs, results):
                    values[id(var)] = to_storage(value, var)
        for op in self.ops:
            if op.op_type == "linear" and id(op.weight) in values:
                values[(id(op.weight), "T")] = np.ascontiguousarray(values[id(op.weight)].T)
        return values

    def sequence_lengths(self) -> dict:
        """What the model's input accepts: {"enumerated": [lengths]} or {"range": (low, high)}."""
        array = self.spec.description.input[0].type.multiArrayType
        if array.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
            return {"enumerated": sorted(int(s.shape[-1]) for s in array.enumeratedShapes.shapes)}
        if array.WhichOneof("ShapeFlexibility") == "shapeRange":
            bound = array.shapeRange.sizeRanges[-1]
            return {"range": (int(bound.lowerBound), int(bound.upperBound) if bound.upperBound > 0 else None)}
        return {"enumerated": [int(array.shape[-1])]}

    def __call__(self, feeds: dict[str, np.ndarray], check_finite: bool = False) -> dict:
        """Run the program on a batch of inputs {name: (batch, seq) int array}; returns {output name: value}."""
        missing = [name for name in self.input_names if name not in feeds]
        if missing:
            raise BundleError(f"{self.path.name}: missing model input {missing[0]!r}; pass {', '.join(self.input_names)}")
        with _single_threaded_blas():
            return self._run(feeds, check_finite)

    def _run(self, feeds: dict[str, np.ndarray], check_finite: bool) -> dict:
        batch = int(np.shape(feeds[self.input_names[0]])[0])
        values = dict(self.constants)
        for name, var in self.function.inputs.items():
            values[id(var)] = to_storage(feeds[name], var)
        for op, compute, stores in self._steps:
            try:
                for (key, store), result in zip(stores, compute(op, values, batch)):
                    values[key] = store(result)
            except BundleError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure inside an op is reported with the op's name
                raise BundleError(f"{self.path.name}: op {op.op_type!r} ({op.name}) failed on the evaluator: {type(error).__name__}: {error}") from error
            if check_finite:
                for var in op.outputs:
                    value = values[id(var)]
                    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
                        self.first_non_finite = f"{op.op_type!r} ({op.name})"
                        raise BundleError(f"{self.path.name}: op {self.first_non_finite} produced NaN/inf (output {var.name})"
                                          f"; the program is not numerically sound on these inputs")
        outputs = {var.name: values[id(var)] for var in self.function.outputs}
        if not check_finite and not all(np.isfinite(v).all() for v in outputs.values() if isinstance(v, np.ndarray) and v.dtype.kind == "f"):
            self._run(feeds, check_finite=True)  # rerun checking each op; raises naming the first one to go non-finite
        return outputs


def _single_threaded_blas():
    """One BLAS thread while a program runs: its GEMMs are small, and on a shared CPU OpenBLAS's spinning
    worker threads made them far slower."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _load_program(path: Path):
    """The model spec and its MIL Program (weights read from the package's weight files)."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto import load as milproto_load

    if not (path.is_dir() and (path / "Manifest.json").is_file()):
        raise BundleError(f"{path} is not an .mlpackage (no Manifest.json); re-export it with `python -m export coreml`")
    try:
        model = ct.models.MLModel(str(path), skip_model_load=True)
        spec = model.get_spec()
        if spec.WhichOneof("Type") != "mlProgram":
            raise BundleError(f"{path.name} is a {spec.WhichOneof('Type')} model, not an ML Program; re-export it with `python -m export coreml`")
        program = milproto_load.load(spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir)
    except BundleError:
        raise
    except Exception as error:  # noqa: BLE001 - unreadable or corrupted package
        raise BundleError(f"{path.name} cannot be read as a Core ML ML Program ({type(error).__name__}: {error}); re-export it") from error
    return spec, program


class CoreMLEvaluatorBackend(Backend):
    """A Core ML artifact behind the app's Backend interface, run by the MIL evaluator (any OS, no Core ML needed).

    `.run(ids, mask, types)` takes ONE example, as every Backend does (padding and trimming are Backend's);
    `.run_batch(encodings)` runs many, batching those that share a bucket through the program at once (`batch_size`
    examples, by default BATCH_TOKENS // bucket).
    Classifiers return "probabilities" (label order) and "label"; QA models "start_logits" and "end_logits".
    On macOS the runners use mobile_app.runtime.backends.CoreMLBackend (MLModel.predict) instead.
    """

    name = "coreml-mil"

    def __init__(self, path, entry: dict, buckets=None, pad_id: int = 0, reference: bool = False, batch_size: int | None = None):
        super().__init__(path, entry, buckets or entry.get("buckets") or (), pad_id)
        try:
            self.program = MilProgramEvaluator(self.path, reference=reference)
        except ImportError as error:
            raise BundleError(f"{self.path.name} cannot be checked here: neither Core ML (macOS) nor coremltools' MIL loader is available ({error})") from error
        self.batch_size = batch_size
        self.is_classifier = any(op.op_type == CLASSIFY for op in self.program.ops)

    def _outputs(self, raw: dict) -> dict[str, np.ndarray]:
        if self.is_classifier:
            return {PROBABILITIES_OUTPUT: np.asarray(raw[COREML_PROBABILITIES_OUTPUT], dtype=np.float32),
                    COREML_LABEL_OUTPUT: np.asarray(raw[COREML_LABEL_OUTPUT], dtype=object)}
        return {name: np.asarray(raw[name], dtype=np.float32) for name in PER_TOKEN_OUTPUTS}

    def _predict(self, padded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._outputs(self.program(padded))

    def run_batch(self, encodings, progress: bool = False) -> list[dict[str, np.ndarray]]:
        """Outputs of many examples [(input_ids, attention_mask, token_type_ids), ...], in order, each as `.run` gives it."""
        from tqdm import tqdm

        padded = [self.pad(*encoding) for encoding in encodings]
        by_bucket: dict[int, list[int]] = {}
        for index, (inputs, _) in enumerate(padded):
            by_bucket.setdefault(inputs["input_ids"].shape[1], []).append(index)
        chunks = []
        for bucket, indices in by_bucket.items():
            size = self.batch_size or max(1, BATCH_TOKENS // bucket)
            chunks += [indices[start:start + size] for start in range(0, len(indices), size)]
        results: list = [None] * len(padded)
        with tqdm(total=len(padded), desc=self.path.name, unit="ex", disable=not progress) as bar:
            for chunk in chunks:
                feeds = {name: np.concatenate([padded[i][0][name] for i in chunk]) for name in INPUT_NAMES}
                out = self._outputs(self.program(feeds))
                if any(np.shape(value)[0] != len(chunk) for value in out.values()):
                    raise BundleError(f"{self.path.name}: its program does not keep the batch dimension; evaluate one example at a time with .run()")
                for row, i in enumerate(chunk):
                    n = padded[i][1]
                    results[i] = {name: (value[row][..., :n] if name in PER_TOKEN_OUTPUTS else value[row]) for name, value in out.items()}
                bar.update(len(chunk))
        return results
