"""Latency and size of each TFLite artifact per bucket (1 and 2 threads) beside PyTorch student, teacher and BERT-base.

    python benchmarks/bench_latency.py [--bundle BUNDLE_DIR] [--out DIR] [--runs 20] [--threads 1 2]

Without --bundle, a random-weight tinybert-4l-312d sentiment student is built and exported (fp32, fp16,
int8-dynamic; int8-static too when data is found) in a temp folder: latency does not depend on the weights.
The teacher is the offline MiniLM-L6-H384 base with a (random) task head; BERT-base is BertConfig()'s shape
with random weights. Each figure is the median of --runs warm runs of one batch-1 example that fills the bucket.
Target: int8-dynamic student >= 20x faster than BERT-base fp32 PyTorch at seq 128, and <= 1/25 of its size.
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
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

TARGET_BUCKET, TARGET_SPEEDUP, TARGET_SIZE_RATIO = 128, 20.0, 25.0


def example(bucket: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One input of exactly `bucket` attended tokens: [CLS] words [SEP]."""
    ids = np.random.default_rng(bucket).integers(1000, 20000, bucket).astype(np.int32)
    ids[0], ids[-1] = 101, 102
    return ids, np.ones(bucket, np.int32), np.zeros(bucket, np.int32)


def median_ms(call, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def build_random_student(root: Path, data_dir: str | None) -> Path:
    """A random tinybert-4l-312d sentiment student exported to a bundle under root; returns the bundle."""
    import shutil

    from distill.student import PRESETS, new_student, student_config
    from distill.tasks import get_task
    from distill.teacher import default_teacher, teacher_config
    from export.tflite import export_tflite

    spec = get_task("sentiment")
    teacher = default_teacher()
    model = new_student(student_config(PRESETS["tinybert-4l-312d"], teacher_config(teacher), "classification", spec.labels), seed=0)
    student = root / "student"
    model.eval().save_pretrained(student, safe_serialization=True)
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copyfile(Path(teacher) / name, student / name)
    precisions = ["fp32", "fp16", "int8-dynamic"] + (["int8-static"] if data_dir else [])
    export_tflite(student, root / "bundle", precisions=precisions, task=spec.name, data_dir=data_dir)
    return root / "bundle"


def torch_models(student_dir: str, task: str) -> list[tuple[str, torch.nn.Module]]:
    from transformers import BertConfig, BertForSequenceClassification

    from distill.tasks import get_task
    from distill.teacher import default_teacher, load_task_model
    from export.wrapper import load_student

    spec = get_task(task)
    torch.manual_seed(0)
    teacher = load_task_model(default_teacher(), spec)
    base_config = BertConfig(num_labels=max(2, len(spec.labels)))  # 12 layers, 768 hidden, 3072 intermediate
    base = BertForSequenceClassification(base_config) if not spec.is_qa else None
    if spec.is_qa:
        from transformers import BertForQuestionAnswering

        base = BertForQuestionAnswering(base_config)
    return [("pytorch student (fp32)", load_student(student_dir)), ("pytorch teacher MiniLM-L6-H384 (fp32)", teacher.eval()),
            ("pytorch BERT-base random (fp32)", base.eval())]


def measure(bundle_dir: Path, threads: list[int], runs: int) -> list[dict]:
    from mobile_app.runtime.backends import TFLiteBackend
    from mobile_app.runtime.bundle import artifacts, load_manifest

    manifest = load_manifest(bundle_dir)
    buckets = manifest["buckets"]
    rows = []
    jobs = [(e, b, t) for e in artifacts(manifest, "tflite") for b in buckets for t in threads]
    models = torch_models(manifest["student"], manifest["task"])
    jobs += [(m, b, t) for m in models for b in buckets for t in threads]
    for subject, bucket, n_threads in tqdm(jobs, desc="latency", unit="run"):
        ids, mask, types = example(bucket)
        if isinstance(subject, dict):
            backend = TFLiteBackend(bundle_dir / subject["file"], subject, num_threads=n_threads)
            ms = median_ms(lambda: backend.run(ids, mask, types), runs)
            rows.append({"model": subject["file"], "runtime": "tflite", "precision": subject["precision"], "bucket": bucket,
                         "threads": n_threads, "median_ms": ms, "size_bytes": subject["size_bytes"]})
        else:
            name, model = subject
            torch.set_num_threads(n_threads)
            feed = {k: torch.from_numpy(v[None].astype(np.int64)) for k, v in
                    (("input_ids", ids), ("attention_mask", mask), ("token_type_ids", types))}
            with torch.no_grad():
                ms = median_ms(lambda: model(**feed), runs)
            size = sum(p.numel() * p.element_size() for p in model.parameters())
            rows.append({"model": name, "runtime": "pytorch", "precision": "fp32", "bucket": bucket, "threads": n_threads,
                         "median_ms": ms, "size_bytes": size})
    return rows


def table(rows: list[dict], threads: list[int]) -> str:
    buckets = sorted({r["bucket"] for r in rows})
    cols = [f"seq{b}/{t}t ms" for b in buckets for t in threads]
    header = ["model", "runtime", "size MB", *cols]
    lines = []
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = {(r["bucket"], r["threads"]): r for r in rows if r["model"] == name}
        first = next(iter(mine.values()))
        lines.append([name, first["runtime"], f"{first['size_bytes'] / 1e6:.1f}",
                      *[f"{mine[(b, t)]['median_ms']:.2f}" if (b, t) in mine else "-" for b in buckets for t in threads]])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = lambda row: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, lines)])


