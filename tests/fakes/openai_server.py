"""A loopback HTTP server speaking the OpenAI protocol, with answers in the self-instruct format and injectable faults.

In tests:

    with OpenAIServer(ServerOptions(rpm=600, script={0: "429", 2: "500"})) as server:
        os.environ["OPENAI_BASE_URL"] = server.base_url      # http://127.0.0.1:PORT/v1
        ...
        server.stats()                                       # calls, statuses, 429s, ...

From a shell (`make smoke`, benchmarks):

    python -m tests.fakes.openai_server --port 0 --port_file /tmp/port --latency_s 2 --rpm 600
    python -m tests.fakes.openai_server --port 8123 --bad_block_rate 0.3 --script 0:429,1:500,3:slow --models gpt-4o-mini

Answers are deterministic: a function of the prompt, the server seed and the options, never
of arrival order, so a retried or resumed request gets the same answer. Material comes from
`../shared/data/text-davinci-003_predictions.jsonl` when present (real instructions,
inputs and responses), else from a built-in synthetic generator (`material="synthetic"`).

Faults:
- per call, by arrival number (`script={n: kind}`) or on every call (`always=kind`), kinds
  "429" (with Retry-After), "500", "slow" (sleeps `slow_s`, beyond the client's timeout),
  "401", "404", "400", "quota" (429 insufficient_quota);
- a request-rate limit (`rpm`): a token bucket of one second's worth; beyond it 429 with
  `retry-after`/`retry-after-ms`; every answer reports `x-ratelimit-limit-requests` as
  OpenAI does;
- a context window (`context_window` tokens): prompt + max_tokens beyond it answers OpenAI's
  400 `context_length_exceeded`;
- a small answer pool (`pool_size`): every answer draws from the same few items, so after
  a while nothing new is kept (what a run's stall guard must catch);
- in the content, deterministically per block with probability `bad_block_rate`: blocks each
  filter must catch (malformed, blacklisted word, too short, too long, "Write a program",
  punctuation or non-ASCII first character) and exact/near repeats; with probability
  `truncate_rate` an answer is cut mid-block with `finish_reason: "length"`.

GET /v1/models lists `models` (a server that accepts any name lists "gpt-4o-mini").

Other modules add routes without editing this file:

    server.add_route("POST", "/v1/files", handler)   # handler(RouteRequest) -> RouteResponse
    server.answer("completions" | "chat", body_dict)  # the JSON a model call would return

Routes are matched by method and path prefix, newest first, before the built-in ones.

One concern, the loopback server: its routes, faults, answers and command line; what it answers
with (real or synthetic items, the bad blocks) is `tests/fakes/material.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from tests.fakes.material import (
    BAD_KINDS,
    PREDICTIONS,
    bad_block,
    load_predictions,
    synthetic_item,
)

FAULT_KINDS = ("429", "500", "slow", "401", "404", "400", "quota")


@dataclass
class ServerOptions:
    """What the server answers and which faults it injects."""

    seed: int = 0
    material: str = "auto"  # auto (predictions when present), predictions, synthetic
    blocks_per_answer: int = 8
    latency_s: float = 0.0
    rpm: int | None = None
    script: dict[int, str] = field(default_factory=dict)
    always: str | None = None
    slow_s: float = 5.0
    api_key: str | None = None  # when set, other bearer tokens get 401
    models: tuple[str, ...] | None = None  # when set, other models get 404
    context_window: int | None = None
    bad_block_rate: float = 0.0
    truncate_rate: float = 0.0
    usage: bool = True  # report token usage (False: clients must count tokens themselves)
    unsupported_params: tuple[str, ...] = ()  # body keys refused with 400 unsupported_parameter
    pool_size: int = 0  # when > 0, answers draw from only this many distinct items


@dataclass
class RouteRequest:
    """What an added route's handler receives."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""  # the URL's query string, without "?" (the Batch list's paging reads it)
    # True once the client has closed its connection (gave up on a slow answer).
    client_gone: Callable[[], bool] = lambda: False

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class RouteResponse:
    """What an added route's handler returns."""

    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[RouteRequest], RouteResponse]


# --- the server ---------------------------------------------------------------------------

class _QuietServer(ThreadingHTTPServer):
    """A client closing its keep-alive connection is normal, not worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _TokenBucket:
    def __init__(self, rpm: int) -> None:
        self.rate = rpm / 60.0
        self.capacity = max(1.0, self.rate)  # one second's worth of burst
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> float:
        """0 when a request may pass, else the seconds until one may."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate


