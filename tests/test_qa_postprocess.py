"""QA windows match HF's overflowing fast-tokenizer encoding; best_span matches HF's postprocess_qa_predictions, and
its answers are widened to whole words as the transformers 4 QA pipeline's `align_to_words` does."""
from __future__ import annotations

import math

import numpy as np
import pytest

from distill.tasks import get_task
from mobile_app.runtime.qa import NO_ANSWER, Answer, best_span, bundle_windows, fitted_stride, make_windows, window_spans, word_spans

SHAPES = [(384, 128, 64), (128, 32, 64), (64, 16, 16)]  # (max_seq_length, doc_stride, max_query_length)


@pytest.fixture(scope="module")
def squad(data_dir) -> list[dict]:
    """60 real SQuAD examples, longest contexts first among a seeded sample, so many need several windows."""
    examples = get_task("qa").load(data_dir)["eval"]
    rng = np.random.default_rng(0)
    chosen = [examples[i] for i in rng.choice(len(examples), 200, replace=False)]
    return sorted(chosen, key=lambda e: -len(e["context"]))[:60]


def hf_windows(hf, question, context, max_length, stride, max_query_length):
    """The reference: HF fast tokenizer overflow, question pre-cut to max_query_length tokens, offsets only on context."""
    q = hf(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(q["input_ids"]) > max_query_length:  # cut the text after its last kept token
        question = question[:q["offset_mapping"][max_query_length - 1][1]]
        assert hf(question, add_special_tokens=False)["input_ids"] == q["input_ids"][:max_query_length]
    enc = hf(question, context, truncation="only_second", max_length=max_length, stride=stride,
             return_overflowing_tokens=True, return_offsets_mapping=True, return_token_type_ids=True)
    windows = []
    for i, ids in enumerate(enc["input_ids"]):
        seq = enc.sequence_ids(i)
        offsets = [tuple(o) if seq[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][i])]
        windows.append((ids, enc["token_type_ids"][i], offsets))
    return windows


def hf_postprocess(all_offsets, start_logits, end_logits, context, n_best=20, max_answer_length=30) -> tuple[int, int]:
    """HF examples' postprocess_qa_predictions for one example (no null answer), reimplemented: the (start, end)
    characters of the best token span ((0, 0) when none)."""
    prelim = []
    for offsets, starts, ends in zip(all_offsets, start_logits, end_logits):
        for s in np.argsort(starts)[-1:-n_best - 1:-1].tolist():
            for e in np.argsort(ends)[-1:-n_best - 1:-1].tolist():
                if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                    continue
                if e < s or e - s + 1 > max_answer_length:
                    continue
                prelim.append({"offsets": (offsets[s][0], offsets[e][1]), "score": starts[s] + ends[e]})
    best = sorted(prelim, key=lambda x: x["score"], reverse=True)[:n_best]
    return best[0]["offsets"] if best else (0, 0)


def hf_align_to_words(hf, context: str, start_char: int, end_char: int) -> str:
    """The transformers 4 QA pipeline's align_to_words: the start token's word start to the end token's word end
    (`word_to_chars(token_to_word(i))`), read from HF's encoding of the whole context, so a word cut by a window
    edge is widened to all of it (the pipeline, reading the window's own encoding, stops at the edge)."""
    enc = hf(context, add_special_tokens=False, return_offsets_mapping=True)
    first = next(i for i, o in enumerate(enc["offset_mapping"]) if o[0] == start_char)
    last = next(i for i, o in enumerate(enc["offset_mapping"]) if o[1] == end_char)
    return context[enc.word_to_chars(enc.token_to_word(first)).start:enc.word_to_chars(enc.token_to_word(last)).end]


@pytest.mark.integration
@pytest.mark.parametrize("shape", SHAPES)
def test_windows_match_hf_overflow(ours, hf, squad, shape):
    max_length, stride, max_query = shape
    several = 0
    for ex in squad:
        got = make_windows(ours, ex["question"], ex["context"], max_length, stride, max_query)
        ref = hf_windows(hf, ex["question"], ex["context"], max_length, stride, max_query)
        assert [(w.input_ids, w.token_type_ids, w.offsets) for w in got] == ref, ex["id"]
        for w in got:
            assert w.offsets[w.context_start] is not None and w.offsets[w.context_start - 1] is None
            assert w.attention_mask == [1] * len(w) and len(w) <= max_length
        several += len(got) > 1
    assert several >= 10  # the stride logic was really exercised