def targets(rows: list[dict], threads: list[int]) -> list[str]:
    """The speed and size targets, checked at TARGET_BUCKET for each thread count."""
    out = []
    student = [r for r in rows if r["precision"] == "int8-dynamic" and r["runtime"] == "tflite" and r["bucket"] == TARGET_BUCKET]
    base = [r for r in rows if r["model"].startswith("pytorch BERT-base") and r["bucket"] == TARGET_BUCKET]
    for t in threads:
        s = next((r for r in student if r["threads"] == t), None)
        b = next((r for r in base if r["threads"] == t), None)
        if s and b:
            speedup = b["median_ms"] / s["median_ms"]
            out.append(f"speed @seq{TARGET_BUCKET}, {t} thread(s): int8-dynamic student {s['median_ms']:.2f} ms vs BERT-base "
                       f"{b['median_ms']:.1f} ms = {speedup:.1f}x (target >= {TARGET_SPEEDUP:g}x): {'MET' if speedup >= TARGET_SPEEDUP else 'MISSED'}")
    if student and base:
        ratio = base[0]["size_bytes"] / student[0]["size_bytes"]
        out.append(f"size: int8-dynamic student {student[0]['size_bytes'] / 1e6:.1f} MB vs BERT-base {base[0]['size_bytes'] / 1e6:.1f} MB = "
                   f"1/{ratio:.1f} (target <= 1/{TARGET_SIZE_RATIO:g}): {'MET' if ratio >= TARGET_SIZE_RATIO else 'MISSED'}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a classification or QA bundle (default: export a random tinybert-4l-312d)")
    parser.add_argument("--data-dir", default=os.environ.get("TINYBERT_DATA_DIR"), help="for int8-static calibration of the random student")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, default=20, help="timed warm runs per figure (median)")
    parser.add_argument("--out", type=Path, help="also write latency.json and latency.md here")
    parser.add_argument("--work", type=Path, help="keep the random student and its bundle here and reuse them on the next run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        work = args.work or Path(tmp)
        bundle = args.bundle or (work / "bundle" if (work / "bundle" / "bundle.json").is_file() else build_random_student(work, args.data_dir))
        rows = measure(bundle, args.threads, args.runs)
    text = table(rows, args.threads) + "\n\n" + "\n".join(targets(rows, args.threads))
    print(f"\nmedian warm latency, batch 1, {os.cpu_count()} CPUs, torch {torch.__version__}\n\n{text}")
    if args.out:
        from mobile_app.runtime.files import write_atomic

        write_atomic(args.out / "latency.json", json.dumps(rows, indent=2) + "\n")
        write_atomic(args.out / "latency.md", "```\n" + text + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
