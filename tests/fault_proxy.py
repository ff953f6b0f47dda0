"""A real HTTP server on 127.0.0.1 that forwards to an upstream server, except for the faults it is told to inject.

Faults are consumed one per request, in order: ``"429"``, ``"500"``, ``"503"``, ``"401"`` (that status), ``"slow"``
(sleep ``slow_s`` and then forward: longer than the client's timeout), ``"hang"`` (accept the request and never
answer, until the proxy closes), ``"garbage"`` (HTTP 200 with a non-JSON body), ``"verdict:TEXT"`` (a well-formed
chat completion whose content is TEXT), ``"forward"``. When the list is empty, ``default`` applies ("forward" or a
fault). Every POST's headers and body are recorded; a GET (the preflight's ``/models`` probe) is always forwarded.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


class FaultProxy:
    def __init__(self, upstream: str, faults=(), default: str = "forward", slow_s: float = 2.0):
        self.upstream, self.faults, self.default, self.slow_s = upstream.rstrip("/"), list(faults), default, slow_s
        self.requests: list[dict] = []  # headers of every request, in arrival order
        self.bodies: list[bytes] = []  # and its body
        self.lock = threading.Lock()
        self.closed = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                up = requests.get(proxy.upstream + self.path.removeprefix("/v1"), timeout=60)
                self._send(up.status_code, up.content)

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with proxy.lock:
                    proxy.requests.append(dict(self.headers))
                    proxy.bodies.append(body)
                    fault = proxy.faults.pop(0) if proxy.faults else proxy.default
                if fault == "hang":
                    proxy.closed.wait()
                    return None
                if fault.isdigit():
                    return self._send(int(fault), b'{"error": "injected"}', {"Retry-After": "0"})
                if fault == "garbage":
                    return self._send(200, b"<html>upstream exploded</html>")
                if fault.startswith("verdict:"):
                    completion = {
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": fault[8:]}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
                    }
                    return self._send(200, json.dumps(completion).encode())
                if fault == "slow":
                    time.sleep(proxy.slow_s)
                up = requests.post(
                    proxy.upstream + self.path.removeprefix("/v1"),
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=60,
                )
                self._send(up.status_code, up.content)

            def _send(self, status: int, body: bytes, headers: dict | None = None):
                try:
                    self.send_response(status)
                    for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first: fine
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()
