"""Shared fixtures: the real data directory and tiny random models."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Real datasets: $TINYBERT_DATA_DIR, else ../shared/data beside the repo (read-only)."""
    path = Path(os.environ.get("TINYBERT_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if not (path / "sst2" / "dev.tsv").is_file():
        message = f"real data not found at {path}; set TINYBERT_DATA_DIR"
        if os.environ.get("CI", "").lower() == "true":  # CI has the data: a missing folder is a broken run, not a skip
            pytest.fail(message + " (CI=true runs every test on the real data)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny_cls"), head="classification")


@pytest.fixture(scope="session")
def tiny_spam_dir(tmp_path_factory) -> Path:
    """A tiny ready spam teacher: a classifier with the spam task's labels."""
    from tests.tiny_models import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny_spam"), head="classification", labels=("ham", "spam"))


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    """A tiny BERT encoder without a task head: a teacher whose head a run fine-tunes."""
    from tests.tiny_models import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny_base"), head="base")


@pytest.fixture(scope="session")
def tiny_qa_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny_qa"), head="qa")


# TFLite bundles of the tiny models, converted once per session (conversion is the slow part). Tests that
# change a bundle copy it first: these stay pristine.
TINY_BUCKETS = (16, 32)
TINY_QA_BUCKETS = (64, 128)


@pytest.fixture(scope="session")
def tiny_tflite_bundle(tiny_classifier_dir, data_dir, tmp_path_factory) -> Path:
    """Sentiment bundle of the tiny classifier for LiteRT (`--min-runtime litert`, the profile that has every precision):
    fp32, fp16, int8-dynamic, int8-static, buckets 16/32."""
    from export.tflite import export_tflite

    out = tmp_path_factory.mktemp("tflite_cls") / "sentiment"
    export_tflite(tiny_classifier_dir, out, precisions=("fp32", "fp16", "int8-dynamic", "int8-static"), task="sentiment",
                  data_dir=data_dir, buckets=TINY_BUCKETS, calibration_examples=24, progress=False, min_runtime="litert")
    return out


@pytest.fixture(scope="session")
def tiny_qa_tflite_bundle(tiny_qa_dir, data_dir, tmp_path_factory) -> Path:
    """QA bundle of the tiny QA model: fp32 and int8-dynamic, buckets 64/128."""
    from export.tflite import export_tflite

    out = tmp_path_factory.mktemp("tflite_qa") / "qa"
    export_tflite(tiny_qa_dir, out, precisions=("fp32", "int8-dynamic"), task="qa", data_dir=data_dir,
                  buckets=TINY_QA_BUCKETS, progress=False)
    return out


@pytest.fixture(scope="module")
def ours():
    """The on-device WordPiece tokenizer over the real uncased vocab."""
    from mobile_app.runtime.tokenizer import WordPieceTokenizer
    from tests.tiny_models import teacher_base_dir

    return WordPieceTokenizer.from_vocab(teacher_base_dir() / "vocab.txt")


@pytest.fixture(scope="module")
def hf():
    """Hugging Face's fast BERT tokenizer over the same vocab: the reference the on-device one must match.

    Module-scoped: some tests switch truncation on its backend, which must not leak into other modules."""
    from transformers import BertTokenizerFast

    from tests.tiny_models import teacher_base_dir

    return BertTokenizerFast(vocab=str(teacher_base_dir() / "vocab.txt"), do_lower_case=True)


def side_runtime(name: str):
    """The installed runtime `name` (export/verify/runtimes.py); skips when `make setup` could not install it here,
    fails under CI=true, where every runtime must be installed."""
    from export.verify.runtimes import get_runtime, is_installed

    runtime = get_runtime(name)
    if not is_installed(runtime):
        message = f"runtime {name} ({runtime.label}) is not installed in {runtime.env_dir()}; run `make setup`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI installs every runtime)")
        pytest.skip(message)
    return runtime
