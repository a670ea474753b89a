"""Response headers every answer of the backend (API and consoles) carries, and the Host
names it answers to.

The consoles run no script but their own files (`console.js`, htmx) and no inline script
or handler; inline `<style>` elements are refused too, only style attributes (the meters'
widths) are allowed. No page may be framed (clickjacking: `frame-ancestors 'none'` and,
for older browsers, `X-Frame-Options`). No URL leaks to other sites through Referer.
Answers are `no-store` unless a route says otherwise: pages and answers carry once-shown
secrets (API tokens, host tokens, the setup one-liner), and the setup script must never be
served stale from a cache. Static files and the agent package (pinned by its SHA-256)
may be cached. FastAPI's own /docs and /redoc pages load Swagger UI and ReDoc from a CDN
with inline scripts, so they get no CSP (they hold no secret and run no action)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONSOLE_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
_NO_CSP = ("/docs", "/redoc")
_CACHEABLE = ("/console/static/", "/downloads/")
_LOOPBACK = ("localhost", "127.0.0.1")


class SecurityHeaders:
    """ASGI middleware adding the headers above to every HTTP answer (a route's own
    Cache-Control wins)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if not path.startswith(_NO_CSP):
                    headers.setdefault("Content-Security-Policy", CONSOLE_CSP)
                if not path.startswith(_CACHEABLE):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def trusted_hosts(public_url: str | None, extra: list[str]) -> list[str] | None:
    """The Host names to accept: None (any) without a public URL; otherwise its host, the
    configured extra names and the loopback names (`GET /metrics` is for loopback peers,
    and a browser never sends a loopback Host for a page of another origin, so allowing
    them opens nothing to DNS rebinding)."""
    if not public_url:
        return None
    host = urlsplit(public_url).hostname or ""
    return sorted({name for name in (host, *extra, *_LOOPBACK) if name})
