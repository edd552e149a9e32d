"""Latency and size of every artifact of a bundle beside its PyTorch student, the ONNX Runtime peer and BERT-base,
in ONE interleaved run, with accuracy and agreement on the real eval split and the app's end-to-end time.

    python benchmarks/bench_latency.py --bundle BUNDLE [--rounds 9] [--runs 5] [--threads 1] [--bucket 128] [--out DIR]
    python benchmarks/bench_latency.py            # a random-weight tinybert-4l-312d sentiment student (latency only)

Rounds are interleaved: each round times every subject once (one warm-up call, then the median of --runs calls),
in a rotated order, so load from other processes spreads over all subjects instead of landing on one; the table
gives the median over rounds and the spread (lowest-highest round). The first .tflite artifact is also opened a
second time as its own subject: the two rows must agree, or the run is not to be trusted.
Inputs fill the bucket (the app pads to it anyway). BERT-base is BertConfig()'s shape with random weights (its
speed does not depend on them). ONNX Runtime dynamic int8 of the same student is exported with torch.onnx and
`quantize_dynamic` (`pip install .[bench]`; without it the row is skipped and says so).
Accuracy and agreement of the artifacts come from the bundle's parity.json (`python -m export verify BUNDLE`);
the PyTorch student and the ONNX peer of a classification bundle are scored here on the same split.
"App e2e" is mobile_app.runtime's TaskRunner (tokenize, run, post-process) on a real eval text of that bucket.
Each file the app can open is marked with the interpreter that opens it (LiteRT, TFLite 2.8; contract.py's rule), and
the file the app opens on LiteRT is compared with the ONNX Runtime peer timed in the same run.
Targets: see TARGETS (sentiment artifact the app ships vs BERT-base and vs int8-dynamic).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from benchmarks.machine import machine_line  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

# goal / floor for the artifact the app ships by default (issue #17)
TARGETS = {"size_x_vs_bert_base": (50.0, 40.0), "latency_vs_int8_dynamic": (1.0, 1.1), "agreement": (99.5, 99.0),
           "metric_gap": (0.3, 1.0)}


def example(bucket: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One input of exactly `bucket` attended tokens: [CLS] words [SEP]."""
    ids = np.random.default_rng(bucket).integers(1000, 20000, bucket).astype(np.int32)
    ids[0], ids[-1] = 101, 102
    return ids, np.ones(bucket, np.int32), np.zeros(bucket, np.int32)


def build_random_student(root: Path) -> Path:
    """A random tinybert-4l-312d sentiment student exported to a bundle under root; returns the bundle."""
    import shutil

    import torch

    from distill.student import PRESETS, new_student, student_config
    from distill.tasks import get_task
    from distill.teacher import default_teacher, teacher_config
    from distill.word_grid import snap
    from export.tflite import export_tflite

    spec = get_task("sentiment")
    teacher = default_teacher()
    model = new_student(student_config(PRESETS["tinybert-4l-312d"], teacher_config(teacher), "classification", spec.labels), seed=0)
    table = model.bert.embeddings.word_embeddings.weight
    with torch.no_grad():  # on the 4-bit grid, as `--set student_word_bits=4` leaves it, so int8-words4 can be made
        table.copy_(snap(table))
    student = root / "student"
    model.eval().save_pretrained(student, safe_serialization=True)
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copyfile(Path(teacher) / name, student / name)
    export_tflite(student, root / "bundle", precisions=["fp32", "int8-dynamic", "int8-words4"], task=spec.name)
    return root / "bundle"


class Subject:
    """One thing to time: `call()` runs it once at the bucket; size in bytes; its accuracy/agreement if known."""

    def __init__(self, name: str, runtime: str, call, size_bytes: int, **quality):
        self.name, self.runtime, self.call, self.size_bytes = name, runtime, call, size_bytes
        self.quality = quality
        self.rounds: list[float] = []

    def time_once(self, runs: int) -> None:
        self.call()  # warm-up after the other subjects ran: caches and thread pools are theirs now
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.call()
            times.append((time.perf_counter() - start) * 1000.0)
        self.rounds.append(statistics.median(times))


