"""The Batch API (/v1/files, /v1/batches) on the loopback OpenAI server, for tests and `make smoke`.

    with OpenAIServer(ServerOptions()) as server:
        batch_api = BatchAPI.install(server, BatchOptions(expire={0}))
        ...
        batch_api.stats()        # files, batches created, lines answered, ...

From a shell: `python -m tests.fakes.batch_routes --port 0 --port_file F` serves both the
synchronous endpoints and these.

Files and batches live in memory. A batch moves one status per `retrieve` (after
`polls_per_stage` polls): validating -> in_progress -> finalizing -> completed, or `failed`
(validation error, fault `fail_validation`), `expired` (fault `expire`: only the first
`expire_keep` lines answered, the rest reported as `batch_expired` in the error file) or,
after `POST /v1/batches/{id}/cancel`, cancelling -> cancelled (no lines answered). Output
lines use the real format `{"id", "custom_id", "response": {"status_code", "request_id",
"body"}, "error"}`; answers come from the main server's `answer` (the same text as the
synchronous endpoints). Per-line faults: `line_errors` (custom_id -> attempts that answer
HTTP 500), `context_window` (prompt + max_tokens beyond it answers 400
context_length_exceeded) and `unsupported` (lines carrying one of these body parameters
answer 400 unsupported_parameter, as newer models do for `max_tokens`).

The real service's limits and failures: `enqueued_token_limit` (a batch whose
prompt tokens, added to those of the batches already in progress, exceed it fails validation
with `errors.data[].code == "token_limit_exceeded"`, as the per-model queue limit of an
account tier does), `outage` (status polls numbered [start, stop) answer `outage_status`,
503 by default, and move nothing), `vanish(batch_id)` (the batch and its files answer 404, as
for a key of another project or results deleted after 30 days), `slow_creates` /
`create_delay_s` (the first creates answer only after a delay, the batch already made, so a
client that retries on its timeout makes a second one) and a paged batch list (`limit`,
`after`, `has_more`). Billing is counted per answered line: `prompt_tokens_billed`,
`completion_tokens_billed` (the usage of every HTTP 200 line) and `lines_paid_twice`
(a custom_id answered more than once).
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.openai_server import (
    OpenAIServer,
    RouteRequest,
    RouteResponse,
    add_server_arguments,
    approx_tokens,
    options_from_args,
    serve_until_signalled,
)

STAGES = ("validating", "in_progress", "finalizing")


@dataclass
class BatchOptions:
    """Faults and pacing of the fake Batch API."""

    polls_per_stage: int = 1  # retrieves before a batch moves to its next status
    fail_validation: set[int] = field(default_factory=set)  # batch ordinals (0-based) that fail validation
    expire: set[int] = field(default_factory=set)  # batch ordinals that expire
    expire_keep: int = 1  # lines answered before an expiring batch runs out of time
    line_errors: dict[str, int] = field(default_factory=dict)  # custom_id -> attempts answered with HTTP 500
    context_window: int | None = None
    unsupported: tuple[str, ...] = ()  # body parameters answered with 400 unsupported_parameter
    enqueued_token_limit: int | None = None  # prompt tokens of batches in progress at once (per account)
    outage: tuple[int, int] | None = None  # status polls numbered [start, stop) (0-based) fail
    outage_status: int = 503  # what they answer (401: the key was revoked)
    slow_creates: int = 0  # the first N batch creates answer only after create_delay_s
    create_delay_s: float = 0.0
    max_page_size: int = 100  # the most batches one list page holds, whatever `limit` asks (the API's cap)


def _error(message: str, code: str | None = None, status: int = 400) -> RouteResponse:
    return RouteResponse(status, {"error": {"message": message, "type": "invalid_request_error",
                                            "param": None, "code": code}})


def _multipart(request: RouteRequest) -> dict[str, tuple[str | None, bytes]]:
    """The form fields of a multipart/form-data body: name -> (filename, bytes)."""
    head = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


class BatchAPI:
    """In-memory files and batches served through the loopback server's route hook."""

    def __init__(self, server: OpenAIServer, options: BatchOptions) -> None:
        self.server = server
        self.options = options
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._polls: dict[str, int] = {}
        self._attempts: dict[str, int] = {}
        self._file_count = 0
        self._paid: dict[str, int] = {}  # custom_id -> lines answered with HTTP 200 (billed)
        self._lock = threading.Lock()
        self._stats = {"files_uploaded": 0, "batches_created": 0, "lines_submitted": 0,
                       "lines_answered": 0, "lines_failed": 0, "retrieves": 0, "cancels": 0,
                       "polls_failed": 0, "prompt_tokens_billed": 0, "completion_tokens_billed": 0,
                       "lines_paid_twice": 0, "max_enqueued_tokens": 0}

    @classmethod
    def install(cls, server: OpenAIServer, options: BatchOptions | None = None) -> BatchAPI:
        """Add the /v1/files and /v1/batches routes to `server`."""
        api = cls(server, options or BatchOptions())
        server.add_route("POST", "/v1/files", api._upload)
        server.add_route("GET", "/v1/files/", api._file)
        server.add_route("POST", "/v1/batches", api._batches_post)
        server.add_route("GET", "/v1/batches", api._batches_get)
        return api

    def stats(self) -> dict[str, int]:
        """Counters: files_uploaded, batches_created, lines_submitted/answered/failed, retrieves,
        cancels, polls_failed, prompt/completion_tokens_billed, lines_paid_twice, max_enqueued_tokens
        (the most prompt tokens in progress at once, counted when `enqueued_token_limit` is set)."""
        with self._lock:
            return dict(self._stats)

    def vanish(self, batch_id: str) -> None:
        """Forget a batch and its files: every later request for them answers 404."""
        with self._lock:
            batch = self.batches.pop(batch_id)
            for key in ("input_file_id", "output_file_id", "error_file_id"):
                self.files.pop(batch[key] or "", None)
                self.contents.pop(batch[key] or "", None)

    def billed_usd(self, price_input: float, price_output: float, price_factor: float = 0.5) -> float:
        """What the billed tokens cost at these list prices (USD per 1M tokens) and the Batch discount."""
        stats = self.stats()
        return price_factor * (stats["prompt_tokens_billed"] * price_input
                               + stats["completion_tokens_billed"] * price_output) / 1_000_000

    # --- files ---------------------------------------------------------------------------
    def _new_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        self._file_count += 1  # ids are never reused, also after `vanish`
        file_id = f"file-{self._file_count:04d}"
        record = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                  "filename": filename, "purpose": purpose, "status": "processed"}
        self.files[file_id] = record
        self.contents[file_id] = data
        return record

    def _upload(self, request: RouteRequest) -> RouteResponse:
        form = _multipart(request)
        if "file" not in form or form.get("purpose", (None, b""))[1] != b"batch":
            return _error("A file and purpose='batch' are required.")
        filename, data = form["file"]
        with self._lock:
            record = self._new_file(data, filename or "upload.jsonl", "batch")
            self._stats["files_uploaded"] += 1
        return RouteResponse(200, record)

    def _file(self, request: RouteRequest) -> RouteResponse:
        parts = request.path.rstrip("/").split("/")  # ['', 'v1', 'files', id, ('content')]
        file_id = parts[3] if len(parts) > 3 else ""
        with self._lock:
            if file_id not in self.files:
                return _error(f"No such File object: {file_id}", status=404)
            if parts[-1] == "content":
                return RouteResponse(200, self.contents[file_id], {"content-type": "application/octet-stream"})
            return RouteResponse(200, self.files[file_id])

    # --- batches ---------------------------------------------------------------------------
    def _batches_post(self, request: RouteRequest) -> RouteResponse:
        parts = request.path.rstrip("/").split("/")
        if len(parts) == 5 and parts[4] == "cancel":
            return self._cancel(parts[3])
        body = request.json()
        with self._lock:
            file_id = body.get("input_file_id")
            if file_id not in self.files:
                return _error(f"Invalid input_file_id: {file_id}", status=404)
            if body.get("endpoint") not in ("/v1/completions", "/v1/chat/completions"):
                return _error(f"Unsupported endpoint {body.get('endpoint')}")
            if body.get("completion_window") != "24h":
                return _error("completion_window must be 24h")
            ordinal = self._stats["batches_created"]
            batch_id = f"batch_{ordinal:04d}"
            lines = self.contents[file_id].decode("utf-8").splitlines()
            self.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                "input_file_id": file_id, "completion_window": "24h", "status": "validating",
                "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "metadata": body.get("metadata"), "_ordinal": ordinal,
            }
            self._polls[batch_id] = 0
            self._stats["batches_created"] += 1
            self._stats["lines_submitted"] += len(lines)
            public = self._public(batch_id)
            slow = ordinal < self.options.slow_creates
        if slow:  # made, but the answer comes late: a client timing out does not know it exists
            time.sleep(self.options.create_delay_s)
        return RouteResponse(200, public)

    def _public(self, batch_id: str) -> dict[str, Any]:
        return {k: v for k, v in self.batches[batch_id].items() if not k.startswith("_")}

    def _batches_get(self, request: RouteRequest) -> RouteResponse:
        parts = request.path.rstrip("/").split("/")
        with self._lock:
            if len(parts) == 3:  # list, newest first, in pages of `limit` after the id `after`
                query = urllib.parse.parse_qs(request.query)
                limit = min(int(query.get("limit", ["20"])[0]), self.options.max_page_size)
                ids = list(reversed(self.batches))
                after = query.get("after", [None])[0]
                start = ids.index(after) + 1 if after in ids else 0
                data = [self._public(b) for b in ids[start:start + limit]]
                return RouteResponse(200, {"object": "list", "data": data, "has_more": start + limit < len(ids),
                                           "first_id": data[0]["id"] if data else None,
                                           "last_id": data[-1]["id"] if data else None})
            batch_id = parts[3]
            poll = self._stats["retrieves"] + self._stats["polls_failed"]
            outage = self.options.outage
            if outage is not None and outage[0] <= poll < outage[1]:
                self._stats["polls_failed"] += 1
                status = self.options.outage_status
                message = "Incorrect API key provided." if status == 401 else "The server is overloaded."
                return _error(message, code="invalid_api_key" if status == 401 else None, status=status)
            if batch_id not in self.batches:
                return _error(f"No such batch: {batch_id}", status=404)
            self._stats["retrieves"] += 1
            self._advance(batch_id)
            return RouteResponse(200, self._public(batch_id))

    def _cancel(self, batch_id: str) -> RouteResponse:
        with self._lock:
            if batch_id not in self.batches:
                return _error(f"No such batch: {batch_id}", status=404)
            batch = self.batches[batch_id]
            if batch["status"] in STAGES:
                batch["status"] = "cancelling"
                self._stats["cancels"] += 1
            return RouteResponse(200, self._public(batch_id))

    def _advance(self, batch_id: str) -> None:
        """One step of the status machine (called under the lock, on each retrieve)."""
        batch = self.batches[batch_id]
        self._polls[batch_id] += 1
        if self._polls[batch_id] < self.options.polls_per_stage:
            return
        self._polls[batch_id] = 0
        status = batch["status"]
        if status == "cancelling":
            self._finish(batch, "cancelled", answered=0)
        elif status == "validating":
            problem = self._validate(batch) or self._over_token_limit(batch)
            if problem is not None:
                batch["status"] = "failed"
                batch["errors"] = {"object": "list", "data": problem if isinstance(problem, list) else [problem]}
            else:
                batch["status"] = "in_progress"
        elif status == "in_progress":
            batch["status"] = "finalizing"
        elif status == "finalizing":
            if batch["_ordinal"] in self.options.expire:
                self._finish(batch, "expired", answered=self.options.expire_keep)
            else:
                self._finish(batch, "completed", answered=None)

    def _validate(self, batch: dict[str, Any]) -> dict[str, Any] | list[dict[str, Any]] | None:
        if batch["_ordinal"] in self.options.fail_validation:  # as the API does: one error per line
            return [{"code": "invalid_model", "line": number, "message": "The model `x` does not exist.",
                     "param": "body.model"}
                    for number in range(1, len(self.contents[batch["input_file_id"]].splitlines()) + 1)]
        seen: set[str] = set()
        for number, raw in enumerate(self.contents[batch["input_file_id"]].decode().splitlines(), start=1):
            try:
                line = json.loads(raw)
            except ValueError:
                return {"code": "invalid_json_line", "line": number, "message": "This line is not valid JSON.", "param": None}
            if line.get("url") != batch["endpoint"] or line.get("method") != "POST":
                return {"code": "mismatched_endpoint", "line": number, "param": "url",
                        "message": "The url of this line does not match the batch's endpoint."}
            if line.get("custom_id") in seen:
                return {"code": "duplicate_custom_id", "line": number, "param": "custom_id",
                        "message": "The custom_id for this request is a duplicate of another request."}
            seen.add(line.get("custom_id"))
        return None

    def _prompt_tokens(self, batch: dict[str, Any]) -> int:
        """The batch's prompt tokens as this server counts (and bills) them."""
        total = 0
        for raw in self.contents[batch["input_file_id"]].decode().splitlines():
            body = json.loads(raw)["body"]
            prompts = body.get("prompt") if "prompt" in body else [m["content"] for m in body["messages"]]
            prompts = [prompts] if isinstance(prompts, str) else prompts
            total += sum(approx_tokens(p) for p in prompts)
        return total

    def _over_token_limit(self, batch: dict[str, Any]) -> dict[str, Any] | None:
        limit = self.options.enqueued_token_limit
        if limit is None:
            return None
        enqueued = sum(self._prompt_tokens(b) for b in self.batches.values()
                       if b["status"] in ("in_progress", "finalizing"))
        if enqueued + self._prompt_tokens(batch) <= limit:
            self._stats["max_enqueued_tokens"] = max(self._stats["max_enqueued_tokens"], enqueued + self._prompt_tokens(batch))
            return None
        model = json.loads(self.contents[batch["input_file_id"]].decode().splitlines()[0])["body"].get("model")
        return {"code": "token_limit_exceeded", "line": None, "param": None,
                "message": f"Enqueued token limit reached for {model} in organization org-loopback. "
                           f"Limit: {limit:,} enqueued tokens. Please try again once some in_progress "
                           "batches have been completed."}

    def _answer_line(self, line: dict[str, Any], api: str) -> dict[str, Any]:
        """A line's response as the API's batch output writes it."""
        cid = line["custom_id"]
        body = line["body"]
        self._attempts[cid] = self._attempts.get(cid, 0) + 1
        request_id = "req_" + hashlib.sha256(f"{cid}/{self._attempts[cid]}".encode()).hexdigest()[:16]
        status, payload = 200, None
        if self._attempts[cid] <= self.options.line_errors.get(cid, 0):
            status = 500
            payload = {"error": {"message": "The server had an error while processing your request.",
                                 "type": "server_error", "param": None, "code": None}}
        elif any(name in body for name in self.options.unsupported):
            param = next(name for name in self.options.unsupported if name in body)
            status = 400
            payload = {"error": {"message": f"Unsupported parameter: '{param}' is not supported with this model.",
                                 "type": "invalid_request_error", "param": param, "code": "unsupported_parameter"}}
        elif self.options.context_window is not None:
            prompts = body.get("prompt") if api == "completions" else [m["content"] for m in body["messages"]]
            prompts = [prompts] if isinstance(prompts, str) else prompts
            requested = max(approx_tokens(p) for p in prompts) + int(body.get("max_tokens") or 16)
            if requested > self.options.context_window:
                status = 400
                payload = {"error": {"message": f"This model's maximum context length is "
                                                f"{self.options.context_window} tokens. However, you requested "
                                                f"{requested} tokens.", "type": "invalid_request_error",
                                     "param": "messages", "code": "context_length_exceeded"}}
        if payload is None:
            payload = self.server.answer(api, body)
            usage = payload.get("usage") or {}
            self._stats["prompt_tokens_billed"] += int(usage.get("prompt_tokens") or 0)
            self._stats["completion_tokens_billed"] += int(usage.get("completion_tokens") or 0)
            self._paid[cid] = self._paid.get(cid, 0) + 1
            self._stats["lines_paid_twice"] += int(self._paid[cid] == 2)
        return {"id": f"batch_req_{request_id[4:]}", "custom_id": cid,
                "response": {"status_code": status, "request_id": request_id, "body": payload}, "error": None}

    def _finish(self, batch: dict[str, Any], status: str, answered: int | None) -> None:
        """Answer the batch's lines (all, or the first `answered`) and write its output and error files."""
        api = "completions" if batch["endpoint"] == "/v1/completions" else "chat"
        output, errors = [], []
        lines = [json.loads(raw) for raw in self.contents[batch["input_file_id"]].decode().splitlines()]
        for number, line in enumerate(lines):
            if answered is not None and number >= answered:
                if status == "expired":
                    errors.append({"id": f"batch_req_x{number}", "custom_id": line["custom_id"], "response": None,
                                   "error": {"code": "batch_expired", "message": "This request could not be "
                                             "executed before the completion window expired."}})
                continue
            record = self._answer_line(line, api)
            (output if record["response"]["status_code"] == 200 else errors).append(record)
        for key, records in (("output_file_id", output), ("error_file_id", errors)):
            if records:
                data = "".join(json.dumps(r) + "\n" for r in records).encode()
                batch[key] = self._new_file(data, f"{batch['id']}_{key[:-8]}.jsonl", "batch_output")["id"]
        batch["status"] = status
        batch["request_counts"] = {"total": len(lines), "completed": len(output), "failed": len(errors)}
        batch[f"{status}_at"] = int(time.time())
        self._stats["lines_answered"] += len(output)
        self._stats["lines_failed"] += len(errors)