@pytest.mark.integration
@pytest.mark.parametrize("shape", SHAPES[:2])
def test_best_span_matches_hf_postprocess_on_random_logits(ours, hf, squad, shape):
    max_length, stride, max_query = shape
    rng = np.random.default_rng(1)
    snapped = 0
    for ex in squad:
        windows = make_windows(ours, ex["question"], ex["context"], max_length, stride, max_query)
        # Logits over the padded bucket, as a backend that did not trim would give them.
        starts = [rng.normal(size=max_length).astype(np.float32) for _ in windows]
        ends = [rng.normal(size=max_length).astype(np.float32) for _ in windows]
        start_char, end_char = hf_postprocess([w.offsets for w in windows], starts, ends, ex["context"])
        tokens = best_span(windows, starts, ends, ex["context"], align_to_words=False)
        assert tokens.text == ex["context"][start_char:end_char], ex["id"]
        got = best_span(windows, starts, ends, ex["context"])
        assert got.text == hf_align_to_words(hf, ex["context"], start_char, end_char), ex["id"]
        assert got.score == tokens.score and got.start_char <= tokens.start_char and got.end_char >= tokens.end_char
        snapped += got.text != tokens.text
        assert ex["context"][got.start_char:got.end_char] == got.text and math.isfinite(got.score)
        trimmed = best_span(windows, [s[:len(w)] for s, w in zip(starts, windows)], [e[:len(w)] for e, w in zip(ends, windows)], ex["context"])
        assert trimmed == got
    assert snapped >= 5  # random logits often pick a word piece: the widening was really exercised


@pytest.mark.integration
def test_word_spans_match_hf_words(ours, hf, squad):
    for ex in squad[:30]:
        ids, offsets, words = ours.encode_words(ex["context"])
        enc = hf(ex["context"], add_special_tokens=False, return_offsets_mapping=True)
        assert ids == enc["input_ids"] and offsets == [tuple(o) for o in enc["offset_mapping"]]
        expected = [tuple(enc.word_to_chars(w)) for w in enc.word_ids()]
        assert word_spans(offsets, words) == expected, ex["id"]


def test_answer_cut_inside_a_word_is_widened_to_whole_words(ours):
    context = "Water boils at 100 degrees Celsius at sea level. The Eiffel Tower was completed in 1889."
    windows = make_windows(ours, "At what temperature does water boil?", context, 64, 16, 16)
    offsets = windows[0].offsets
    pieces = [ours.convert_ids_to_tokens(i) for i in windows[0].input_ids]
    assert {"ce", "##ls", "##ius", "e", "##iff", "##el"} <= set(pieces)  # both words really are split into pieces
    def logits_for(start_at: int, end_at: int):
        starts, ends = np.zeros(len(offsets), np.float32), np.zeros(len(offsets), np.float32)
        starts[next(i for i, o in enumerate(offsets) if o and o[0] == start_at)] = 5.0
        ends[next(i for i, o in enumerate(offsets) if o and o[1] == end_at)] = 4.0
        return [starts], [ends]
    # the end token is the first piece of "Celsius" ("ce"): the user sees the whole word
    cut = context.index("Celsius") + len("ce")
    answer = best_span(windows, *logits_for(context.index("100"), cut), context)
    assert answer.text == "100 degrees Celsius"
    assert best_span(windows, *logits_for(context.index("100"), cut), context, align_to_words=False).text == context[context.index("100"):cut]
    # the start token is a later piece of "Eiffel": widened back to the word's first letter
    eiffel = windows[0].words[next(i for i, o in enumerate(offsets) if o and o[0] == context.index("Eiffel"))]
    later_piece = next(o for o in offsets if o and eiffel[0] < o[0] < eiffel[1])
    answer = best_span(windows, *logits_for(later_piece[0], context.index("completed") + len("completed")), context)
    assert answer.text == "Eiffel Tower was completed" and answer.start_char == context.index("Eiffel")


def test_answer_keeps_original_spacing_and_case(ours):
    context = "Built in 1889, the  Eiffel\tTower stands in PARIS."
    windows = make_windows(ours, "What stands in Paris?", context, 64, 16, 16)
    offsets = windows[0].offsets
    start = offsets.index(next(o for o in offsets if o and o[0] == context.index("Eiffel")))
    end = offsets.index(next(o for o in offsets if o and o[1] == context.index("Tower") + 5))
    starts, ends = np.zeros(len(offsets), np.float32), np.zeros(len(offsets), np.float32)
    starts[start], ends[end] = 5.0, 4.0
    answer = best_span(windows, [starts], [ends], context)
    assert answer == Answer("Eiffel\tTower", context.index("Eiffel"), context.index("Tower") + 5, 9.0)


def test_no_valid_span_gives_empty_answer(ours):
    windows = make_windows(ours, "Where?", "", 64, 16, 16)
    assert len(windows) == 1 and windows[0].input_ids == [101, ours.vocab["where"], 1029, 102, 102]
    assert best_span(windows, [np.ones(5)], [np.ones(5)], "") == NO_ANSWER
    windows = make_windows(ours, "q", "one two three", 64, 16, 16)
    n = len(windows[0])
    # The only high logits put the end before the start: nothing valid in the top 1.
    starts, ends = np.zeros(n), np.zeros(n)
    starts[n - 2], ends[windows[0].context_start] = 9, 9
    assert best_span(windows, [starts], [ends], "one two three", n_best=1) == NO_ANSWER
    assert not NO_ANSWER.found and NO_ANSWER.text == ""


def test_long_question_is_cut_and_short_length_refused(ours):
    question = "why " * 200
    windows = make_windows(ours, question, "because " * 300, 128, 32, 20)
    assert all(w.context_start == 1 + 20 + 1 for w in windows)
    with pytest.raises(ValueError, match="doc_stride"):
        make_windows(ours, question, "because", 32, 16, 20)