def _torch_call(model, bucket: int):
    ids, mask, types = (torch.from_numpy(a[None].astype(np.int64)) for a in example(bucket))

    def call():
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    return call


def _backend_call(backend, bucket: int):
    ids, mask, types = example(bucket)
    return lambda: backend.run(ids, mask, types)


def _eval_text_for(runner, spec, examples: list[dict], bucket: int):
    """The app call on real eval text that fills `bucket` (eval sentences joined until they do; QA: one question)."""
    if spec.is_qa:
        ex = examples[0]
        return lambda: runner.answer(ex["question"], ex["context"]), "1 SQuAD question, all its windows"
    from mobile_app.runtime.classify import encode_text

    text = ""
    for ex in examples:
        text = f"{text} {ex['text']}".strip()
        if len(encode_text(runner.tokenizer, text, bucket + 1).input_ids) > bucket:
            break
    n = len(encode_text(runner.tokenizer, text, bucket).input_ids)
    return lambda: runner.classify(text), f"eval sentences joined to fill the bucket ({n} tokens, truncated by the app)"


def classification_quality(backend, tokenizer, manifest: dict, examples: list[dict], reference: list[int] | None,
                           label: str) -> tuple[list[int], float, float | None]:
    """(predicted label indices, accuracy %, agreement % with `reference`) over `examples`, as verify encodes them."""
    from export.model_inputs import encode_classification, encoded_fields
    from mobile_app.runtime.classify import classify

    predictions = []
    for ex in tqdm(examples, desc=f"accuracy {label}", unit="ex", leave=False):
        encoding = encode_classification(tokenizer, ex["text"], manifest["tokenizer"]["max_seq_length"])
        predictions.append(classify(backend.run(*encoded_fields(encoding))["logits"], manifest["labels"]).index)
    accuracy = 100.0 * np.mean([p == ex["label"] for p, ex in zip(predictions, examples)])
    agreement = None if reference is None else 100.0 * np.mean([p == r for p, r in zip(predictions, reference)])
    return predictions, float(accuracy), agreement


