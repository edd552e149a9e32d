"""A user's own task end to end: their files, columns and labels through distill, export, verify and the app.

The data is real text re-labelled by a rule each fixture states (slices of SQuAD v1.1 dev), the models tiny.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from distill.__main__ import main as distill_main
from export.__main__ import main as export_main
from mobile_app.runtime.errors import UserError
from tests.conftest import REPO_ROOT
from tests.tiny_models import make_tiny_bert

TINY = ["--student", "1x32x4x64", "--init", "random"]
LITERT = ["--runtimes", "ai-edge-litert-2.3"]
WH_WORDS = ("what", "who", "when", "how")


def _squad(data_dir: Path) -> list[dict]:
    from distill.data import read_squad

    return read_squad(data_dir / "squad_v1" / "dev-v1.1.json")


@pytest.fixture(scope="module")
def topics_files(data_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A 4-class CSV task, columns `text,topic`: a SQuAD question's topic is its first word (what/who/when/how);
    48 train and 12 eval questions per class, in file order."""
    by_word: dict[str, list[str]] = {word: [] for word in WH_WORDS}
    for example in _squad(data_dir):
        word = example["question"].split()[0].lower()
        if word in by_word and len(by_word[word]) < 60:
            by_word[word].append(example["question"].strip())
    root = tmp_path_factory.mktemp("topics")
    paths = root / "train.csv", root / "eval.csv"
    for path, part in zip(paths, (slice(0, 48), slice(48, 60))):
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "topic"])
            writer.writerows([text, word] for word in WH_WORDS for text in by_word[word][part])
    return paths


