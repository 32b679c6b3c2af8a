"""Any OpenAI-compatible HTTP API through the official `openai` SDK, with many calls in flight.

The SDK already retries 429, 408/409, 5xx, timeouts and connection errors with exponential
backoff and honours `Retry-After` (bounded by `max_retries`); this module adds what it
lacks: many calls in flight, paced by the rate limit the server reports (`pacing`), and the
classification of what remains into fatal one-line `GenerationError`s (`failures`). A
context-length error is the one 400 that is retried: `max_tokens` is cut by 20% each time,
as the reference did.

Generation, rating and the eval stage's judge and API contestant all call through
`OpenAIClient`; `ClientSettings` says what to ask for and where.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import openai

from core.openai_client.cost import end_of_text_token
from core.openai_client.credentials import (
    OPENAI_DEFAULT_BASE_URL,
    PLACEHOLDER_KEY,
    check_credentials,
    env_value,
)
from core.openai_client.failures import (
    MIN_MAX_TOKENS,
    QuotaExhausted,
    Where,
    fatal_error,
    is_context_length_error,
)
from core.openai_client.models import served_models
from core.openai_client.pacing import AdaptiveLimiter
from core.openai_client.request import (
    BackendState,
    Completion,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
)
from core.redact import endpoint_for_messages, scrub

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientSettings:
    """What to ask a model and where: the sampling, the concurrency and the endpoint.

    `base_url` and `api_key` default to OPENAI_BASE_URL and OPENAI_API_KEY (an empty value
    counted as unset). With `messages_json`, a chat prompt is the JSON list of its messages
    (a judge's system message, a contestant's instruction and input as two user messages).
    An empty `stop` sends no stop sequences. `top_logprobs` > 0 asks for that many alternatives
    per token and keeps those of the first token in `Completion.top_logprobs`.
    """

    model: str
    api: Literal["completions", "chat"] = "chat"
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 3072
    stop: tuple[str, ...] = SamplingParams.stop
    max_concurrency: int = 32
    max_retries: int = 6
    request_timeout: float = 600.0
    base_url: str | None = None
    api_key: str | None = None
    messages_json: bool = False
    top_logprobs: int = 0
    model_flag: str = "--model_name"  # named by errors about the model (the eval's judge: --judge_model)

    @property
    def sampling(self) -> SamplingParams:
        return SamplingParams(model=self.model, temperature=self.temperature, top_p=self.top_p,
                              max_tokens=self.max_tokens, stop=self.stop)


@dataclass
class _Pending:
    """A request whose calls are still running (chat sends one call per prompt)."""

    request: GenerationRequest
    completions: list[Completion | None]
    remaining: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class _Call:
    pending: _Pending
    slot: int  # the prompt's position in the request (chat) or 0 (completions: all prompts)
    prompts: tuple[str, ...]


class _Stop:
    """Sentinel telling a worker thread to exit."""


@dataclass(frozen=True)
class _Exhausted:
    """Sentinel from the dispatcher: the request iterator ended after `count` requests."""

    count: int


class OpenAIClient:
    """Sends each request's prompts to /v1/completions (batched) or /v1/chat/completions (one per call)."""

    def __init__(self, settings: ClientSettings, state: BackendState | None = None) -> None:
        api_key = settings.api_key or env_value("OPENAI_API_KEY")
        base_url = settings.base_url or env_value("OPENAI_BASE_URL")
        if not (api_key or base_url):
            check_credentials()
        self._secret = api_key
        self.settings = settings
        self.state = state
        self.params = settings.sampling
        self._max_tokens = self.params.max_tokens
        # Parameters some models refuse (e.g. reasoning models: max_tokens -> max_completion_tokens,
        # no stop); learnt from the first 400 "unsupported_parameter" and applied to every later call.
        self._token_param = "max_tokens"
        self._dropped: set[str] = set()
        self._limiter = AdaptiveLimiter(settings.max_concurrency)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._status_counts: dict[int, int] = {}
        self._counts_lock = threading.Lock()
        self.calls = 0
        http_client = openai.DefaultHttpxClient(event_hooks={"response": [self._on_response]})
        # The default URL is passed explicitly: given None, the SDK would read OPENAI_BASE_URL
        # itself and take an empty value literally, where we count it as unset.
        self.client = openai.OpenAI(
            api_key=api_key or PLACEHOLDER_KEY,
            base_url=base_url or OPENAI_DEFAULT_BASE_URL,
            max_retries=settings.max_retries,
            timeout=settings.request_timeout,
            http_client=http_client,
        )
        self.base_url = endpoint_for_messages(str(self.client.base_url))
        self.where = Where(self.base_url, settings.model, settings.api, settings.max_retries,
                           settings.request_timeout, api_key, settings.model_flag)
        eot = end_of_text_token(settings.model) if settings.api == "completions" else None
        # Blocking <|endoftext|> only means something in the model's own vocabulary.
        self._logit_bias = {str(eot): -100} if eot is not None else None

    # --- observation ---------------------------------------------------------------------
    def _on_response(self, response: Any) -> None:
        """httpx response hook: count statuses and feed the limiter (runs in worker threads)."""
        status = response.status_code
        with self._counts_lock:
            self._status_counts[status] = self._status_counts.get(status, 0) + 1
        if status == 429:
            self._limiter.on_rate_limited()
            # A 429 for an exhausted quota will not pass with waiting: stop now, not after retries.
            response.read()
            try:
                error = response.json().get("error") or {}
            except ValueError:
                error = {}
            if isinstance(error, dict) and error.get("code") == "insufficient_quota":
                raise QuotaExhausted("insufficient_quota")
        elif status < 500:
            self._limiter.on_success()
        limit = response.headers.get("x-ratelimit-limit-requests")
        if limit:
            try:
                self._limiter.on_reported_limit(float(limit))
            except ValueError:
                pass

    def stats(self) -> dict[str, float]:
        """Numbers for the run summary: calls, HTTP statuses, 429s, the final concurrency window."""
        with self._counts_lock:
            statuses = dict(self._status_counts)
        out: dict[str, float] = {
            "api_calls": self.calls,
            "rate_limited_429": statuses.get(429, 0),
            "server_errors_5xx": sum(n for code, n in statuses.items() if code >= 500),
            "concurrency_window": round(self._limiter.limit, 2),
            "max_tokens_now": self._max_tokens,
        }
        if self._limiter.reported_rpm:
            out["reported_requests_per_minute"] = self._limiter.reported_rpm
        return out

    def scrub(self, text: str) -> str:
        """Server text as one line, without the API key, bounded in length."""
        return scrub(text, self._secret)

    def fatal(self, err: Exception, not_found: str | None = None) -> GenerationError:
        """An SDK error left after retries as a one-line, secret-free GenerationError (`failures`);
        an unknown model is answered with the models the server lists."""
        served = served_models(self.client) if isinstance(err, openai.NotFoundError) and not_found is None else None
        return fatal_error(err, self.where, not_found, served)

    # --- one HTTP call ---------------------------------------------------------------------
    def request_body(self, prompts: tuple[str, ...], max_tokens: int) -> dict[str, Any]:
        """The JSON body of one call (completions: all `prompts`; chat: the one prompt as a user
        message), with the parameters adapted to what the model accepts; the Batch API sends it too."""
        params = self.params
        body: dict[str, Any] = {
            "model": params.model,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": 1,
            self._token_param: max_tokens,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if self.settings.top_logprobs:
            if self.settings.api == "completions":
                body["logprobs"] = self.settings.top_logprobs
            else:
                body["logprobs"] = True
                body["top_logprobs"] = self.settings.top_logprobs
        if self.settings.api == "completions":
            body["prompt"] = list(prompts)
            if self._logit_bias is not None:
                body["logit_bias"] = self._logit_bias
        elif self.settings.messages_json:
            body["messages"] = json.loads(prompts[0])
        else:
            body["messages"] = [{"role": "user", "content": prompts[0]}]
        for name in self._dropped:
            body.pop(name, None)
        return body

    def _create(self, prompts: tuple[str, ...], max_tokens: int) -> Any:
        body = self.request_body(prompts, max_tokens)
        if self.settings.api == "completions":
            return self.client.completions.with_raw_response.create(**body)
        return self.client.chat.completions.with_raw_response.create(**body)

    def _adapt_to_unsupported(self, code: str | None, param: str | None) -> bool:
        """Handle a 400 "unsupported_parameter" (the error's `code` and `param`) once per parameter;
        True when the call should be retried."""
        if code != "unsupported_parameter":
            return False
        with self._counts_lock:
            if param == "max_tokens" and self.settings.api == "chat" and self._token_param == "max_tokens":
                self._token_param = "max_completion_tokens"
            elif param in ("stop", "logit_bias", "top_p") and param not in self._dropped:
                self._dropped.add(param)
            elif (param == "max_tokens" and self._token_param != "max_tokens") or param in self._dropped:
                return True  # another call already adapted; retry with the new settings
            else:
                return False
        log.warning("%s does not accept %r for model %s; adapting and retrying",
                    self.base_url, param, self.settings.model)
        return True

    def _call(self, call: _Call) -> tuple[list[Completion], int, int, int]:
        """Run one HTTP call to completion: (completions in prompt order, prompt tokens, completion tokens, retries)."""
        while True:
            max_tokens = self._max_tokens
            try:
                raw = self._create(call.prompts, max_tokens)
                break
            except openai.BadRequestError as err:
                if self._adapt_to_unsupported(getattr(err, "code", None), getattr(err, "param", None)):
                    continue
                if is_context_length_error(err, self.where):
                    shrunk = int(max_tokens * 0.8)
                    if shrunk < MIN_MAX_TOKENS:
                        raise GenerationError(
                            f"the prompt leaves no room for an answer at {self.base_url} even with "
                            f"max_tokens={max_tokens}: lower --num_prompt_instructions or use a "
                            f"longer-context {self.settings.model_flag}"
                        ) from None
                    with self._counts_lock:
                        # Shrink for every later call too, as the reference did.
                        self._max_tokens = min(self._max_tokens, shrunk)
                    log.warning("context length exceeded; retrying with max_tokens=%d", shrunk)
                    continue
                raise self.fatal(err) from None
            except openai.OpenAIError as err:
                raise self.fatal(err) from None
        response = raw.parse()
        choices = sorted(response.choices, key=lambda choice: choice.index)
        if len(choices) != len(call.prompts):
            raise GenerationError(
                f"{self.base_url} answered {len(choices)} choices for {len(call.prompts)} prompts; "
                f"the server does not support batched prompts: use --api chat or --request_batch_size 1"
            )
        if self.settings.api == "completions":
            completions = [Completion(c.text or "", c.finish_reason or "stop", self._first_top_logprobs(c))
                           for c in choices]
        else:
            completions = [Completion(c.message.content or "", c.finish_reason or "stop", self._first_top_logprobs(c))
                           for c in choices]
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        return completions, prompt_tokens, completion_tokens, raw.retries_taken

    def _first_top_logprobs(self, choice: Any) -> tuple[tuple[str, float], ...] | None:
        """The first token's alternatives of a choice, when asked for and returned (None otherwise:
        a server that ignores `logprobs` is told apart from one that returned none)."""
        logprobs = getattr(choice, "logprobs", None) if self.settings.top_logprobs else None
        if logprobs is None:
            return None
        if self.settings.api == "completions":
            first = (getattr(logprobs, "top_logprobs", None) or [None])[0]
            return tuple((str(t), float(lp)) for t, lp in first.items()) if isinstance(first, dict) else None
        content = getattr(logprobs, "content", None) or []
        if not content:
            return None
        return tuple((str(alt.token), float(alt.logprob)) for alt in (content[0].top_logprobs or []))

    # --- the pipeline ----------------------------------------------------------------------
    def _calls_for(self, request: GenerationRequest) -> list[_Call]:
        n = len(request.prompts)
        if self.settings.api == "completions":
            pending = _Pending(request, [None] * n, remaining=1)
            return [_Call(pending, 0, request.prompts)]
        pending = _Pending(request, [None] * n, remaining=n)
        return [_Call(pending, i, (prompt,)) for i, prompt in enumerate(request.prompts)]

    def _worker(self, tasks: queue.Queue[Any], results: queue.Queue[Any]) -> None:
        while True:
            call = tasks.get()
            if isinstance(call, _Stop) or self._stop.is_set():
                return
            start = time.monotonic()
            try:
                completions, p_tok, c_tok, retries = self._call(call)
            except BaseException as err:  # noqa: BLE001 - every failure must reach the consumer
                self._limiter.release()
                results.put(err if isinstance(err, GenerationError) else GenerationError(
                    f"{type(err).__name__}: {self.scrub(str(err))}"))
                self._stop.set()
                return
            elapsed = time.monotonic() - start
            self._limiter.release(elapsed)
            with self._counts_lock:
                self.calls += 1
            pending = call.pending
            log.debug(
                "request %d call %d: %d prompt(s) in %.2f s, %d+%d tokens, %d retries",
                pending.request.index, call.slot, len(call.prompts), elapsed, p_tok, c_tok, retries,
            )
            with pending.lock:
                for offset, completion in enumerate(completions):
                    pending.completions[call.slot + offset] = completion
                pending.prompt_tokens += p_tok
                pending.completion_tokens += c_tok
                pending.retries += retries
                pending.remaining -= 1
                done = pending.remaining == 0
            if done:
                results.put(
                    GenerationResult(
                        request=pending.request,
                        completions=tuple(c for c in pending.completions if c is not None),
                        prompt_tokens=pending.prompt_tokens,
                        completion_tokens=pending.completion_tokens,
                        retries=pending.retries,
                        api_calls=1 if self.settings.api == "completions" else len(pending.completions),
                    )
                )

    def _dispatch(self, requests: Iterator[GenerationRequest], tasks: queue.Queue[Any],
                  results: queue.Queue[Any], window: threading.Semaphore) -> None:
        count = 0
        try:
            for request in requests:
                count += 1
                # Bound how far dispatch runs ahead of the consumer.
                while not window.acquire(timeout=0.5):
                    if self._stop.is_set():
                        return
                for call in self._calls_for(request):
                    if not self._limiter.acquire(self._stop):
                        return
                    tasks.put(call)
                if self._stop.is_set():
                    return
            results.put(_Exhausted(count))
        except BaseException as err:  # noqa: BLE001 - surfaced to the consumer
            results.put(err)
            self._stop.set()

    def run(self, requests: Iterator[GenerationRequest]) -> Iterator[GenerationResult]:
        """Yield results as calls finish, in completion order; raise GenerationError on a fatal failure."""
        tasks: queue.Queue[Any] = queue.Queue()
        results: queue.Queue[Any] = queue.Queue()
        window = threading.Semaphore(4 * self.settings.max_concurrency)
        for _ in range(self.settings.max_concurrency):
            # Daemon threads: a call still running at exit must not keep the process alive.
            thread = threading.Thread(target=self._worker, args=(tasks, results), daemon=True)
            thread.start()
            self._threads.append(thread)
        dispatcher = threading.Thread(target=self._dispatch, args=(requests, tasks, results, window), daemon=True)
        dispatcher.start()
        self._tasks = tasks
        expected: int | None = None
        yielded = 0
        while expected is None or yielded < expected:
            item = results.get()
            if isinstance(item, BaseException):
                self._stop.set()
                raise item
            if isinstance(item, _Exhausted):
                expected = item.count
                continue
            window.release()
            yielded += 1
            yield item

    def close(self) -> None:
        """Stop dispatching; calls still in flight are abandoned (their threads are daemons)."""
        self._stop.set()
        tasks = getattr(self, "_tasks", None)
        if tasks is not None:
            for _ in self._threads:
                tasks.put(_Stop())
