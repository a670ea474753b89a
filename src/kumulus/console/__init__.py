"""Developer and provider web consoles (server-rendered Jinja2 + htmx), mounted on the
backend by kumulus.server."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from kumulus.console import account_views, billing_views, developer_views, provider_views
from kumulus.console.web import LoginRequiredError, render
from kumulus.core.errors import KumulusError
from kumulus.core.http import (
    error_headers,
    error_response,
    http_exception_response,
    status_of,
)


def mount(app: FastAPI) -> None:
    """Add the consoles' pages, static files and error pages to the backend app."""
    app.mount(
        "/console/static",
        StaticFiles(directory=str(resources.files("kumulus.console") / "static")),
        name="console-static",
    )
    app.include_router(account_views.router)
    app.include_router(developer_views.router)
    app.include_router(provider_views.router)
    app.include_router(billing_views.router)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/console/", status_code=303)

    @app.exception_handler(LoginRequiredError)
    async def _login(request: Request, _: LoginRequiredError) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/console/login"})
        return RedirectResponse("/console/login", status_code=303)

    def _page(request: Request) -> bool:
        path = request.url.path
        return path.startswith("/console/") and not path.startswith("/console/static/")

    # Console pages answer errors with a page a person can read; the API keeps its
    # ErrorBody (kumulus.core.http).
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not _page(request):
            return http_exception_response(exc)
        return render(
            request,
            "error.html",
            {"title": "Error", "status": exc.status_code, "message": exc.detail},
            status_code=exc.status_code,
        )

    @app.exception_handler(KumulusError)
    async def _error(request: Request, exc: KumulusError) -> Response:
        if not _page(request):
            return error_response(exc)
        status = status_of(exc)
        response = render(
            request,
            "error.html",
            {"title": "Error", "status": status, "message": exc.detail},
            status_code=status,
        )
        if "Retry-After" in (headers := error_headers(exc)):
            response.headers["Retry-After"] = headers["Retry-After"]
        return response
