import pytest

from engine.sim.tokens import (
    IMAGE_TOKENS,
    ChatMessage,
    ImagePart,
    TextPart,
    chat_prompt_tokens,
    synthetic_completion,
    tokenize,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("Hello world", ["Hello", " world"]),  # a word takes the space before it along
        ("tokenisation", ["tokeni", "sation"]),  # letters come in runs of at most six
        ("12345", ["123", "45"]),  # digits in runs of at most three
        ("Hi, you!", ["Hi", ",", " you", "!"]),  # punctuation is one token per character
        ("a  b\n", ["a", "  ", "b", "\n"]),  # other whitespace runs are a token each
        ("snake_case", ["snake", "_", "case"]),  # underscore is punctuation, not a letter
        ("héllo", ["héllo"]),  # letters beyond ASCII count as letters
    ],
)
def test_tokenize_table(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


@pytest.mark.parametrize("text", ["", "  leading", "trailing  ", "mixed 42 ünïcode\t\ttabs 😀 and_more!!"])
def test_tokens_join_back_to_the_text(text: str) -> None:
    assert "".join(tokenize(text)) == text


@pytest.mark.parametrize(
    ("messages", "expected_count"),
    [
        # <|user|> Hello " world" <|end|> then <|assistant|>: 2 content tokens + 2 per message + 1 primer.
        ([ChatMessage("user", (TextPart("Hello world"),))], 5),
        # Two messages: (2 + 1) + (2 + 2) + 1.
        ([ChatMessage("system", (TextPart("Be"),)), ChatMessage("user", (TextPart("Hi you"),))], 8),
        # Text parts are counted like text, each image costs IMAGE_TOKENS: 1 + 64 + 2 + 1.
        ([ChatMessage("user", (TextPart("Look"), ImagePart("http://x/cat.png")))], 1 + IMAGE_TOKENS + 3),
        # An assistant turn without content still costs its template markers.
        ([ChatMessage("assistant", ())], 3),
    ],
)
def test_chat_prompt_token_count(messages: list[ChatMessage], expected_count: int) -> None:
    assert len(chat_prompt_tokens(messages)) == expected_count


def test_different_images_give_different_tokens() -> None:
    def image_tokens(url: str) -> list[str]:
        return chat_prompt_tokens([ChatMessage("user", (ImagePart(url),))])

    assert image_tokens("http://x/a.png") != image_tokens("http://x/b.png")
    assert image_tokens("http://x/a.png") == image_tokens("http://x/a.png")


def test_synthetic_completion_is_deterministic_per_prompt() -> None:
    assert synthetic_completion(["Hello"], 8) == synthetic_completion(["Hello"], 8)
    assert synthetic_completion(["Hello"], 8) != synthetic_completion(["Goodbye"], 8)
    # A shorter completion is a prefix of a longer one, as a cut-off generation would be.
    assert synthetic_completion(["Hello"], 8)[:3] == synthetic_completion(["Hello"], 3)


@pytest.mark.parametrize("count", [1, 2, 17, 300])
def test_synthetic_tokens_are_one_token_each(count: int) -> None:
    output = synthetic_completion(["some", " prompt"], count)

    assert len(output) == count
    assert all(tokenize(token) == [token] for token in output)
    # The streamed pieces re-tokenise as the same tokens, so usage agrees with what a client counts.
    assert tokenize("".join(output)) == list(output)
