"""Parity of an exported artifact with the PyTorch student: the threshold table and the per-artifact tally.

Classification compares "logits" (or "probabilities" against the student's softmax when an artifact
returns only those, as Core ML classifiers do) and top-1 agreement; QA compares "start_logits" and
"end_logits" over the real tokens of every window and the agreement of the answer span. Every
artifact kind has one row in THRESHOLDS (QA lowers span agreement for quantized kinds, see
QA_SPAN_AGREEMENT_FLOOR, and judges Core ML's fp16 compute by the F1 gap, QA_FP16_COMPUTE); callers may override
single fields.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from mobile_app.runtime.errors import UserError
from mobile_app.runtime.classify import softmax


@dataclass(frozen=True)
class Threshold:
    """None means 'not checked'. Agreement in percent of examples; metric gap in task-metric points; scaled diff: the
    max abs diff over the largest absolute value the PyTorch model gave on the same examples (a fraction)."""
    max_abs_diff: float | None = None
    min_agreement: float | None = None
    max_metric_gap: float | None = None
    max_scaled_diff: float | None = None


# One table for every artifact kind (`format/precision`). Lossy kinds are also bounded on their outputs, scaled by the
# model's own largest output (max_scaled_diff), so that a file converted from another student fails even where it
# agrees on the labels: int8 kinds moved the outputs by at most 0.076 of that scale on the demo students, another
# student's file by 0.64 or more; int8-static's int16 activations and palettized weights move them further
# (docs/reliability.md).
SCALED_DIFF = {"int8": 0.25, "int8-static": 0.35, "palettize6": 0.35, "palettize4": 0.5}


def _lossy(scaled: str) -> Threshold:
    """A lossy kind: 99% agreement, 1 metric point, and the scaled output bound of its weight format."""
    return Threshold(min_agreement=99.0, max_metric_gap=1.0, max_scaled_diff=SCALED_DIFF[scaled])


THRESHOLDS: dict[str, Threshold] = {
    "tflite/fp32": Threshold(max_abs_diff=1e-4, min_agreement=100.0),
    "tflite/fp16": Threshold(max_abs_diff=1e-2),
    "tflite/int8-dynamic": _lossy("int8"),
    "tflite/int8-words4": _lossy("int8"),
    "tflite/int8-static": _lossy("int8-static"),
    "coreml/fp32": Threshold(max_abs_diff=1e-4, min_agreement=100.0),
    "coreml/fp16": Threshold(max_abs_diff=1e-2, min_agreement=99.5),
    "coreml/int8": _lossy("int8"),
    "coreml/int8-words4": _lossy("int8"),
    "coreml/palettize6": _lossy("palettize6"),
    "coreml/palettize4": _lossy("palettize4"),
}
FALLBACK_THRESHOLD = _lossy("int8")
# QA agreement is over answer spans, where a one-token boundary shift counts as a miss; quantized QA models miss more
# spans as they get better while keeping F1 within 1 point (docs/qa-parity-thresholds.md). For quantized QA
# artifacts the F1 gap is the accuracy check; the agreement floor only guards against a broken export.
QA_SPAN_AGREEMENT_FLOOR = 90.0
# Core ML fp16 computes in float16 (tflite/fp16 stores fp16 weights and computes in float32). On QA's start/end logits,
# larger than a classifier's two, a float16 ulp is already near 1e-2 and near-tie span boundaries flip, so it is judged
# as a lossy kind: the F1 gap and the span floor, with a looser logit bound that still catches a broken export
# (docs/qa-parity-thresholds.md, "Core ML fp16 on QA").
QA_FP16_COMPUTE = {"coreml/fp16": Threshold(max_abs_diff=0.1, min_agreement=QA_SPAN_AGREEMENT_FLOOR, max_metric_gap=1.0)}
_FIELDS = {f.name for f in fields(Threshold)}


def thresholds_with(overrides: dict | None = None, head: str = "classification") -> dict[str, Threshold]:
    """THRESHOLDS for a `head` ("qa": the span agreement floor on quantized kinds) with overrides
    {kind or "*": {field: value}} applied ("*" first, then per kind)."""
    table = dict(THRESHOLDS)
    if head == "qa":  # the lossy kinds are those judged by a metric gap
        table.update({kind: replace(t, min_agreement=QA_SPAN_AGREEMENT_FLOOR) for kind, t in table.items() if t.max_metric_gap is not None})
        table.update(QA_FP16_COMPUTE)
    overrides = overrides or {}
    for kind in sorted(overrides, key=lambda k: k != "*"):
        changes = overrides[kind]
        unknown = set(changes) - _FIELDS
        if unknown:
            raise UserError(f"unknown threshold {', '.join(sorted(unknown))}; use one of {', '.join(sorted(_FIELDS))}")
        targets = list(table) if kind == "*" else [kind]
        for target in targets:
            table[target] = replace(table.get(target, FALLBACK_THRESHOLD), **changes)
    return table


def parse_threshold_flag(text: str) -> tuple[str, str, float | None]:
    """'[KIND.]FIELD=VALUE' (e.g. tflite/fp32.max_abs_diff=1e-3, min_agreement=95, coreml/fp16.max_abs_diff=none)."""
    target, sep, value = text.partition("=")
    kind, _, name = target.rpartition(".")
    if not sep or name not in _FIELDS:
        raise UserError(f"bad --threshold {text!r}; write [FORMAT/PRECISION.]FIELD=VALUE with FIELD one of {', '.join(sorted(_FIELDS))}")
    if kind and kind not in THRESHOLDS:
        raise UserError(f"bad --threshold {text!r}: no artifact kind {kind!r}; kinds: {', '.join(THRESHOLDS)}")
    if value.strip().lower() == "none":
        return kind or "*", name, None
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"bad --threshold {text!r}: {value!r} is not a number (or 'none')") from None
    low, high = (0.0, 100.0) if name == "min_agreement" else (0.0, math.inf)
    if not (low <= number <= high) or math.isnan(number):
        unit = "a percent from 0 to 100" if name == "min_agreement" else "a difference of 0 or more"
        raise UserError(f"bad --threshold {text!r}: {name} must be {unit}")
    return kind or "*", name, number


def _vector(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float64).reshape(-1)


def compared_outputs(head: str, reference: dict, candidate: dict, n_tokens: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{quantity: (reference values, artifact values)} that parity compares for one model input (every backend gives a
    classifier's logits or probabilities as one row in label order)."""
    if head == "qa":
        return {name: (_vector(reference[name])[:n_tokens], _vector(candidate[name])[:n_tokens]) for name in ("start_logits", "end_logits")}
    if "logits" in candidate:
        return {"logits": (_vector(reference["logits"]), _vector(candidate["logits"]))}
    if "probabilities" in candidate:
        return {"probabilities": (softmax(_vector(reference["logits"])), _vector(candidate["probabilities"]))}
    raise UserError(f"the artifact returns {sorted(candidate)}, neither logits nor probabilities; re-export it")


