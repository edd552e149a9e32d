"""The device tokenizer on vocabularies other than the uncased English one the demo bundles ship: a cased vocabulary
trained on the real SMS messages, and a Chinese and Japanese one, each built here with `tokenizers`' WordPiece
trainer. On both, ids, type ids, masks and offsets must be those `tokenizers` gives with the same vocabulary."""
from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import BertWordPieceTokenizer

from mobile_app.runtime.tokenizer import WordPieceTokenizer
from tests.test_tokenizer import HARD_TEXTS, _assert_same

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

CHINESE = [
    "北京是中华人民共和国的首都，也是全国的政治和文化中心。", "今天天气很好，我们去公园散步吧！", "这部电影的故事情节非常感人，演员的表演也很出色。",
    "我不喜欢这家餐厅的服务，菜也太咸了。", "机器学习模型可以在手机上运行吗？", "长江是中国最长的河流，全长约六千三百公里。",
    "请问最近的地铁站怎么走？", "他在二〇二四年毕业于清华大学计算机系。", "价格：¥199（含税），限时优惠！", "繁體中文：臺灣的夜市很熱鬧。",
    "小明每天早上七点起床，然后跑步半小时。", "这个问题的答案是：没有答案。", "上海的外滩在晚上非常漂亮。", "我们需要更多的数据来训练这个模型。",
]
JAPANESE = [
    "東京は日本の首都です。", "今日はとても暑いですね。", "この映画は本当に面白かったです！", "私は毎朝コーヒーを飲みます。",
    "スマートフォンで動く小さなモデルを作りました。", "富士山は日本で一番高い山です。", "すみません、駅はどこですか？",
    "ひらがなとカタカナと漢字を混ぜて書きます。", "ﾊﾝｶｸｶﾀｶﾅ と 全角ＡＢＣ の テスト", "京都の秋の紅葉はとても美しい。",
    "明日は雨が降るでしょう。", "このレストランのラーメンは美味しくない。", "機械学習の勉強を始めました。", "二〇二四年に大阪で万博の準備が進んでいる。",
]
MIXED = ["Tokyo 東京 and Beijing 北京 in one line", "日本語とEnglishと中文が混ざった文", "서울 is not CJK for BERT: 한국어 텍스트",
         "ＡＢＣ１２３ fullwidth 全角", "emoji 😀 在 中文 里", "「引用」と『二重引用』", "𠀀𠮷 rare ideographs 𠮷野家"]


def _train(folder: Path, texts: list[str], lowercase: bool, vocab_size: int) -> Path:
    trainer = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=None, handle_chinese_chars=True, clean_text=True)
    trainer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIALS, show_progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    trainer.save_model(str(folder))
    return folder / "vocab.txt"


def _reference(vocab: Path, lowercase: bool) -> BertWordPieceTokenizer:
    return BertWordPieceTokenizer(str(vocab), lowercase=lowercase, strip_accents=None, handle_chinese_chars=True, clean_text=True)


def _sms_messages(data_dir: Path) -> list[str]:
    lines = (data_dir / "sms_spam" / "SMSSpamCollection").read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1] for line in lines if "\t" in line]


@pytest.mark.integration
def test_a_cased_vocabulary_trained_on_real_messages_tokenizes_as_tokenizers_does(data_dir, tmp_path):
    messages = _sms_messages(data_dir)
    vocab = _train(tmp_path / "cased", messages[:3000], lowercase=False, vocab_size=3000)
    words = set(vocab.read_text(encoding="utf-8").split())
    assert {"Free", "free"} <= words or {"You", "you"} <= words  # really cased: both spellings are entries
    ours, ref = WordPieceTokenizer.from_vocab(vocab, do_lower_case=False), _reference(vocab, lowercase=False)
    texts = messages + HARD_TEXTS  # every message, the 2,574 unseen ones included, and the hard corpus
    for text, expected in zip(texts, ref.encode_batch(texts)):
        _assert_same(ours.encode(text), expected, text)
    assert ours.encode("Free").input_ids != ours.encode("free").input_ids


def test_a_chinese_and_japanese_vocabulary_tokenizes_as_tokenizers_does(tmp_path):
    corpus = CHINESE + JAPANESE + MIXED
    vocab = _train(tmp_path / "cjk", corpus * 3, lowercase=False, vocab_size=800)
    ours, ref = WordPieceTokenizer.from_vocab(vocab, do_lower_case=False), _reference(vocab, lowercase=False)
    texts = corpus + HARD_TEXTS + ["".join(CHINESE), " ".join(JAPANESE)]
    for text, expected in zip(texts, ref.encode_batch(texts)):
        _assert_same(ours.encode(text), expected, text)
    # BERT splits every CJK ideograph into its own token, not kana: both must hold on the device too
    assert ours.tokenize("北京") == ["北", "京"]
    assert len(ours.tokenize("カタカナ")) < 4
    # the same vocabulary, lower-cased: still identical (lower-casing and accent stripping touch the Latin parts)
    ours_lower, ref_lower = WordPieceTokenizer.from_vocab(vocab, do_lower_case=True), _reference(vocab, lowercase=True)
    for text, expected in zip(texts, ref_lower.encode_batch(texts)):
        _assert_same(ours_lower.encode(text), expected, text)