def build_subjects(bundle: Path, bucket: int, threads: int, data_dir, onnx_dir: Path, quality_examples: int | None) -> tuple[list, dict]:
    from distill.tasks import get_task
    from export.verify.torch_reference import TorchRunner
    from export.wrapper import ExportableBert, load_student
    from mobile_app.runtime.backends import TFLiteBackend
    from mobile_app.runtime.bundle import artifacts, load_manifest
    from mobile_app.runtime.task_runner import TaskRunner
    from mobile_app.runtime.tokenizer import WordPieceTokenizer
    from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

    manifest = load_manifest(bundle)
    spec = get_task(manifest["task"])
    tokenizer = WordPieceTokenizer.from_manifest(bundle, manifest)
    parity = json.loads((bundle / "parity.json").read_text()) if (bundle / "parity.json").is_file() else None
    by_file: dict[str, dict] = {}
    for row in (parity or {}).get("artifacts", []):  # a file's row on this machine's LiteRT, not an emulated ARM64 row's subset
        if row.get("runtime") == "ai-edge-litert-2.3" or row["file"] not in by_file:
            by_file[row["file"]] = row
    examples = spec.load(data_dir)["eval"] if data_dir else []
    notes = {"task": spec.name, "bucket": bucket, "parity_examples": parity and parity["examples"],
             "reference_metric": parity and parity["reference"]["metric"], "metric": spec.metric}
    torch.set_num_threads(threads)
    student = ExportableBert(load_student(manifest["student"]))
    subjects = [Subject("PyTorch student fp32", f"torch {torch.__version__}", _torch_call(student.model, bucket),
                        sum(p.numel() * p.element_size() for p in student.model.parameters()),
                        metric=notes["reference_metric"], agreement=100.0 if parity else None)]
    base_config = BertConfig(num_labels=max(2, len(spec.labels)))  # 12 layers, 768 hidden, 3072 intermediate
    torch.manual_seed(0)
    base = (BertForQuestionAnswering if spec.is_qa else BertForSequenceClassification)(base_config).eval()
    subjects.append(Subject("BERT-base fp32 (random weights)", f"torch {torch.__version__}", _torch_call(base, bucket),
                            sum(p.numel() * p.element_size() for p in base.parameters())))
    reference_predictions = None
    if examples and not spec.is_qa:
        examples = examples[:quality_examples]
        reference = TorchRunner(student, manifest["buckets"], tokenizer.pad_id)
        reference_predictions, accuracy, _ = classification_quality(reference, tokenizer, manifest, examples, None, "pytorch")
        if not parity:  # else parity.json's figure (the artifacts' rows are scored on its examples)
            subjects[0].quality.update(metric=accuracy, agreement=100.0)
        notes["reference_metric_here"] = accuracy
        notes.update(quality_examples=len(examples))
    try:
        from benchmarks.onnx_peer import OnnxBackend, export_onnx_int8, onnxruntime_version

        onnx_path = export_onnx_int8(manifest["student"], onnx_dir)
        peer = OnnxBackend(onnx_path, manifest["buckets"], num_threads=threads, pad_id=tokenizer.pad_id)
        quality = {}
        if reference_predictions is not None:
            _, accuracy, agreement = classification_quality(peer, tokenizer, manifest, examples, reference_predictions, "onnxruntime")
            quality = {"metric": accuracy, "agreement": agreement}
        subjects.append(Subject("ONNX Runtime dynamic int8", f"onnxruntime {onnxruntime_version()}", _backend_call(peer, bucket),
                                onnx_path.stat().st_size, **quality))
    except ImportError as error:
        notes["onnx"] = f"ONNX Runtime row skipped ({error}); pip install .[bench]"
    from importlib.metadata import version

    litert_version = version("ai-edge-litert")  # the interpreter TFLiteBackend picks first

    entries = artifacts(manifest, "tflite")
    opened = app_files(entries)
    e2e_examples = examples or [{"text": "a gorgeous , witty , seductive movie . " * 20}]
    for index, entry in enumerate(entries):
        backend = TFLiteBackend(bundle / entry["file"], entry, num_threads=threads, pad_id=tokenizer.pad_id)
        row = by_file.get(entry["file"], {})
        quality = {"metric": row.get("metric"), "agreement": row.get("agreement")}
        name = entry["file"] + (f" [app on {opened[entry['file']]}]" if entry["file"] in opened else "")
        subjects.append(Subject(name, f"ai-edge-litert {litert_version}", _backend_call(backend, bucket), entry["size_bytes"], **quality))
        if index == 0:  # the same file in a second interpreter: a repeatability check, not a result
            again = TFLiteBackend(bundle / entry["file"], entry, num_threads=threads, pad_id=tokenizer.pad_id)
            subjects.append(Subject(f"{entry['file']} (2nd interpreter)", f"ai-edge-litert {litert_version}", _backend_call(again, bucket),
                                    entry["size_bytes"], repeat=True))
        app = TaskRunner(bundle, manifest, tokenizer, backend, "tflite")
        call, what = _eval_text_for(app, spec, e2e_examples, bucket)
        notes["e2e_input"] = what
        subjects.append(Subject(f"  app e2e, {entry['file']}", "mobile_app.runtime", call, entry["size_bytes"], e2e=True))
    return subjects, notes


def run_rounds(subjects: list[Subject], rounds: int, runs: int) -> None:
    for r in tqdm(range(rounds), desc="interleaved rounds", unit="round"):
        order = subjects[r % len(subjects):] + subjects[:r % len(subjects)]
        for subject in order:
            subject.time_once(runs)


