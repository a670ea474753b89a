"""A tiny JSON HTTP server on 127.0.0.1 for CLI tests that need a backend answering exactly
what the test says (hostile values included)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from substrateinterface import Keypair

from kumulus.core.signing import HDR_ANSWER_SIGNATURE, HDR_NONCE, sign_answer

# (method, path with query) -> (status, JSON body)
Answer = Callable[[str, str], tuple[int, Any]]


class JsonServer:
    """Serves `answer` until the `with` block ends; `url` is its base URL. `requests` keeps
    (method, path, JSON body or None) of every request, in order. With `signer`, it answers
    signed backend requests as an agent does (kumulus.agent.signed_answers)."""

    def __init__(self, answer: Answer, signer: Keypair | None = None) -> None:
        requests: list[tuple[str, str, Any]] = []
        self.requests = requests

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                requests.append((self.command, self.path, body))
                status, body = answer(self.command, self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                nonce = self.headers.get(HDR_NONCE)
                if signer is not None and nonce:
                    signature = sign_answer(signer, status, data, nonce)
                    self.send_header(HDR_ANSWER_SIGNATURE, signature)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _reply

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> JsonServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
