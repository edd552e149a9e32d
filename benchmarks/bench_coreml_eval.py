"""Core ML on Linux: how fast the MIL evaluator checks an artifact on SST-2 dev, and size/agreement per variant.

    python benchmarks/bench_coreml_eval.py [--student DIR | --bundle DIR] [--variants fp16 fp32 int8 palettize6 palettize4]
                                           [--data-dir DIR] [--out DIR] [--max-examples N] [--json FILE]

Without --student, a trained sentiment student is taken from runs/**/ (a folder with distill_report.json of task
sentiment), else a random-weight tinybert-4l-312d sentiment student is built (speed does not depend on the
weights; agreement then compares near-tied random probabilities, a harder test than a trained model gives).
Each variant is exported into one bundle, the 872 SST-2 dev sentences are encoded with the on-device tokenizer,
and every artifact is run by export.verify.coreml_eval on all of them, batched per bucket. PyTorch (ExportableBert on the
same padded buckets) is the reference. Target: the fp16 artifact verified on all 872 in <= 180 s.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

TARGET_SECONDS = 180.0


def trained_student(runs: Path) -> Path | None:
    """The newest student folder under runs/ whose distill_report.json says task sentiment."""
    found = []
    for report in runs.rglob("distill_report.json") if runs.is_dir() else []:
        try:
            if json.loads(report.read_text()).get("task") == "sentiment" and (report.parent / "config.json").is_file():
                found.append(report.parent)
        except (OSError, json.JSONDecodeError):
            continue
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def random_student(root: Path) -> Path:
    """A random-weight tinybert-4l-312d sentiment student with the default teacher's vocabulary."""
    import shutil

    from distill.student import PRESETS, new_student, student_config
    from distill.tasks import get_task
    from distill.teacher import default_teacher, teacher_config

    spec, teacher = get_task("sentiment"), default_teacher()
    model = new_student(student_config(PRESETS["tinybert-4l-312d"], teacher_config(teacher), "classification", spec.labels), seed=0)
    student = root / "student"
    model.eval().save_pretrained(student, safe_serialization=True)
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copyfile(Path(teacher) / name, student / name)
    return student


def encoded_dev_set(bundle: Path, manifest: dict, data_dir, limit: int | None):
    from distill.tasks import get_task
    from export.model_inputs import encode_classification, encoded_fields
    from mobile_app.runtime.tokenizer import WordPieceTokenizer

    tokenizer = WordPieceTokenizer.from_manifest(bundle, manifest)
    examples = get_task("sentiment").load(data_dir)["eval"][:limit]
    length = manifest["tokenizer"]["max_seq_length"]
    return examples, [encoded_fields(encode_classification(tokenizer, ex["text"], length)) for ex in examples]


def reference_probabilities(student: Path, buckets, encodings) -> np.ndarray:
    from export.verify.torch_reference import TorchRunner
    from export.wrapper import ExportableBert, load_student
    from mobile_app.runtime.classify import softmax

    runner = TorchRunner(ExportableBert(load_student(student)), buckets)
    return np.stack([softmax(runner.run(*e)["logits"]) for e in tqdm(encodings, desc="PyTorch reference", unit="ex")])