def _error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def approx_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def chat_reply(model: str, text: str, prompt_tokens: int, completion_tokens: int,
               finish: str = "stop") -> RouteResponse:
    """A route's answer on /v1/chat/completions: one assistant message and its usage."""
    return RouteResponse(200, {
        "id": "chatcmpl-loopback", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


def completion_reply(model: str, texts: list[str], prompt_tokens: int, completion_tokens: int) -> RouteResponse:
    """A route's answer on /v1/completions: one choice per prompt, and the usage of them all."""
    return RouteResponse(200, {
        "id": "cmpl-loopback", "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "text": t, "finish_reason": "stop", "logprobs": None} for i, t in enumerate(texts)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


class OpenAIServer:
    """The server; a context manager that serves on 127.0.0.1 from a background thread."""

    def __init__(self, options: ServerOptions | None = None, port: int = 0) -> None:
        self.options = options or ServerOptions()
        material = self.options.material
        if material == "auto":
            material = "predictions" if PREDICTIONS.is_file() else "synthetic"
        self.material_name = material
        self.material = load_predictions() if material == "predictions" else []
        if self.options.pool_size > 0:
            rng = self._rng("pool")
            self.material = [self.material[i % len(self.material)] if self.material else synthetic_item(rng)
                             for i in range(self.options.pool_size)]
        self._bucket = _TokenBucket(self.options.rpm) if self.options.rpm else None
        self._routes: list[tuple[str, str, Handler]] = []
        self._lock = threading.Lock()
        self._calls = 0
        self._stats: dict[str, Any] = {
            "calls": 0, "answered": 0, "statuses": {}, "rate_limited": 0, "in_flight": 0,
            "max_in_flight": 0, "prompts": 0, "answered_times": [],
            # Answers sent to a client still waiting, and the usage they reported (what a bill counts).
            "prompt_tokens": 0, "completion_tokens": 0,
            # Answers ready only after the client had given up (a "slow" fault): not counted above.
            "abandoned": 0,
        }
        self._httpd = _QuietServer(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The URL to use as OPENAI_BASE_URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAIServer:
        # shutdown() waits for the serve loop's next poll: 0.5 s by default, paid by every test.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_route(self, method: str, path_prefix: str, handler: Handler) -> None:
        """Serve `method path_prefix*` with `handler` (checked before the built-in routes)."""
        self._routes.insert(0, (method.upper(), path_prefix, handler))

    def stats(self) -> dict[str, Any]:
        """A copy of the counters: calls, answered (delivered to a waiting client), statuses,
        rate_limited, max_in_flight, prompts, prompt_tokens and completion_tokens of the answered
        calls, abandoned (answers whose client had gone)."""
        with self._lock:
            out = json.loads(json.dumps(self._stats))
        out.pop("answered_times")
        return out

    def answered_times(self) -> list[float]:
        """time.time() of each answered model call (to measure a client's request rate)."""
        with self._lock:
            return list(self._stats["answered_times"])

    def _count(self, key: str, status: int | None = None) -> None:
        with self._lock:
            if status is not None:
                self._stats["statuses"][str(status)] = self._stats["statuses"].get(str(status), 0) + 1
            if key:
                self._stats[key] += 1

    # --- answers -----------------------------------------------------------------------------
    def _rng(self, *parts: object) -> random.Random:
        digest = hashlib.sha256("\x1f".join(map(str, (self.options.seed, *parts))).encode()).hexdigest()
        return random.Random(int(digest[:16], 16))

    def _item(self, rng: random.Random) -> dict[str, str]:
        if self.material:
            return dict(rng.choice(self.material))
        return synthetic_item(rng)

    def answer_text(self, prompt: str, max_tokens: int, stop: list[str], restate: bool) -> tuple[str, str]:
        """The model's text and finish_reason for one prompt (deterministic)."""
        # The prompt's own labels (prompt_zh.txt asks for `N. 指令：`), so a completion continues
        # the prompt's numbering and the parser finds the blocks it asked for.
        chinese = re.search(r"\d+\. 指令：", prompt) is not None
        instruction, given, output = ("指令：", "输入：", "输出：") if chinese else ("Instruction:", "Input:", "Output:")
        numbers = re.findall(rf"(\d+)\. {instruction}", prompt)
        first = int(numbers[-1]) if numbers else 1
        examples = re.findall(rf"\d+\. {instruction} ?(.+)", prompt)
        rng = self._rng(prompt)
        options = self.options
        blocks: list[str] = []
        earlier: list[str] = [e for e in examples if e]
        for offset in range(options.blocks_per_answer):
            number = first + offset
            item = self._item(rng)
            kind = rng.choice(BAD_KINDS) if rng.random() < options.bad_block_rate else None
            if kind == "malformed":
                blocks.append(f"{number}. {instruction} {item['instruction']}\n{number}. {output}\n{item['output']}\n")
                continue
            if kind is not None:
                item = bad_block(kind, item, rng, earlier) or item
            earlier.append(item["instruction"])
            blocks.append(
                f"{number}. {instruction} {item['instruction']}\n{number}. {given}\n"
                f"{item['input'] or '<noinput>'}\n{number}. {output}\n{item['output']}\n"
            )
        text = "###\n".join(blocks)
        if not restate:
            text = text[len(f"{first}. {instruction}"):]
        finish = "stop"
        for s in stop:
            cut = text.find(s)
            if cut >= 0:
                text = text[:cut]
        if rng.random() < options.truncate_rate:
            text = text[: int(len(text) * rng.uniform(0.5, 0.95))]
            finish = "length"
        if approx_tokens(text) > max_tokens:
            text = text[: max_tokens * 4]
            finish = "length"
        return text, finish

    def answer(self, api: str, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON body a successful call to the api ('completions' or 'chat') returns."""
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 4096)
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        model = body.get("model", "")
        if api == "completions":
            prompts = body["prompt"]
            prompts = [prompts] if isinstance(prompts, str) else list(prompts)
            choices = []
            completion_tokens = 0
            for index, prompt in enumerate(prompts):
                text, finish = self.answer_text(prompt, max_tokens, stop, restate=False)
                completion_tokens += approx_tokens(text)
                choices.append({"index": index, "text": text, "finish_reason": finish, "logprobs": None})
            prompt_tokens = sum(approx_tokens(p) for p in prompts)
            out: dict[str, Any] = {"id": "cmpl-loopback", "object": "text_completion", "created": int(time.time()),
                                   "model": model, "choices": choices}
        else:
            prompt = "\n".join(str(m.get("content", "")) for m in body["messages"])
            text, finish = self.answer_text(prompt, max_tokens, stop, restate=True)
            completion_tokens = approx_tokens(text)
            prompt_tokens = approx_tokens(prompt)
            out = {"id": "chatcmpl-loopback", "object": "chat.completion", "created": int(time.time()),
                   "model": model, "choices": [{"index": 0, "finish_reason": finish,
                                                "message": {"role": "assistant", "content": text}}]}
        if self.options.usage:
            out["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens}
        return out

    # --- HTTP ----------------------------------------------------------------------------------
    def _model_call(self, api: str, request: RouteRequest) -> RouteResponse:
        options = self.options
        with self._lock:
            number = self._calls
            self._calls += 1
            self._stats["calls"] += 1
            self._stats["in_flight"] += 1
            self._stats["max_in_flight"] = max(self._stats["max_in_flight"], self._stats["in_flight"])
        try:
            return self._model_call_inner(api, request, number, options)
        finally:
            with self._lock:
                self._stats["in_flight"] -= 1

    def _model_call_inner(self, api: str, request: RouteRequest, number: int, options: ServerOptions) -> RouteResponse:
        headers: dict[str, str] = {}
        if options.rpm:
            headers["x-ratelimit-limit-requests"] = str(options.rpm)
        fault = options.script.get(number, options.always)
        token = request.headers.get("authorization", "")
        if fault == "401" or (options.api_key is not None and token != f"Bearer {options.api_key}"):
            shown = token.removeprefix("Bearer ")
            masked = f"{shown[:3]}****{shown[-4:]}" if len(shown) > 8 else "****"
            return RouteResponse(401, _error_body(
                f"Incorrect API key provided: {masked}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"), headers)
        try:
            body = request.json()
        except ValueError:
            return RouteResponse(400, _error_body("We could not parse the JSON body of your request.",
                                                  "invalid_request_error", None), headers)
        model = body.get("model", "")
        if fault == "404" or (options.models is not None and model not in options.models):
            return RouteResponse(404, _error_body(
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error", "model_not_found"), headers)
        for param in options.unsupported_params:
            if param in body:
                return RouteResponse(400, _error_body(
                    f"Unsupported parameter: '{param}' is not supported with this model."
                    + (" Use 'max_completion_tokens' instead." if param == "max_tokens" else ""),
                    "invalid_request_error", "unsupported_parameter", param), headers)
        if fault == "400":
            return RouteResponse(400, _error_body("'temperature' must be a number.",
                                                  "invalid_request_error", None, "temperature"), headers)
        if self._bucket is not None:
            wait = self._bucket.take()
            if wait > 0:
                self._count("rate_limited")
                headers.update({"retry-after": str(max(1, math.ceil(wait))), "retry-after-ms": str(max(1, int(wait * 1000)))})
                return RouteResponse(429, _error_body(
                    f"Rate limit reached for {model} on requests per min (RPM): Limit {options.rpm}. "
                    "Please try again shortly.", "requests", "rate_limit_exceeded"), headers)
        if fault == "429":
            self._count("rate_limited")
            headers.update({"retry-after": "1", "retry-after-ms": "50"})
            return RouteResponse(429, _error_body("Rate limit reached. Please try again in 50ms.", "requests",
                                                  "rate_limit_exceeded"), headers)
        if fault == "quota":
            return RouteResponse(429, _error_body(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota", "insufficient_quota"), headers)
        if fault == "500":
            return RouteResponse(500, _error_body("The server had an error while processing your request.",
                                                  "server_error", None), headers)
        if fault == "slow":
            time.sleep(options.slow_s)
        if options.context_window is not None:
            prompts = body.get("prompt") if api == "completions" else [m.get("content", "") for m in body.get("messages", [])]
            prompts = [prompts] if isinstance(prompts, str) else list(prompts or [])
            prompt_tokens = max((approx_tokens(p) for p in prompts), default=0)
            requested = prompt_tokens + int(body.get("max_tokens") or body.get("max_completion_tokens") or 4096)
            if requested > options.context_window:
                return RouteResponse(400, _error_body(
                    f"This model's maximum context length is {options.context_window} tokens. However, you "
                    f"requested {requested} tokens ({prompt_tokens} in the messages, {body.get('max_tokens')} in "
                    "the completion). Please reduce the length of the messages or completion.",
                    "invalid_request_error", "context_length_exceeded", "messages"), headers)
        if options.latency_s:
            time.sleep(options.latency_s)
        answer = self.answer(api, body)
        if request.client_gone():
            self._count("abandoned")
            return RouteResponse(200, answer, headers)
        prompt_tokens, completion_tokens = self._usage(api, body, answer)
        with self._lock:
            self._stats["answered"] += 1
            self._stats["prompts"] += len(answer["choices"])
            self._stats["prompt_tokens"] += prompt_tokens
            self._stats["completion_tokens"] += completion_tokens
            self._stats["answered_times"].append(time.time())
        return RouteResponse(200, answer, headers)

    @staticmethod
    def _usage(api: str, body: dict[str, Any], answer: dict[str, Any]) -> tuple[int, int]:
        """The tokens an answer bills (reported in `usage`, or counted the same way when it is not)."""
        usage = answer.get("usage")
        if usage:
            return usage["prompt_tokens"], usage["completion_tokens"]
        if api == "completions":
            prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
            texts = [choice["text"] for choice in answer["choices"]]
        else:
            prompts = ["\n".join(str(m.get("content", "")) for m in body["messages"])]
            texts = [choice["message"]["content"] for choice in answer["choices"]]
        return sum(approx_tokens(p) for p in prompts), sum(approx_tokens(t) for t in texts)

    def _route(self, request: RouteRequest) -> RouteResponse:
        for method, prefix, handler in self._routes:
            if method == request.method and request.path.startswith(prefix):
                return handler(request)
        if request.method == "POST" and request.path.rstrip("/") == "/v1/completions":
            return self._model_call("completions", request)
        if request.method == "POST" and request.path.rstrip("/") == "/v1/chat/completions":
            return self._model_call("chat", request)
        if request.method == "GET" and request.path.rstrip("/") == "/v1/models":
            # A server that answers any model name lists OpenAI's default, the one a run that
            # names no model asks for.
            listed = self.options.models or ("gpt-4o-mini",)
            return RouteResponse(200, {"object": "list", "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "loopback"} for name in listed]})
        if request.method == "GET" and request.path == "/_stats":
            return RouteResponse(200, {**self.stats(), "answered_times": self.answered_times()})
        return RouteResponse(404, _error_body(f"Invalid URL ({request.method} {request.path})",
                                              "invalid_request_error", None))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY: headers and body go out as separate writes, and with Nagle's algorithm
            # the body waits for the client's delayed ACK (~40 ms a call instead of ~1 ms).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                request = RouteRequest(self.command, self.path.split("?")[0],
                                       {k.lower(): v for k, v in self.headers.items()}, body,
                                       self.path.partition("?")[2], self._client_gone)
                response = server._route(request)
                server._count("", response.status)
                payload = response.body if isinstance(response.body, bytes) else json.dumps(response.body).encode()
                try:
                    self.send_response(response.status)
                    content_type = "application/json" if not isinstance(response.body, bytes) else \
                        response.headers.get("content-type", "application/octet-stream")
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(payload)))
                    for key, value in response.headers.items():
                        if key.lower() != "content-type":
                            self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout fault): nothing to do

            def _client_gone(self) -> bool:
                """The client closed the connection (readable with nothing to read)."""
                try:
                    readable, _, _ = select.select([self.connection], [], [], 0)
                    return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            do_GET = do_POST = do_DELETE = _serve

        return _Handler


def _parse_script(text: str) -> dict[int, str]:
    """`0:429,1:500,3:slow` -> {0: "429", 1: "500", 3: "slow"}."""
    script: dict[int, str] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        number, _, kind = entry.partition(":")
        if not number.isdigit() or kind not in FAULT_KINDS:
            raise argparse.ArgumentTypeError(f"{entry!r}: expected CALL_NUMBER:KIND, KIND one of {', '.join(FAULT_KINDS)}")
        script[int(number)] = kind
    return script


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of every CLI built on this server: where it listens and what it answers."""
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port_file", type=Path, help="the chosen port is written here once listening")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--material", choices=("auto", "predictions", "synthetic"), default="auto")
    parser.add_argument("--blocks_per_answer", type=int, default=8)
    parser.add_argument("--latency_s", type=float, default=0.0)
    parser.add_argument("--rpm", type=int)
    parser.add_argument("--bad_block_rate", type=float, default=0.0)
    parser.add_argument("--truncate_rate", type=float, default=0.0)
    parser.add_argument("--always", choices=FAULT_KINDS)
    parser.add_argument("--script", type=_parse_script, default={},
                        help="faults by call number, e.g. 0:429,1:500,3:slow (kinds: %s)" % ", ".join(FAULT_KINDS))
    parser.add_argument("--slow_s", type=float, default=5.0, help="how long a 'slow' fault sleeps")
    parser.add_argument("--api_key", help="when set, other bearer tokens get 401")
    parser.add_argument("--models", help="comma-separated model ids; when set, other models get 404")
    parser.add_argument("--context_window", type=int, help="tokens; beyond it 400 context_length_exceeded")
    parser.add_argument("--pool_size", type=int, default=0,
                        help="answers draw from only this many distinct items (0: unlimited); a run then stalls")


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    """ServerOptions from the flags `add_server_arguments` defines."""
    return ServerOptions(seed=args.seed, material=args.material, blocks_per_answer=args.blocks_per_answer,
                         latency_s=args.latency_s, rpm=args.rpm, bad_block_rate=args.bad_block_rate,
                         truncate_rate=args.truncate_rate, always=args.always, script=args.script,
                         slow_s=args.slow_s, api_key=args.api_key, context_window=args.context_window,
                         models=tuple(args.models.split(",")) if args.models else None, pool_size=args.pool_size)


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM/SIGINT; write the chosen port to --port_file once listening."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    server = OpenAIServer(options_from_args(args), port=args.port)
    serve_until_signalled(server, args.port_file, f"({server.material_name} material)")


def serve_until_signalled(server: OpenAIServer, port_file: Path | None, what: str = "") -> None:
    """Start `server`, write its port to `port_file` (atomically: a reader never sees half of it),
    print the URL and `what`, and serve until SIGTERM or SIGINT (for CLIs built on this server)."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    server.start()
    if port_file:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(server.port))
        tmp.replace(port_file)
    print(f"serving {server.base_url} {what}".rstrip(), flush=True)
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