def test_window_spans_and_fitted_stride():
    assert window_spans(0, 10, 4) == [(0, 0)]
    assert window_spans(10, 10, 4) == [(0, 10)]
    assert window_spans(11, 10, 4) == [(0, 10), (6, 11)]
    assert window_spans(25, 10, 4) == [(0, 10), (6, 16), (12, 22), (18, 25)]
    assert fitted_stride(384, 128, 64) == (128, 64)
    assert fitted_stride(128, 128, 64) == (32, 32)


def test_bundle_windows_use_manifest_settings(ours):
    settings = {"max_seq_length": 384, "doc_stride": 128, "max_query_length": 64}
    context = "word " * 800
    assert bundle_windows(ours, "q?", context, settings) == make_windows(ours, "q?", context, 384, 128, 64)
    assert bundle_windows(ours, "q?", context, settings, 128) == make_windows(ours, "q?", context, 128, 32, 32)


@pytest.mark.integration
def test_distill_eval_answers_as_the_phone_does(ours, hf, squad):
    """distill's QA F1 scores the answers the app shows: the same windows, word spans and span search."""
    from distill.features import qa_answers, qa_eval_features

    examples = squad[:20]
    inputs, windows = qa_eval_features(hf, examples, 128, 32, 64)
    rng = np.random.default_rng(2)
    starts = rng.normal(size=(len(inputs), 128)).astype(np.float32)
    ends = rng.normal(size=(len(inputs), 128)).astype(np.float32)
    answers = qa_answers(examples, windows, starts, ends, max_answer_length=30)
    for index, ex in enumerate(examples):
        rows = [r for r, (example, _) in enumerate(windows) if example == index]
        phone = make_windows(ours, ex["question"], ex["context"], 128, 32, 64)
        assert [w.input_ids for w in phone] == [inputs[r]["input_ids"][:len(w)] for r, w in zip(rows, phone)]
        assert [w.words for w in phone] == [windows[r][1].words[:len(w)] for r, w in zip(rows, phone)]
        assert answers[ex["id"]] == best_span(phone, starts[rows], ends[rows], ex["context"]).text


@pytest.mark.integration
def test_eval_logits_in_length_order_equal_each_window_run_alone(tiny_qa_dir, hf, squad):
    """distill's evaluation batches windows of similar length, padded to the batch's longest: each window's logits must
    be the ones it gets alone, and its padding PAD_LOGIT, which the span search never picks."""
    import torch
    from transformers import BertForQuestionAnswering

    from distill.evaluate import predict_logits
    from distill.features import PAD_LOGIT, qa_eval_features
    from distill.trainer import make_accelerator

    model = BertForQuestionAnswering.from_pretrained(tiny_qa_dir).eval()
    inputs, _ = qa_eval_features(hf, squad[:12], 128, 32, 64)
    lengths = [len(row["input_ids"]) for row in inputs]
    assert len(set(lengths)) > 3 and lengths != sorted(lengths)  # windows of many lengths, not in length order
    start, end = predict_logits(make_accelerator(), model, inputs, 4, "eval", hf.pad_token_id)
    assert start.shape == end.shape == (len(inputs), max(lengths))
    with torch.no_grad():
        for row, (features, n) in enumerate(zip(inputs, lengths)):
            alone = model(**{k: torch.tensor([v]) for k, v in features.items()})
            assert np.allclose(start[row, :n], alone.start_logits[0].numpy(), atol=1e-5)
            assert np.allclose(end[row, :n], alone.end_logits[0].numpy(), atol=1e-5)
            assert (start[row, n:] == PAD_LOGIT).all() and (end[row, n:] == PAD_LOGIT).all()


@pytest.mark.integration
def test_qa_is_scored_on_the_windows_the_app_runs_whatever_the_training_length(tiny_qa_dir, hf, squad):
    """F1 comes from the task's 384-token windows (stride 128), as the bundle runs them, not from max_seq_length."""
    import dataclasses

    from transformers import BertForQuestionAnswering

    from distill import metrics
    from distill.evaluate import evaluate, predict_logits
    from distill.features import qa_answers, qa_eval_features
    from distill.settings import settings_for
    from distill.trainer import make_accelerator

    task, accelerator = get_task("qa"), make_accelerator()
    model = BertForQuestionAnswering.from_pretrained(tiny_qa_dir).eval()
    examples = squad[:30]
    quick = settings_for(task, "quick")
    scores = [evaluate(accelerator, model, task, hf, examples, dataclasses.replace(quick, max_seq_length=length)) for length in (128, 256)]
    assert scores[0] == scores[1]
    inputs, windows = qa_eval_features(hf, examples, task.max_seq_length, task.doc_stride, task.max_query_length)
    start, end = predict_logits(accelerator, model, inputs, 8, "eval", hf.pad_token_id)
    assert scores[0] == metrics.squad_scores(qa_answers(examples, windows, start, end, quick.max_answer_length), examples)