def table(subjects: list[Subject], notes: dict) -> str:
    base = next(s for s in subjects if s.name.startswith("BERT-base"))
    base_ms = statistics.median(base.rounds)
    int8 = next((s for s in subjects if s.name.split(" [")[0].endswith("_int8-dynamic.tflite")), None)
    int8_ms = statistics.median(int8.rounds) if int8 else None
    header = ["model", "runtime", "ms (median)", "spread", "vs BERT-base", "vs int8-dyn", "MB", "size vs BERT-base",
              notes["metric"], "agreement %"]
    lines = []
    for s in subjects:
        ms = statistics.median(s.rounds)
        e2e = s.quality.get("e2e")
        fmt_pct = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append([s.name, s.runtime, f"{ms:.2f}", f"{min(s.rounds):.1f}-{max(s.rounds):.1f}",
                      f"{base_ms / ms:.1f}x", "-" if int8_ms is None else f"{ms / int8_ms:.2f}",
                      "" if e2e else f"{s.size_bytes / 1e6:.1f}", "" if e2e else f"{base.size_bytes / s.size_bytes:.1f}x",
                      "" if e2e else fmt_pct(s.quality.get("metric")), "" if e2e else fmt_pct(s.quality.get("agreement"))])
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in lines]
    return "\n".join(out)


def app_files(entries: list[dict]) -> dict[str, str]:
    """{file: which interpreter's app opens it} for the files the contract's rule picks on LiteRT (this machine's
    ai-edge-litert, the version of the Android route's LiteRT) and on TFLite 2.8 (python-for-android's recipe)."""
    from mobile_app.runtime.backend_factory import interpreter_tflite_version
    from mobile_app.runtime.bundle import default_artifact

    opened: dict[str, list[str]] = {}
    for who, version in ((f"LiteRT (TFLite {interpreter_tflite_version()})", interpreter_tflite_version()), ("TFLite 2.8", "2.8.0")):
        opened.setdefault(default_artifact(entries, version)["file"], []).append(who)
    return {file: " and ".join(who) for file, who in opened.items()}


def peer_lines(subjects: list[Subject], app_file: str) -> list[str]:
    """The file the app opens on LiteRT against ONNX Runtime's dynamic int8 of the same student, timed in this run."""
    ship = next((s for s in subjects if s.name.split(" [")[0] == app_file), None)
    peer = next((s for s in subjects if s.name.startswith("ONNX Runtime")), None)
    if ship is None or peer is None:
        return [f"peer: {'no ONNX Runtime row' if peer is None else 'no row of ' + app_file}"]
    ratio = statistics.median(ship.rounds) / statistics.median(peer.rounds)
    verdict = "faster than" if ratio < 1 else "NOT faster than"
    return [f"app's file on LiteRT ({app_file}) {statistics.median(ship.rounds):.2f} ms vs ONNX Runtime dynamic int8 "
            f"{statistics.median(peer.rounds):.2f} ms: {ratio:.2f}x, {verdict} the peer in this run"]