def _short(value, limit: int = 60) -> str:
    """A prediction (label index or [start, end, answer text]) as a bounded repr for one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...]"


@dataclass
class ArtifactParity:
    """The running tally of one artifact against the student over the eval examples."""
    name: str
    kind: str
    threshold: Threshold
    compared: str = ""
    diffs: list[float] = field(default_factory=list)          # per example: max abs diff over its outputs
    predictions: list = field(default_factory=list)           # label index or answer text, for the metric
    agreements: int = 0
    abs_sum: float = 0.0
    values: int = 0
    reference_max_abs: float = 0.0                            # the scale max_scaled_diff is measured against
    worst: dict | None = None
    first_disagreement: dict | None = None
    metric: float | None = None
    runtime: str | None = None                                # the interpreter it ran on, named in every failure

    @property
    def label(self) -> str:
        """How failures name the row: the artifact, and the runtime when there is one."""
        return self.name if self.runtime is None else f"{self.name} on {self.runtime}"

    def add(self, example: dict, pairs: dict[str, tuple[np.ndarray, np.ndarray]], reference_prediction, prediction) -> None:
        """Record one example: its compared arrays (all windows concatenated) and both predictions."""
        self.compared = "/".join(pairs)
        diff = np.concatenate([np.abs(ref - got) for ref, got in pairs.values()])
        worst = float(diff.max()) if diff.size else 0.0
        if not math.isfinite(worst) or not np.isfinite(diff).all():
            worst = math.inf
        self.diffs.append(worst)
        self.abs_sum += float(diff.sum()) if math.isfinite(worst) else math.inf
        self.values += int(diff.size)
        for ref, _ in pairs.values():
            if ref.size:
                self.reference_max_abs = max(self.reference_max_abs, float(np.abs(ref).max()))
        self.predictions.append(prediction)
        if self.worst is None or worst > self.worst["max_abs_diff"]:
            self.worst = dict(example, max_abs_diff=worst)
        if prediction == reference_prediction:
            self.agreements += 1
        elif self.first_disagreement is None:
            self.first_disagreement = dict(example, reference=reference_prediction, artifact=prediction)

    @property
    def examples(self) -> int:
        return len(self.diffs)

    def summary(self, reference_metric: float, metric_name: str) -> dict:
        """The artifact's row in parity.json: statistics, thresholds, pass/fail and the reasons."""
        agreement = 100.0 * self.agreements / max(1, self.examples)
        row = {"name": self.name, "kind": self.kind, "compared": self.compared, "examples": self.examples,
               "max_abs_diff": max(self.diffs, default=0.0), "mean_abs_diff": self.abs_sum / max(1, self.values),
               "reference_max_abs": self.reference_max_abs, "max_scaled_diff": self.scaled(max(self.diffs, default=0.0)),
               "agreement": agreement, "metric": self.metric, "metric_name": metric_name,
               "metric_gap": None if self.metric is None else abs(self.metric - reference_metric),
               "threshold": asdict(self.threshold), "worst_example": self.worst, "first_disagreement": self.first_disagreement}
        row["failures"] = self.failures(row)
        row["passed"] = not row["failures"]
        return row

    def scaled(self, diff: float) -> float:
        """`diff` over the reference's largest absolute value (0 over 0 is 0; a diff over a zero scale is infinite)."""
        if self.reference_max_abs > 0:
            return diff / self.reference_max_abs
        return 0.0 if diff == 0 else math.inf

    def failures(self, row: dict) -> list[str]:
        """One line per threshold missed, naming the artifact, the example and what differed."""
        t, out = self.threshold, []
        if t.max_abs_diff is not None and not row["max_abs_diff"] <= t.max_abs_diff:
            w = row["worst_example"]
            out.append(f"{self.label}: max abs diff of {self.compared} {row['max_abs_diff']:.3g} > {t.max_abs_diff:g} "
                       f"at example #{w['index']} (id {w['id']}: {w['text']!r})")
        if t.max_scaled_diff is not None and not row["max_scaled_diff"] <= t.max_scaled_diff:
            w = row["worst_example"]
            out.append(f"{self.label}: max abs diff of {self.compared} {row['max_abs_diff']:.3g} is {row['max_scaled_diff']:.3g} of "
                       f"PyTorch's largest |value| {row['reference_max_abs']:.3g} (allowed {t.max_scaled_diff:g}) at example "
                       f"#{w['index']} (id {w['id']}: {w['text']!r}); is this file converted from this student?")
        if t.min_agreement is not None and row["agreement"] < t.min_agreement:
            d = row["first_disagreement"] or {}
            out.append(f"{self.label}: agreement {row['agreement']:.2f}% < {t.min_agreement:g}% "
                       f"({self.examples - self.agreements} of {self.examples} differ; first: example #{d.get('index')} "
                       f"(id {d.get('id')}: {d.get('text')!r}) PyTorch {_short(d.get('reference'))} vs artifact {_short(d.get('artifact'))})")
        if t.max_metric_gap is not None and row["metric_gap"] is not None and row["metric_gap"] > t.max_metric_gap:
            out.append(f"{self.label}: {row['metric_name']} {row['metric']:.2f} is {row['metric_gap']:.2f} points from PyTorch's "
                       f"(allowed {t.max_metric_gap:g})")
        return out