def main(argv=None) -> int:
    from export.coreml import COREML_VARIANTS, export_coreml
    from export.verify.coreml_eval import CoreMLEvaluatorBackend

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", type=Path, help="sentiment student folder (default: trained one under runs/, else random 4l-312d)")
    parser.add_argument("--bundle", type=Path, help="an existing sentiment bundle with Core ML artifacts (skips the export)")
    parser.add_argument("--variants", nargs="+", default=list(COREML_VARIANTS), choices=COREML_VARIANTS)
    parser.add_argument("--data-dir", default=os.environ.get("TINYBERT_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--out", type=Path, help="folder for the student and bundle (default: a temp folder)")
    parser.add_argument("--max-examples", type=int, default=None, help="first N dev sentences (default: all 872)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    root = args.out or Path(tempfile.mkdtemp(prefix="bench_coreml_"))
    if args.bundle:
        from mobile_app.runtime.bundle import load_manifest

        bundle = args.bundle
        manifest = load_manifest(bundle, task="sentiment")
        student, origin = Path(manifest["student"]), "from the bundle"
    else:
        student = args.student or trained_student(ROOT / "runs")
        origin = "given" if args.student else ("trained (runs/)" if student else "random tinybert-4l-312d")
        student = student or random_student(root)
        started = time.perf_counter()
        bundle = root / "sentiment"
        manifest = export_coreml(student, bundle, variants=args.variants, task="sentiment")
        print(f"export of {len(args.variants)} variants: {time.perf_counter() - started:.1f} s")
    print(f"student: {student} ({origin})")
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["format"] == "coreml"]
    examples, encodings = encoded_dev_set(bundle, manifest, args.data_dir, args.max_examples)
    labels = np.array([ex["label"] for ex in examples])
    buckets = manifest["buckets"]
    per_bucket = {b: sum(1 for e in encodings if min(x for x in buckets if x >= len(e[0])) == b) for b in buckets}
    print(f"SST-2 dev: {len(encodings)} sentences, per bucket {per_bucket}")
    reference = reference_probabilities(student, buckets, encodings)
    reference_top = reference.argmax(-1)

    rows = []
    for entry in manifest["artifacts"]:
        started = time.perf_counter()
        backend = CoreMLEvaluatorBackend(bundle / entry["file"], entry)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        outputs = backend.run_batch(encodings, progress=True)
        batched_s = time.perf_counter() - started
        probs = np.stack([o["probabilities"] for o in outputs])
        rows.append({"file": entry["file"], "precision": entry["precision"], "size_mb": entry["size_bytes"] / 1e6,
                     "convert_s": entry["conversion_seconds"], "load_s": load_s, "eval_s": batched_s,
                     "max_abs_diff": float(np.abs(probs - reference).max()),
                     "agreement": 100.0 * float(np.mean(probs.argmax(-1) == reference_top)),
                     "accuracy": 100.0 * float(np.mean(probs.argmax(-1) == labels))})
    # verify's path: one example at a time through Backend.run, for the fp16 artifact.
    fp16 = next((e for e in manifest["artifacts"] if e["precision"] == "fp16"), None)
    single_s = None
    if fp16 is not None:
        backend = CoreMLEvaluatorBackend(bundle / fp16["file"], fp16)
        started = time.perf_counter()
        for encoding in tqdm(encodings, desc=f"{fp16['file']} one at a time", unit="ex"):
            backend.run(*encoding)
        single_s = time.perf_counter() - started

    print(f"\nPyTorch accuracy {100.0 * float(np.mean(reference_top == labels)):.2f}% on {len(encodings)} sentences")
    header = f"{'file':<30} {'prec':<11} {'MB':>7} {'convert s':>9} {'load s':>6} {'eval s':>7} {'max|dp|':>9} {'agree %':>8} {'acc %':>6}"
    print(header + "\n" + "-" * len(header))
    for r in rows:
        print(f"{r['file']:<30} {r['precision']:<11} {r['size_mb']:>7.2f} {r['convert_s']:>9.1f} {r['load_s']:>6.2f} {r['eval_s']:>7.1f} "
              f"{r['max_abs_diff']:>9.2e} {r['agreement']:>8.2f} {r['accuracy']:>6.2f}")
    fp16_row = next((r for r in rows if r["precision"] == "fp16"), None)
    if fp16_row:
        total = fp16_row["load_s"] + fp16_row["eval_s"]
        print(f"\nfp16 on all {len(encodings)} sentences: batched {total:.1f} s (load + eval), one at a time {single_s:.1f} s; "
              f"target <= {TARGET_SECONDS:.0f} s: {'MET' if max(total, single_s) <= TARGET_SECONDS else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"student": str(student), "origin": origin, "examples": len(encodings),
                                         "fp16_single_seconds": single_s, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
