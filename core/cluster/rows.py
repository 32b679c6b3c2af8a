"""Requests and results as rows of a Ray Dataset: plain strings and numbers, so Arrow can carry
them between the driver and the workers without caring what a prompt holds."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from core.openai_client.request import Completion, GenerationRequest, GenerationResult


def request_row(request: GenerationRequest) -> dict[str, Any]:
    return {"index": request.index, "prompts": json.dumps(list(request.prompts), ensure_ascii=False)}


def row_request(index: Any, prompts: Any) -> GenerationRequest:
    return GenerationRequest(int(index), tuple(json.loads(str(prompts))))


def result_row(result: GenerationResult, node: str) -> dict[str, Any]:
    return {
        "index": result.request.index,
        "completions": json.dumps([[c.text, c.finish_reason] for c in result.completions], ensure_ascii=False),
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "retries": result.retries,
        "api_calls": result.api_calls,
        "error": "",
        "node": node,
    }


def error_row(request: GenerationRequest, message: str, node: str) -> dict[str, Any]:
    """A request the worker could not answer: no completions, and the one-line reason."""
    return {"index": request.index, "completions": "[]", "prompt_tokens": 0, "completion_tokens": 0,
            "retries": 0, "api_calls": 0, "error": message or "failed", "node": node}


def columns(rows: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows as the column dict a `map_batches` function returns."""
    out: dict[str, list[Any]] = {}
    for row in rows:
        for key, value in row.items():
            out.setdefault(key, []).append(value)
    return out


def row_result(row: dict[str, Any], request: GenerationRequest) -> GenerationResult:
    completions = tuple(Completion(str(text), str(finish)) for text, finish in json.loads(str(row["completions"])))
    return GenerationResult(request=request, completions=completions, prompt_tokens=int(row["prompt_tokens"]),
                            completion_tokens=int(row["completion_tokens"]), retries=int(row["retries"]),
                            api_calls=int(row["api_calls"]))
