"""What an endpoint serves, in a message: all of a short list, the closest of a long one."""

from __future__ import annotations

import pytest

from core.openai_client.models import describe_models, is_openai_endpoint

OPENAI_LIKE = ["babbage-002", "dall-e-3", "davinci-002", "gpt-3.5-turbo", "gpt-3.5-turbo-instruct", "gpt-4.1",
               "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini", "o3-mini", "text-embedding-3-small", "tts-1",
               "whisper-1"]


def test_a_short_list_is_named_whole() -> None:
    assert describe_models(["llama-a", "llama-b"], "llama-c") == "llama-a, llama-b"


def test_a_long_list_names_the_closest_to_the_model_asked_for() -> None:
    assert describe_models(OPENAI_LIKE, "gpt-4o-mni") == (
        "14 models, among them gpt-4o-mini, gpt-4.1-mini, gpt-4o, gpt-4.1-nano, o3-mini, gpt-4.1")


@pytest.mark.parametrize(("url", "openai"), [
    (None, True), ("https://api.openai.com/v1", True), ("http://localhost:8000/v1", False),
    ("http://127.0.0.1:11434/v1", False),
])
def test_openai_endpoint(url: str | None, openai: bool) -> None:
    assert is_openai_endpoint({} if url is None else {"OPENAI_BASE_URL": url}) is openai