def main(argv: list[str] | None = None) -> None:
    """Serve the synchronous and Batch endpoints until SIGTERM/SIGINT; write the port to --port_file.

    Takes every flag of `python -m tests.fakes.openai_server`, plus --polls_per_stage and the faults
    --enqueued_token_limit, --outage START:STOP, --outage_status, --slow_creates, --create_delay_s."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_server_arguments(parser)
    parser.add_argument("--polls_per_stage", type=int, default=1, help="status polls before a batch moves on")
    parser.add_argument("--enqueued_token_limit", type=int, default=None,
                        help="fail batches over this many prompt tokens in progress (token_limit_exceeded)")
    parser.add_argument("--outage", default=None, metavar="START:STOP",
                        help="status polls numbered START..STOP-1 answer --outage_status")
    parser.add_argument("--outage_status", type=int, default=503)
    parser.add_argument("--slow_creates", type=int, default=0, help="the first N creates answer late")
    parser.add_argument("--create_delay_s", type=float, default=0.0)
    args = parser.parse_args(argv)
    outage = None
    if args.outage:
        start, _, stop = args.outage.partition(":")
        outage = (int(start), int(stop))
    server = OpenAIServer(options_from_args(args), port=args.port)
    BatchAPI.install(server, BatchOptions(
        polls_per_stage=args.polls_per_stage, enqueued_token_limit=args.enqueued_token_limit, outage=outage,
        outage_status=args.outage_status, slow_creates=args.slow_creates, create_delay_s=args.create_delay_s))
    serve_until_signalled(server, args.port_file, "with /v1/files and /v1/batches")


if __name__ == "__main__":
    main()
