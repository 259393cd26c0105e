import pytest

from disco_core.conversation import ConversationFormatter, conversation_segments

HISTORY = [
    {"speaker": "user", "text": "tell me about the varnholt bridge"},
    {"speaker": "agent", "text": "It crosses the Meer and was finished in 1851 by the engineer Ada Brenn."},
    {"speaker": "user", "text": "who designed it?"},
    {"speaker": "agent", "text": "Ada Brenn designed it."},
]


def test_newest_first_with_the_previous_answer_only():
    text = ConversationFormatter()("when was it built?", HISTORY)
    assert text == ("when was it built? [SEP] Ada Brenn designed it. [SEP] who designed it? "
                    "[SEP] tell me about the varnholt bridge")


def test_answer_modes():
    assert [s.text for s in conversation_segments("q3", HISTORY, "all")] == [
        "q3", "Ada Brenn designed it.", "who designed it?", HISTORY[1]["text"], HISTORY[0]["text"]]
    assert [s.text for s in conversation_segments("q3", HISTORY, "none")] == [
        "q3", "who designed it?", HISTORY[0]["text"]]
    assert [s.text for s in conversation_segments("first", [], "last")] == ["first"]
    with pytest.raises(ValueError):
        conversation_segments("q", HISTORY, "some")


def test_truncation_drops_the_oldest_turns_first(encoder):
    tok = encoder.tokenizer
    full = ConversationFormatter(tok, 512)("when was it built?", HISTORY)
    assert full.endswith("tell me about the varnholt bridge")
    n_full = len(tok(full)["input_ids"])
    shorter = ConversationFormatter(tok, n_full - 1)("when was it built?", HISTORY)
    assert shorter == "when was it built? [SEP] Ada Brenn designed it. [SEP] who designed it?"
    for max_length in range(8, n_full + 2):
        text = ConversationFormatter(tok, max_length)("when was it built?", HISTORY)
        assert text.startswith("when was it built?")
        if max_length >= 8:  # the current turn (6 tokens + [CLS]/[SEP]) always fits here
            assert len(tok(text)["input_ids"]) <= max_length


def test_long_previous_answer_is_cut_not_dropped(encoder):
    history = [{"speaker": "user", "text": "what is it?"}, {"speaker": "agent", "text": "word " * 300}]
    text = ConversationFormatter(encoder.tokenizer, 64)("and then?", history)
    parts = text.split(" [SEP] ")
    assert parts[0] == "and then?" and parts[2] == "what is it?"
    assert parts[1].startswith("word word") and len(encoder.tokenizer(text)["input_ids"]) <= 64