def target_lines(subjects: list[Subject], shipped: str) -> list[str]:
    """The issue's goal/floor for the artifact the app ships by default (`shipped`: its file name)."""
    by_name = {s.name.split(" [")[0]: s for s in subjects if not s.quality.get("e2e") and not s.quality.get("repeat")}
    base = next(s for s in subjects if s.name.startswith("BERT-base"))
    ship = by_name.get(shipped)
    int8 = next((s for n, s in by_name.items() if n.endswith("_int8-dynamic.tflite")), None)
    if ship is None:
        return [f"targets: no {shipped} artifact in the bundle"]
    checks = [("size_x_vs_bert_base", base.size_bytes / ship.size_bytes, True)]
    if int8:
        checks.append(("latency_vs_int8_dynamic", statistics.median(ship.rounds) / statistics.median(int8.rounds), False))
    if ship.quality.get("agreement") is not None:
        checks.append(("agreement", ship.quality["agreement"], True))
    student = next(s for s in subjects if s.name.startswith("PyTorch student"))
    if ship.quality.get("metric") is not None and student.quality.get("metric") is not None:
        checks.append(("metric_gap", student.quality["metric"] - ship.quality["metric"], False))
    lines = []
    for key, value, higher in checks:
        goal, floor = TARGETS[key]
        met = lambda bound: value >= bound if higher else value <= bound  # noqa: E731
        verdict = "goal met" if met(goal) else ("floor met" if met(floor) else "MISSED")
        lines.append(f"{shipped} {key}: {value:.2f} (goal {'>=' if higher else '<='} {goal:g}, floor {floor:g}): {verdict}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a classification or QA bundle (default: export a random tinybert-4l-312d)")
    parser.add_argument("--data-dir", default=os.environ.get("TINYBERT_DATA_DIR"), help="eval split for accuracy and the app's input")
    parser.add_argument("--bucket", type=int, help="sequence length to time (default: 128 if the bundle has it, else its largest)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (median and spread over them)")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per subject per round (their median is the round's)")
    parser.add_argument("--quality-examples", type=int, help="eval examples for the PyTorch/ONNX accuracy (default: all)")
    parser.add_argument("--ship", default=None, help="precision checked against the targets and the peer (default: the one the app "
                        "opens); its file is the one LiteRT opens, by the contract's rule")
    parser.add_argument("--out", type=Path, help="also write latency.json and latency.md here")
    parser.add_argument("--work", type=Path, help="keep the random student, its bundle and the ONNX files here for the next run")
    args = parser.parse_args(argv)
    if args.bundle and not (args.bundle / "bundle.json").is_file():
        print(f"error: {args.bundle} is not a bundle (no bundle.json); export one with `python -m export tflite`", file=sys.stderr)
        return 2
    from mobile_app.runtime.bundle import artifacts

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine_before = machine_line()
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        work = args.work or Path(tmp)
        bundle = args.bundle or (work / "bundle" if (work / "bundle" / "bundle.json").is_file() else build_random_student(work))
        manifest = json.loads((bundle / "bundle.json").read_text())
        bucket = args.bucket or (128 if 128 in manifest["buckets"] else max(manifest["buckets"]))
        subjects, notes = build_subjects(bundle, bucket, args.threads, args.data_dir if args.bundle else None,
                                         (args.bundle or work) / "onnx" if args.work or args.bundle else work / "onnx",
                                         args.quality_examples)
        run_rounds(subjects, args.rounds, args.runs)
    text = table(subjects, notes)
    from mobile_app.runtime.backend_factory import interpreter_tflite_version
    from mobile_app.runtime.bundle import choose_artifact

    app_file = choose_artifact(artifacts(manifest, "tflite"), interpreter_tflite_version(), args.ship)["file"]
    lines = peer_lines(subjects, app_file) + (target_lines(subjects, app_file) if notes["task"] == "sentiment" else [])
    header = (f"{started}; task {notes['task']}, seq {bucket}, batch 1, {args.threads} thread(s), {args.rounds} interleaved rounds "
              f"x {args.runs} calls; machine at start: {machine_before}; at end: load average {os.getloadavg()[0]:.1f}\n"
              f"accuracy/agreement: artifacts from parity.json ({notes.get('parity_examples') or 'no parity.json'} eval examples), "
              + (f"ONNX here vs PyTorch on the first {notes['quality_examples']} (PyTorch there: {notes['reference_metric_here']:.2f})"
                 if "quality_examples" in notes else "ONNX not scored (classification bundles with --data-dir only)")
              + f"; app e2e input: {notes.get('e2e_input')}"
              + (f"\n{notes['onnx']}" if "onnx" in notes else ""))
    print(f"\n{header}\n\n{text}\n\n" + "\n".join(lines))
    if args.out:
        from mobile_app.runtime.files import write_atomic

        rows = [{"model": s.name, "runtime": s.runtime, "rounds_ms": s.rounds, "median_ms": statistics.median(s.rounds),
                 "size_bytes": s.size_bytes, **s.quality} for s in subjects]
        write_atomic(args.out / "latency.json", json.dumps({"header": header, "rows": rows}, indent=2) + "\n")
        write_atomic(args.out / "latency.md", header + "\n\n" + text + "\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
