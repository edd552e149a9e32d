"""Loaders on the real files: counts, labels, stable splits, and one-line errors on bad input."""
from __future__ import annotations

import re

import pytest

from distill import data
from mobile_app.runtime.errors import UserError
from distill.metrics import squad_scores
from distill.tasks import get_task, task_from_flags


def test_sst2_counts_and_labels(data_dir):
    splits = get_task("sentiment").load(data_dir)
    assert len(splits["train"]) == 67349 and len(splits["eval"]) == 872
    assert sum(e["label"] for e in splits["eval"]) == 444


def test_spam_split_is_stratified_and_stable(data_dir):
    first = get_task("spam").load(data_dir)
    second = get_task("spam").load(data_dir)
    assert first == second
    sizes = {k: len(v) for k, v in first.items()}
    assert sum(sizes.values()) == 5574
    spam_share = [sum(e["label"] for e in split) / len(split) for split in first.values()]
    assert max(spam_share) - min(spam_share) < 0.01
    assert sizes["eval"] == 556


def test_qa_split_by_article_is_stable_and_disjoint(data_dir):
    splits = get_task("qa").load(data_dir)
    assert len(splits["train"]) + len(splits["eval"]) == 10570
    assert not {e["title"] for e in splits["train"]} & {e["title"] for e in splits["eval"]}
    assert splits == get_task("qa").load(data_dir)
    assert len(splits["eval"]) >= 500


def test_squad_metric_matches_official_normalisation():
    examples = [{"id": "a", "answers": {"text": ["The Eiffel Tower", "Eiffel"]}}, {"id": "b", "answers": {"text": ["1889"]}}]
    scores = squad_scores({"a": "eiffel tower!", "b": "in 1889 it"}, examples)
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(100 * (1.0 + 0.5) / 2)


@pytest.mark.parametrize("content, message", [
    ("sentence\tlabel\nfine movie \t1\nbad\n", ":3: expected 2 tab-separated columns"),
    ("sentence\tlabel\ngreat \t7\n", "label '7' is not one of the task's labels (negative, positive)"),
    ("sentence\tscore\nx\t1\n", "has no column 'label' (columns: sentence, score); pass --label-column NAME"),
    ("", "is empty"),
    ("sentence\tlabel\n", "holds no examples"),
])
def test_malformed_sst2_names_file_and_line(tmp_path, data_dir, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(UserError, match=re.escape(message)) as error:
        task_from_flags("sentiment", train_file=data_dir / "sst2" / "dev.tsv", eval_file=path).load()
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_rows_with_empty_text_are_skipped_and_counted_in_one_line(tmp_path, data_dir, capsys):
    path = tmp_path / "dev.tsv"
    path.write_text("sentence\tlabel\na fine film \t1\n \t0\n\t1\na dull film \t0\n", encoding="utf-8")
    splits = task_from_flags("sentiment", train_file=data_dir / "sst2" / "dev.tsv", eval_file=path).load()
    assert splits["eval"] == [{"text": "a fine film", "label": 1}, {"text": "a dull film", "label": 0}]
    assert capsys.readouterr().out.strip() == f"note: skipped 2 rows of {path} with empty text"


def test_missing_file_and_unknown_task(tmp_path):
    with pytest.raises(UserError, match="not found"):
        data.read_table(tmp_path / "nope.tsv")
    with pytest.raises(UserError, match="unknown task 'ner'"):
        get_task("ner")
