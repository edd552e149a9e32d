"""Each TFLite artifact of a classification bundle under each interpreter: top-1 agreement with PyTorch on SST-2
dev (or the bundle task's dev split), accuracy, median latency, or the backend's one-line refusal.

The interpreters are Python environments given by their python (the app's runtime runs inside each one through
its classify path); the PyTorch reference runs here on the same token ids.

    python benchmarks/bench_tflite_runtimes.py --bundle bundles/sentiment --student STUDENT_DIR \
        --python ai-edge-litert=.venv/bin/python --python tflite-runtime-2.14=.venv-tflite214/bin/python \
        --python tflite-runtime-2.13=.venv-tflite213/bin/python --python tf-2.8=.venv-tf28/bin/python --limit 200
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]

_CLASSIFY = r"""
import json, sys, time
from mobile_app.runtime import load_task
from mobile_app.runtime.bundle import BundleError
bundle, texts = sys.argv[1], json.load(open(sys.argv[2]))
out = {}
for entry in json.load(open(bundle + "/bundle.json"))["artifacts"]:
    if entry["format"] != "tflite":
        continue
    try:
        runner = load_task(bundle, precision=entry["precision"])
    except BundleError as error:
        out[entry["precision"]] = {"refused": str(error)}
        continue
    labels, ms = [], []
    for text in texts:
        prediction, latency = runner.classify(text)
        labels.append(prediction.index)
        ms.append(latency)
    out[entry["precision"]] = {"labels": labels, "median_ms": sorted(ms)[len(ms) // 2], "size_mb": entry["size_bytes"] / 1e6}
print(json.dumps(out))
"""


def torch_labels(student: Path, bundle: Path, texts: list[str]) -> list[int]:
    from export.verify.torch_reference import TorchRunner
    from export.wrapper import ExportableBert, load_student
    from mobile_app.runtime import TaskRunner, load_task

    runner = load_task(bundle, precision="fp32")
    reference = TaskRunner(bundle, runner.manifest, runner.tokenizer,
                           TorchRunner(ExportableBert(load_student(student)), runner.backend.buckets, runner.tokenizer.pad_id))
    return [reference.run_example({"text": text}).result.index for text in texts]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--student", type=Path, required=True, help="the PyTorch model the bundle was exported from")
    parser.add_argument("--python", action="append", required=True, metavar="NAME=PATH", help="an interpreter environment")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TINYBERT_DATA_DIR", REPO_ROOT.parent / "shared" / "data")))
    parser.add_argument("--limit", type=int, default=872)
    args = parser.parse_args(argv)
    with open(args.data_dir / "sst2" / "dev.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[: args.limit]
    texts, gold = [r["sentence"] for r in rows], [int(r["label"]) for r in rows]
    reference = torch_labels(args.student, args.bundle, texts)
    texts_file = args.bundle.parent / f".{args.bundle.name}.bench_texts.json"
    texts_file.write_text(json.dumps(texts))
    print(f"{len(texts)} SST-2 dev sentences; PyTorch accuracy {100 * np.mean(np.equal(reference, gold)):.2f}%")
    print(f"{'interpreter':<22} {'precision':<13} {'size MB':>8} {'agree %':>8} {'acc %':>7} {'median ms':>10}")
    try:
        for spec in args.python:
            name, python = spec.split("=", 1)
            done = subprocess.run([python, "-c", _CLASSIFY, str(args.bundle), str(texts_file)], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
            if done.returncode != 0:
                print(f"{name:<22} failed: {done.stderr.strip().splitlines()[-1]}")
                continue
            for precision, got in json.loads(done.stdout.strip().splitlines()[-1]).items():
                if "refused" in got:
                    print(f"{name:<22} {precision:<13} refused: {got['refused']}")
                    continue
                agree = 100 * np.mean(np.equal(got["labels"], reference))
                accuracy = 100 * np.mean(np.equal(got["labels"], gold))
                print(f"{name:<22} {precision:<13} {got['size_mb']:>8.1f} {agree:>8.2f} {accuracy:>7.2f} {got['median_ms']:>10.1f}")
    finally:
        texts_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
