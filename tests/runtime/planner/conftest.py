"""A local OpenAI-compatible HTTP server replaying scripted replies (the real ``openai`` client talks to it
over HTTP: openai ≥ 3 uses httpx2, which respx does not intercept), and ambiguous world scenes."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def completion(content, finish="stop", refusal=None) -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "test-vlm",
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": content, "refusal": refusal}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class Reply:
    """One scripted reply: HTTP status, a JSON body (dict) or raw bytes, an optional delay before it."""

    def __init__(self, body, status=200, delay=0.0):
        self.body, self.status, self.delay = body, status, delay


class VLMServer:
    def __init__(self):
        self.replies: list = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.default = None          # reply when the script is exhausted (None: 500)
        self.reject_json_schema = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                fmt = (body.get("response_format") or {}).get("type")
                if server.reject_json_schema and fmt == "json_schema":
                    r = Reply({"error": {"message": "response_format json_schema is not supported by this server",
                                         "type": "invalid_request_error"}}, status=400)
                elif server.replies:
                    r = server.replies.pop(0)
                    if callable(r):
                        r = r(body)
                else:
                    r = server.default or Reply({"error": {"message": "no reply scripted"}}, status=500)
                if r.delay:
                    time.sleep(r.delay)
                data = r.body if isinstance(r.body, bytes) else json.dumps(r.body).encode()
                try:
                    self.send_response(r.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def json(self, obj, **kw):
        self.replies.append(Reply(completion(json.dumps(obj)), **kw))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def vlm():
    s = VLMServer()
    yield s
    s.close()


@pytest.fixture(scope="session")
def scenes():
    """Candidates of a few ambiguous world scenes (ground truth), by seed."""
    pytest.importorskip("mujoco")
    from kinebridge.drivers.world import SceneSpec, World
    from kinebridge.runtime.planner.candidates import from_world

    return {seed: from_world(World(SceneSpec.random(seed, ambiguous=True, particles=0, tool="none")))
            for seed in (3, 4, 5, 6)}
