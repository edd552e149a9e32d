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
        pytest.skip(f"real data not found at {path}; set TINYBERT_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny_cls"), head="classification")


@pytest.fixture(scope="session")
def tiny_qa_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny_qa"), head="qa")
