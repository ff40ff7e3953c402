#!/usr/bin/env python3
"""A fake model API on 127.0.0.1 for the real agent CLIs (test tool, not run-time code).

    python3 tests/live/fake_model_api.py --port-file /tmp/port [--log requests.ndjson]

Serves the three wire shapes the CLIs speak, streaming (server-sent events) or not:

- OpenAI Responses (``POST .../responses``, codex) and Chat Completions
  (``POST .../chat/completions``, opencode's openai-compatible provider);
- Anthropic Messages (``POST .../v1/messages``, Claude Code);
- Gemini (``POST .../models/<model>:streamGenerateContent`` / ``:generateContent``).

The first path segment picks the case, so one server answers every test:
``http://127.0.0.1:PORT/<case>/...`` where ``<case>`` is

- ``ok``: a short final answer (``FAKE-SUMMARY: the task is done.``);
- ``401``: an authentication error in the vendor's body shape;
- ``429``: a rate-limit error with ``Retry-After: 37`` (and the vendor's retry fields);
- ``quota``: a usage limit that resets in 90 minutes, as each vendor words it (OpenAI
  ``usage_limit_reached`` with ``resets_in_seconds``, Anthropic's unified rate-limit headers,
  Google ``QUOTA_EXHAUSTED`` with ``quotaResetDelay``);
- ``500``, ``503``, ``529``: server errors (529 is Anthropic's ``overloaded_error``);
- ``never``: accepts the request and never answers (until the client goes or 600 s pass).

Anything else under a case (model lists, token counts) gets a small valid answer. Every
request is appended to ``--log`` as one JSON line (method, path, case) so tests can count
them. The server stops on SIGTERM or after ``--lifetime`` seconds (default 1800).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ANSWER = "FAKE-SUMMARY: the task is done."
RETRY_AFTER_SECONDS = 37
QUOTA_RESET_SECONDS = 5400
CASES = ("ok", "401", "429", "quota", "500", "503", "529", "never")
# What every answer reports it used, in each vendor's shape (distinct figures, so a test can
# tell which field a CLI passed on as which): 1200 input tokens of which 200 read from a cache,
# 70 output tokens of which 30 reasoning (Anthropic: 1000 input not cached, 200 cache reads, 50
# cache writes; Gemini: 40 candidate and 30 thought tokens).
CHAT_USAGE = {"prompt_tokens": 1200, "prompt_tokens_details": {"cached_tokens": 200}, "completion_tokens": 70,
              "completion_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 1270}


def _sse(events: list[tuple[str | None, dict]]) -> bytes:
    lines = []
    for name, data in events:
        if name:
            lines.append(f"event: {name}")
        lines.append("data: " + json.dumps(data))
        lines.append("")
    return ("\n".join(lines) + "\n").encode()


def openai_error(status: int) -> dict:
    """An OpenAI-style error body for ``status``."""
    kinds = {
        401: ("Incorrect API key provided: fake-key. You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"),
        429: ("Rate limit reached for requests. Please try again in 37s.", "requests", "rate_limit_exceeded"),
        500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
        503: ("The engine is currently overloaded, please try again later.", "server_error", None),
        529: ("The engine is currently overloaded, please try again later.", "server_error", None),
    }
    message, kind, code = kinds[status]
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def anthropic_error(status: int) -> dict:
    """An Anthropic-style error body for ``status``."""
    kinds = {
        401: ("authentication_error", "invalid x-api-key"),
        429: ("rate_limit_error", "This request would exceed your account's rate limit. Please try again later."),
        500: ("api_error", "Internal server error"),
        503: ("api_error", "Service unavailable"),
        529: ("overloaded_error", "Overloaded"),
    }
    kind, message = kinds[status]
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}


def gemini_error(status: int) -> dict:
    """A Google-style error body for ``status``."""
    kinds = {
        401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
        429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        500: ("INTERNAL", "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
        503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        529: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    }
    state, message = kinds[status]
    error: dict = {"code": status, "message": message, "status": state}
    if status == 429:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{RETRY_AFTER_SECONDS}s"}]
    return {"error": error}


def responses_stream(model: str) -> bytes:
    """An OpenAI Responses stream that answers :data:`ANSWER`."""
    item = {"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": ANSWER, "annotations": []}]}
    response = {"id": "resp_fake", "object": "response", "created_at": int(time.time()), "status": "completed",
                "model": model, "output": [item],
                "usage": {"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 200}, "output_tokens": 70,
                          "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 1270}}
    return _sse([
        ("response.created", {"type": "response.created", "response": {**response, "status": "in_progress", "output": []}}),
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": {**item, "status": "in_progress", "content": []}}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "item_id": "msg_fake", "output_index": 0, "content_index": 0, "delta": ANSWER}),
        ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
        ("response.completed", {"type": "response.completed", "response": response}),
    ])


def chat_stream(model: str) -> bytes:
    """An OpenAI Chat Completions stream that answers :data:`ANSWER`."""
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ANSWER}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
         "usage": CHAT_USAGE},
    ]
    return _sse([(None, chunk) for chunk in chunks]) + b"data: [DONE]\n\n"


def chat_completion(model: str) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
            "usage": CHAT_USAGE}


def anthropic_message(model: str) -> dict:
    return {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 1000, "cache_creation_input_tokens": 50, "cache_read_input_tokens": 200, "output_tokens": 70}}


def anthropic_stream(model: str) -> bytes:
    message = anthropic_message(model)
    return _sse([
        ("message_start", {"type": "message_start", "message": {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 1000, "cache_creation_input_tokens": 50, "cache_read_input_tokens": 200, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": ANSWER}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 70}}),
        ("message_stop", {"type": "message_stop"}),
    ])


def gemini_response() -> dict:
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": ANSWER}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 1200, "cachedContentTokenCount": 200, "candidatesTokenCount": 40, "thoughtsTokenCount": 30,
                              "totalTokenCount": 1270},
            "modelVersion": "gemini-2.5-pro"}


class Handler(BaseHTTPRequestHandler):
    """Answers by case (the first path segment) and wire shape (the rest of the path)."""

    protocol_version = "HTTP/1.1"
    log_file: Path | None = None

    def log_message(self, format: str, *args: object) -> None:
        return

    def _record(self, case: str) -> None:
        if self.log_file is not None:
            with self.log_file.open("a") as handle:
                handle.write(json.dumps({"method": self.command, "path": self.path, "case": case}) + "\n")

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _json(self, status: int, document: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(document).encode(), headers=headers)

    def do_GET(self) -> None:
        case = self.path.strip("/").split("/", 1)[0]
        self._record(case)
        if "models" in self.path:
            self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "fake"}],
                             "models": [{"name": "models/gemini-2.5-pro", "slug": "fake-model"}]})
        else:
            self._json(200, {})

    def do_HEAD(self) -> None:
        self._send(200, b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            request = {}
        case = self.path.strip("/").split("/", 1)[0]
        self._record(case)
        path = self.path.split("?", 1)[0]
        model = request.get("model") or "fake-model"
        if case == "never":
            self._hang()
            return
        if case in ("401", "429", "500", "503", "529"):
            self._error(int(case), path)
            return
        if case == "quota":
            self._quota(path)
            return
        if "count_tokens" in path:
            self._json(200, {"input_tokens": 10})
        elif path.endswith("/responses"):
            self._send(200, responses_stream(model), "text/event-stream")
        elif path.endswith("/chat/completions"):
            if request.get("stream"):
                self._send(200, chat_stream(model), "text/event-stream")
            else:
                self._json(200, chat_completion(model))
        elif path.endswith("/messages"):
            if request.get("stream"):
                self._send(200, anthropic_stream(model), "text/event-stream")
            else:
                self._json(200, anthropic_message(model))
        elif ":streamGenerateContent" in path:
            self._send(200, _sse([(None, gemini_response())]), "text/event-stream")
        elif ":generateContent" in path:
            self._json(200, gemini_response())
        elif ":countTokens" in path:
            self._json(200, {"totalTokens": 10})
        else:
            self._json(404, {"error": {"message": f"fake API: no route for {path}"}})

    def _error(self, status: int, path: str) -> None:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "retry-after-ms": "20"} if status == 429 else {}
        if path.endswith("/messages"):
            self._json(status, anthropic_error(status), {**headers, "request-id": "req_fake"})
        elif "generatecontent" in path.lower() or "counttokens" in path.lower():
            self._json(status, gemini_error(status), headers)
        else:
            self._json(status, openai_error(status), headers)

    def _quota(self, path: str) -> None:
        reset = int(time.time()) + QUOTA_RESET_SECONDS
        if path.endswith("/messages"):
            headers = {"anthropic-ratelimit-unified-status": "rejected", "anthropic-ratelimit-unified-reset": str(reset),
                       "anthropic-ratelimit-unified-representative-claim": "five_hour", "retry-after": str(QUOTA_RESET_SECONDS)}
            self._json(429, anthropic_error(429), headers)
        elif "generatecontent" in path.lower():
            self._json(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                       "message": "You have exhausted your capacity on this model.",
                                       "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "QUOTA_EXHAUSTED",
                                                    "domain": "cloudcode-pa.googleapis.com",
                                                    "metadata": {"quotaResetDelay": f"{QUOTA_RESET_SECONDS}s", "uiMessage": "true"}},
                                                   {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{QUOTA_RESET_SECONDS}s"}]}})
        else:
            self._json(429, {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                                       "plan_type": "plus", "resets_at": reset, "resets_in_seconds": QUOTA_RESET_SECONDS}})

    def _hang(self) -> None:
        end = time.monotonic() + 600
        while time.monotonic() < end:
            time.sleep(0.5)
            try:
                self.connection.settimeout(0.01)
                if self.connection.recv(1, 0x2) == b"":  # MSG_PEEK: the client hung up
                    return
            except (BlockingIOError, TimeoutError, OSError):
                continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True, help="write the port here once listening")
    parser.add_argument("--log", help="append one JSON line per request here")
    parser.add_argument("--lifetime", type=float, default=1800.0)
    args = parser.parse_args(argv)
    Handler.log_file = Path(args.log) if args.log else None
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Path(args.port_file).write_text(str(server.server_address[1]))
    server.timeout = 1.0
    end = time.monotonic() + args.lifetime
    while time.monotonic() < end:
        server.handle_request()
    return 0


if __name__ == "__main__":
    sys.exit(main())
