"""A fake LLM vendor on a real socket, speaking OpenAI's chat completions and Anthropic's
Messages wire formats (issue 19), for the server's providers to be pointed at.

Each test scripts the replies it wants, in order (:meth:`FakeVendor.script`): a JSON
value the model "answers" (wrapped as each vendor wraps structured output: a message's
content for OpenAI, a forced tool call's input for Anthropic), raw text that is not
JSON, a refusal, an HTTP error status, or a delay. Unscripted calls answer no facts.
Every request body received is kept, so a test can read what the server sent.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NO_FACTS = {"facts": [], "rules": []}


@dataclass(frozen=True)
class Answer:
    """One scripted reply: exactly one of ``data`` (JSON), ``text`` (raw content),
    ``refusal`` or ``status`` (an HTTP error), after ``delay_s``."""

    data: Any = None
    text: str | None = None
    refusal: str | None = None
    status: int | None = None
    delay_s: float = 0.0
    input_tokens: int = 120
    output_tokens: int = 40


def reply(data: Any) -> Answer:
    return Answer(data=data)


class FakeVendor:
    """Both vendors' endpoints on one port: ``/v1/chat/completions``, ``/v1/messages``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: list[Answer] = []
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                answer = vendor._next(self.path, body, dict(self.headers))
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                if answer.status is not None:
                    payload = {"error": {"type": "rate_limit_error" if answer.status == 429
                                         else "api_error", "message": "scripted failure"}}
                    self._send(answer.status, payload, {"retry-after": "7"})
                    return
                if self.path.endswith("/chat/completions"):
                    self._send(200, openai_completion(body, answer))
                elif self.path.endswith("/messages"):
                    self._send(200, anthropic_message(body, answer))
                else:
                    self._send(404, {"error": {"type": "not_found", "message": self.path}})

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeVendor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, *answers: Answer) -> None:
        """Replace the queue of replies and forget the requests seen so far."""
        with self._lock:
            self._script = list(answers)
            self.requests.clear()
            self.paths.clear()
            self.headers.clear()

    def _next(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        with self._lock:
            self.requests.append(body)
            self.paths.append(path)
            self.headers.append({k.lower(): v for k, v in headers.items()})
            return self._script.pop(0) if self._script else reply(NO_FACTS)


def openai_completion(request: dict[str, Any], answer: Answer) -> dict[str, Any]:
    """A ``chat.completion`` object as OpenAI (and Ollama, vLLM…) return it."""
    content = answer.text if answer.data is None else json.dumps(answer.data)
    message = {"role": "assistant", "content": None if answer.refusal else content,
               "refusal": answer.refusal}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_800_000_000,
        "model": request.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
        },
    }


def anthropic_message(request: dict[str, Any], answer: Answer) -> dict[str, Any]:
    """A Messages ``message`` as Anthropic returns it: a tool call, text, or a refusal."""
    tool = (request.get("tool_choice") or {}).get("name", "record")
    if answer.refusal is not None:
        content = [{"type": "text", "text": answer.refusal}]
        stop = "refusal"
    elif answer.data is not None:
        content = [{"type": "tool_use", "id": "toolu_fake", "name": tool, "input": answer.data}]
        stop = "tool_use"
    else:
        content = [{"type": "text", "text": answer.text or ""}]
        stop = "end_turn"
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": request.get("model"),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens},
    }
