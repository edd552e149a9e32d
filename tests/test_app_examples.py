"""The demo tasks' tap-to-run examples (their definitions' "examples", which their bundles carry) are real: each
appears word for word in the data set it claims."""
from __future__ import annotations

import json

from distill.tasks import demo_task_names, get_task

SENTIMENT = [e["text"] for e in get_task("sentiment").examples]
SPAM = [e["text"] for e in get_task("spam").examples]
QA = [(e["question"], e["context"]) for e in get_task("qa").examples]


def _squeezed(text: str) -> str:
    """Lower case without whitespace: PTB tokenization ("it 's ... .") and natural writing ("It's ....") agree."""
    return "".join(text.lower().split())


def test_sentiment_examples_are_sst2_dev_sentences_in_natural_writing(data_dir):
    sentences = {_squeezed(line.rsplit("\t", 1)[0]) for line in (data_dir / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]}
    assert {_squeezed(text) for text in SENTIMENT} <= sentences
    for text in SENTIMENT:  # written as a person would: a capital first, no space before punctuation
        assert text[0].isupper() and " ." not in text and " ," not in text and " '" not in text, text


def test_spam_examples_are_uci_messages_of_both_classes(data_dir):
    rows = dict(reversed(line.split("\t", 1)) for line in (data_dir / "sms_spam" / "SMSSpamCollection").read_text(encoding="utf-8").splitlines())
    assert all(text in rows for text in SPAM)
    assert {rows[text] for text in SPAM} == {"ham", "spam"}


def test_qa_examples_are_squad_dev_questions_with_their_passages(data_dir):
    squad = json.loads((data_dir / "squad_v1" / "dev-v1.1.json").read_text(encoding="utf-8"))
    pairs = {(qa["question"], p["context"]) for article in squad["data"] for p in article["paragraphs"] for qa in p["qas"]}
    assert set(QA) <= pairs
    assert demo_task_names() == ("sentiment", "spam", "qa")
    assert [get_task(name).title for name in demo_task_names()] == ["Sentiment", "Spam", "Question answering"]