@pytest.fixture(scope="module")
def pairs_files(data_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A sentence-pair JSONL task, fields `question,sentence,label` (QNLI's rule): label `entailment` when the sentence
    of the question's passage holds its first answer, else `not_entailment`; one sentence of each kind per question."""
    rows = []
    for example in _squad(data_dir)[:400]:
        answer = example["answers"]["text"][0]
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", example["context"]) if s.strip()]
        holding = [s for s in sentences if answer in s]
        other = [s for s in sentences if answer not in s]
        if holding and other:
            rows.append({"question": example["question"], "sentence": holding[0], "label": "entailment"})
            rows.append({"question": example["question"], "sentence": other[0], "label": "not_entailment"})
    root = tmp_path_factory.mktemp("pairs")
    paths = root / "train.jsonl", root / "dev.jsonl"
    for path, part in zip(paths, (rows[:320], rows[320:400])):
        path.write_text("".join(json.dumps(row) + "\n" for row in part), encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_user_base"), head="base", layers=2)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("user_bundles")


def _parity(bundle: Path) -> dict:
    return json.loads((bundle / "parity.json").read_text())


@pytest.fixture(scope="module")
def topics_run(topics_files, tiny_base, bundles, tmp_path_factory):
    """`python -m export pipeline --task topics --train-file ... --eval-file ... --label-column topic` on a tiny teacher."""
    train, evaluation = topics_files
    code = export_main(["pipeline", "--task", "topics", "--train-file", str(train), "--eval-file", str(evaluation),
                        "--label-column", "topic", "--out", str(tmp_path_factory.mktemp("topics_run")), "--bundles", str(bundles),
                        "--teacher", str(tiny_base), *TINY, "--skip-coreml", "--precisions", "fp32", "int8-dynamic",
                        "--verify-max-examples", "48", *LITERT])
    return code, bundles / "topics"


def test_a_four_class_csv_task_goes_through_the_pipeline(topics_run):
    code, bundle = topics_run
    assert code == 0
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["task"] == "topics" and manifest["title"] == "Topics" and manifest["head"] == "classification"
    assert manifest["labels"] == sorted(WH_WORDS) and manifest["text_pair"] is False
    assert len(manifest["examples"]) == 6 and all(set(e) == {"text"} for e in manifest["examples"])
    first = [e["text"].split()[0].lower() for e in manifest["examples"][:4]]
    assert sorted(first) == sorted(WH_WORDS)  # one class at a time: the first four are one of each
    parity = _parity(bundle)
    assert parity["examples"] == 48 and parity["passed"]
    fp32 = next(row for row in parity["artifacts"] if row["precision"] == "fp32")
    assert fp32["agreement"] == 100.0


@pytest.fixture(scope="module")
def pairs_bundle(pairs_files, tiny_base, bundles, tmp_path_factory) -> Path:
    """distill -> export -> verify of the pair task, each through its own command; the columns are the user's."""
    train, evaluation = pairs_files
    out = tmp_path_factory.mktemp("pairs_run")
    assert distill_main(["run", "--task", "pairs", "--train-file", str(train), "--eval-file", str(evaluation),
                         "--text-column", "question", "--text-pair-column", "sentence", "--teacher", str(tiny_base), *TINY,
                         "--out", str(out), "--set", "teacher_epochs=1", "--set", "intermediate_epochs=1"]) == 0
    bundle = bundles / "pairs"
    assert export_main(["tflite", str(out / "student"), "--out", str(bundle), "--precisions", "fp32", "--buckets", "64", "128"]) == 0
    assert export_main(["verify", str(bundle), "--max-examples", "40", *LITERT]) == 0
    return bundle


def test_a_sentence_pair_jsonl_task_is_distilled_exported_and_verified(pairs_bundle):
    from mobile_app.runtime import load_task

    manifest = json.loads((pairs_bundle / "bundle.json").read_text())
    assert manifest["text_pair"] is True and manifest["labels"] == ["entailment", "not_entailment"]
    assert all(set(e) == {"text", "text_pair"} for e in manifest["examples"])
    assert _parity(pairs_bundle)["artifacts"][0]["agreement"] == 100.0
    runner = load_task(pairs_bundle)
    first = runner.run_example(manifest["examples"][0])
    types = first.inputs[0].token_type_ids
    assert 0 in types and 1 in types  # two segments, as BertTokenizerFast encodes a pair
    assert first.result.label in manifest["labels"]


def test_a_fine_tuned_model_is_exported_and_verified_as_it_is(topics_files, tmp_path):
    """No distillation: a BertForSequenceClassification with the user's 4 labels, its bundle named by its folder."""
    model = make_tiny_bert(tmp_path / "my_model", labels=("how", "what", "when", "who"), layers=2, seed=5)
    bundle = tmp_path / "bundles" / "question_type"
    assert export_main(["tflite", str(model), "--out", str(bundle), "--precisions", "fp32", "int8-dynamic", "--buckets", "32", "64"]) == 0
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["task"] == "question_type" and manifest["labels"] == ["how", "what", "when", "who"]
    assert export_main(["verify", str(bundle), "--eval-file", str(topics_files[1]), "--label-column", "topic", *LITERT]) == 0
    fp32 = next(row for row in _parity(bundle)["artifacts"] if row["precision"] == "fp32")
    assert fp32["agreement"] == 100.0 and fp32["examples"] == 48


def test_a_fine_tuned_distilbert_is_exported_and_verified_as_it_is(topics_files, tmp_path):
    """A DistilBERT classifier (no token type embeddings) with the user's 4 labels: the export wrapper answers as the HF
    model does, the files pass verify on every interpreter of the matrix, and the app's runner answers as PyTorch."""
    import torch

    from export.wrapper import ExportableBert, load_student
    from mobile_app.runtime import load_task
    from tests.tiny_models import make_tiny_distilbert

    labels = ("how", "what", "when", "who")
    model_dir = make_tiny_distilbert(tmp_path / "my_distilbert", labels=labels, seed=7)
    model = load_student(model_dir)
    wrapper = ExportableBert(model)
    ids, mask, types = wrapper.example_inputs(32, batch=2)
    with torch.no_grad():
        assert torch.allclose(wrapper(ids, mask, types), model(input_ids=ids.long(), attention_mask=mask.long()).logits, atol=1e-5)
    bundle = tmp_path / "bundles" / "question_type"
    assert export_main(["tflite", str(model_dir), "--out", str(bundle), "--precisions", "fp32", "int8-dynamic", "--buckets", "32", "64"]) == 0
    assert json.loads((bundle / "bundle.json").read_text())["labels"] == list(labels)
    assert export_main(["verify", str(bundle), "--eval-file", str(topics_files[1]), "--label-column", "topic", "--runtimes", "all"]) == 0
    rows = _parity(bundle)["artifacts"]
    fp32 = [row for row in rows if row["precision"] == "fp32"]
    assert len(fp32) == 4 and all(row["agreement"] == 100.0 and row["passed"] for row in fp32)
    runner = load_task(bundle, precision="fp32")
    question = "When did the Normans conquer England?"
    prediction, _ = runner.classify(question)
    encoding = runner.tokenizer.encode(question)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([encoding.input_ids]), attention_mask=torch.tensor([encoding.attention_mask])).logits[0]
    assert prediction.label == labels[int(logits.argmax())]


def test_a_distilbert_qa_model_answers_as_the_hf_model(tmp_path):
    import torch

    from export.wrapper import ExportableBert, load_student
    from tests.tiny_models import make_tiny_distilbert

    model = load_student(make_tiny_distilbert(tmp_path / "qa", head="qa", seed=3))
    wrapper = ExportableBert(model)
    assert wrapper.head == "qa"
    ids, mask, types = wrapper.example_inputs(48, batch=2)
    with torch.no_grad():
        start, end = wrapper(ids, mask, types)
        reference = model(input_ids=ids.long(), attention_mask=mask.long())
    assert torch.allclose(start, reference.start_logits, atol=1e-5) and torch.allclose(end, reference.end_logits, atol=1e-5)


def _demo_bundle(bundles: Path, task: str, head: str, labels, seed: int) -> None:
    from export.tflite import export_tflite

    student = make_tiny_bert(Path(tempfile.mkdtemp(prefix=f"tiny-{task}-")), head=head, labels=labels, layers=1, seed=seed)
    export_tflite(student, bundles / task, precisions=["fp32"], task=task, buckets=[128 if head == "qa" else 32], progress=False)


def test_the_app_shows_a_tab_for_every_bundle(topics_run, pairs_bundle, bundles, tmp_path):
    for seed, (task, head, labels) in enumerate((("sentiment", "classification", ("negative", "positive")),
                                                 ("spam", "classification", ("ham", "spam")), ("qa", "qa", ("negative", "positive")))):
        _demo_bundle(bundles, task, head, labels, seed)
    env = dict(os.environ, KIVY_HOME=tempfile.mkdtemp(prefix="kivy-home-"))
    done = subprocess.run([sys.executable, "-m", "mobile_app", "--bundles", str(bundles), "--screenshot", str(tmp_path)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["task"] for r in reports] == ["pairs", "sentiment", "spam", "topics", "qa"]  # classifiers, then QA, by name
    manifests = {r["task"]: json.loads((bundles / r["task"] / "bundle.json").read_text()) for r in reports}
    for report in reports:
        assert Path(report["png"]).stat().st_size > 5_000 and report["latency_ms"] > 0
        if manifests[report["task"]]["head"] == "classification":
            assert report["result"] in manifests[report["task"]]["labels"]


def _one_error(capsys, code: int, expected: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def _csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    path.write_text("\n".join(",".join(row) for row in rows) + "\n", encoding=encoding)
    return path


def test_bad_user_data_is_one_line_before_any_work(topics_files, tmp_path, capsys, tiny_base):
    train, evaluation = topics_files
    out = tmp_path / "out"
    run = ["run", "--task", "topics", "--out", str(out), "--teacher", str(tiny_base), *TINY]
    _one_error(capsys, distill_main(run + ["--train-file", str(train), "--eval-file", str(evaluation)]),
               "has no column 'label' (columns: text, topic); pass --label-column NAME")
    extra = _csv(tmp_path / "extra.csv", [["text", "topic"], ["Why is the sky blue?", "why"], ["What is it?", "what"]])
    _one_error(capsys, distill_main(run + ["--train-file", str(train), "--eval-file", str(extra), "--label-column", "topic"]),
               "label 'why' is not one of the task's labels (how, what, when, who)")
    _one_error(capsys, distill_main(run + ["--train-file", str(train), "--eval-file", str(extra), "--label-column", "topic",
                                           "--labels", "how", "what", "when", "who", "why"]), "label 'why' never occurs in the train data")
    single = _csv(tmp_path / "single.csv", [["text", "label"], ["What is it?", "what"], ["What else?", "what"]])
    _one_error(capsys, distill_main(run + ["--train-file", str(single)]), "every train example has label 'what'; a classifier needs at least 2 classes")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _one_error(capsys, distill_main(run + ["--train-file", str(empty)]), f"{empty} is empty")
    latin = _csv(tmp_path / "latin.csv", [["text", "label"], ["café crème", "a"], ["thé", "b"]], encoding="latin-1")
    _one_error(capsys, distill_main(run + ["--train-file", str(latin)]), "not UTF-8 text")
    teacher = make_tiny_bert(tmp_path / "sentiment_teacher", labels=("negative", "positive"))
    capsys.readouterr()
    _one_error(capsys, distill_main(["run", "--task", "topics", "--out", str(out), "--teacher", str(teacher), *TINY, "--train-file",
                                     str(train), "--eval-file", str(evaluation), "--label-column", "topic"]),
               "the teacher's labels are negative, positive but the train data has labels how, what, when, who")
    assert not out.exists()


def test_labels_by_index_and_a_dataset_folder_read_by_datasets(tmp_path):
    pytest.importorskip("datasets", reason="the `hub` extra (datasets) is installed by `make setup`")
    from distill.tasks import task_from_flags

    folder = tmp_path / "my_dataset"
    folder.mkdir()
    _csv(folder / "train.csv", [["sentence", "label"], ["a fine film", "1"], ["a dull film", "0"], ["great", "1"], ["awful", "0"]])
    _csv(folder / "validation.csv", [["sentence", "label"], ["fine", "1"], ["dull", "0"]])
    by_index = task_from_flags("reviews", train_file=folder / "train.csv", eval_file=folder / "validation.csv", labels=["bad", "good"])
    assert by_index.load()["eval"] == [{"text": "fine", "label": 1}, {"text": "dull", "label": 0}]
    assert task_from_flags("reviews", train_file=folder / "train.csv").resolved().labels == ("0", "1")
    hub = task_from_flags("reviews", dataset_name=str(folder), labels=["bad", "good"])
    splits = hub.load()
    assert splits["train"][0] == {"text": "a fine film", "label": 1} and len(splits["eval"]) == 2
    with pytest.raises(UserError, match="has no split 'test'"):
        task_from_flags("reviews", dataset_name=str(folder), eval_split="test", labels=["bad", "good"]).load()
