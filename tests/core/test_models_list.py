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


@pytest.mark.parametrize(("made", "said"), [
    (False, "model: my-llama, the one model {url} serves (--model_name picks another)"),
    (True, "model: my-llama, the one model {url} serves (MODEL picks another)"),
])
def test_the_served_model_line_in_makes_words(made: bool, said: str, caplog) -> None:
    from core.openai_client.models import model_for_server
    from tests.fakes.openai_server import OpenAIServer, ServerOptions

    with OpenAIServer(ServerOptions(models=("my-llama",))) as server:
        environ = {"OPENAI_BASE_URL": server.base_url}
        if made:  # what `make generate` exports for its variables
            environ["ALPACA_MAKE_VARIABLES"] = "model_name=MODEL"
        with caplog.at_level("INFO", logger="core.openai_client.models"):
            assert model_for_server("gpt-4o-mini", "--model_name", environ) == ("my-llama", True)
        assert caplog.messages == [said.format(url=server.base_url)]
