"""Request bodies are bounded before anything else looks at them.

`BodyLimit` is the outermost layer of both apps: a body larger than its path's limit is
answered 413 (the platform's error body) before routing, authentication or parsing, from
`Content-Length` alone when the client declares it (nothing of the body is read: the
client is told at once, and a client that sent `Expect: 100-continue` never sends it), or
as soon as a chunked body passes the limit. A body within the limit is read whole here and
handed on as one message, so what authenticates the caller (a signature over the body's
hash) and what parses it see the same bytes, and neither can be made to read more.

Pure ASGI (not BaseHTTPMiddleware): nothing is buffered on the answer's side and nothing
runs on another task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kumulus.core.errors import InvalidError, TooLargeError
from kumulus.core.http import error_response


def _size(limit: int) -> str:
    return f"{limit // 1024} KiB" if limit < 1 << 20 else f"{limit / (1 << 20):g} MiB"


class BodyLimit:
    """ASGI middleware: at most `default` bytes of request body, or `per_path[path]` for
    the paths named there (exact paths, as routed), or else `per_prefix[prefix]` for the
    longest prefix of the path named there. Larger bodies are answered 413 `too_large` and
    never read past the limit (`on_refused(path)` is told, e.g. to count it); a
    `Content-Length` that is not a number is answered 422."""

    def __init__(
        self,
        app: ASGIApp,
        default: int,
        per_path: Mapping[str, int] | None = None,
        per_prefix: Mapping[str, int] | None = None,
        on_refused: Callable[[str], None] | None = None,
    ):
        self.app = app
        self.on_refused = on_refused
        self.default = default
        self.per_path = dict(per_path or {})
        self.per_prefix = sorted((per_prefix or {}).items(), key=lambda kv: -len(kv[0]))

    def limit_of(self, path: str) -> int:
        """The most bytes of body a request to `path` may send."""
        if path in self.per_path:
            return self.per_path[path]
        for prefix, limit in self.per_prefix:
            if path.startswith(prefix):
                return limit
        return self.default

    def _refused(self, path: str) -> None:
        if self.on_refused is not None:
            self.on_refused(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope["path"])
        refused = TooLargeError(
            f"request body too large: at most {_size(limit)} ({limit} bytes) here"
        )
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):  # '²' is a digit to isdigit
                await error_response(InvalidError("Content-Length is not a number"))(
                    scope, receive, send
                )
                return
            if int(declared) > limit:
                self._refused(scope["path"])
                await error_response(refused)(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                self._refused(scope["path"])
                await error_response(refused)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        handed = False

        async def replay() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only the disconnect is left

        await self.app(scope, replay, send)
