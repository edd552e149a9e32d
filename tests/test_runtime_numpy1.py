"""The on-device runtime under numpy 1.x and on aarch64: the same answers in every side runtime's environment as in the main one.

kivy-ios ships numpy 1.24 and python-for-android builds TFLite 2.8 on Python 3.10, so mobile_app.runtime must
not need numpy 2 or Python 3.11. tests/runtime_probe.py runs the tokenizer, QA windows and span search,
classification, padding and `load_task` on real bundles (each environment's own interpreter) and this test
requires the answers of every side environment (numpy 1.x) to equal the main environment's (numpy 2), which
tests/test_tokenizer*.py, tests/test_qa_postprocess.py and tests/test_runtime.py check against the references.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from export.verify.runtimes import BY_NAME, worker_env
from tests.conftest import REPO_ROOT, side_runtime
from tests.test_tokenizer import HARD_TEXTS

PROBE = REPO_ROOT / "tests" / "runtime_probe.py"
# every side environment; of the emulated aarch64 ones, one per interpreter release (their CPU models run the same Python)
SIDE_RUNTIMES = [name for name, runtime in BY_NAME.items() if runtime.env is not None and not runtime.emulated]
ARM64_RUNTIMES = list({(r.package, r.version): name for name, r in reversed(BY_NAME.items()) if r.emulated}.values())


def _probe(command, request_path, extra_env: dict | None = None) -> dict:
    argv = [str(command)] if not isinstance(command, list) else command
    done = subprocess.run([*argv, str(PROBE), str(request_path)], capture_output=True, text=True, env=worker_env(extra_env), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probe_request(tiny_tflite_bundle, tiny_qa_tflite_bundle, data_dir, tmp_path_factory):
    from distill.tasks import get_task

    squad = get_task("qa").load(data_dir)["eval"][:6] + [{"question": "what?", "context": "word " * 300}]
    sms = [ex["text"] for ex in get_task("spam").load(data_dir)["eval"][:60]]
    request = {"vocab": str(tiny_tflite_bundle / "vocab.txt"), "texts": HARD_TEXTS + sms,
               "pairs": [[a, b] for a, b in zip(HARD_TEXTS, reversed(HARD_TEXTS))],
               "squad": [{"question": ex["question"], "context": ex["context"]} for ex in squad],
               "logits": [[0.1, 2.0, -1.0], [5.0, 5.0 + 1e-9, 0.0], [-1e4, 0.0, 1e4]],
               "bundle": str(tiny_tflite_bundle), "qa_bundle": str(tiny_qa_tflite_bundle)}
    path = tmp_path_factory.mktemp("probe") / "request.json"
    path.write_text(json.dumps(request), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def main_answers(probe_request):
    return _probe(sys.executable, probe_request)


@pytest.mark.parametrize("name", SIDE_RUNTIMES + ARM64_RUNTIMES)
def test_runtime_gives_the_same_answers_under_numpy_1_and_on_aarch64(name, probe_request, main_answers):
    """Side environments run numpy 1.x; the emulated aarch64 ones run the phone's CPU architecture (numpy as its wheel)."""
    runtime = side_runtime(name)
    got = _probe(runtime.command(), probe_request, runtime.python_env())
    assert main_answers["numpy"].startswith("2.") and (runtime.emulated or got["numpy"].startswith("1."))
    assert got["machine"] == ("aarch64" if runtime.emulated else main_answers["machine"])
    for key in ("texts", "pairs", "windows", "spans", "classify", "pad", "answers", "qa_windows"):
        assert got[key] == main_answers[key], f"{key} differs under numpy {got['numpy']} ({name})"
    for ours, theirs in zip(main_answers["softmax"], got["softmax"]):
        assert ours == pytest.approx(theirs, abs=1e-12)
    assert len(got["task"]) == len(main_answers["texts"])
    for (label, probabilities), (their_label, theirs) in zip(main_answers["task"], got["task"]):
        assert label == their_label and probabilities == pytest.approx(theirs, abs=1e-5)
