"""Developer and provider web consoles (server-rendered Jinja2 + htmx), mounted on the
backend by kumulus.server."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from kumulus.console import account_views, billing_views, developer_views, provider_views
from kumulus.console.web import LoginRequiredError, render


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

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Console pages answer errors with a page a person can read; the API keeps JSON.
        if not request.url.path.startswith("/console/") or request.url.path.startswith(
            "/console/static/"
        ):
            return await http_exception_handler(request, exc)
        return render(
            request,
            "error.html",
            {"title": "Error", "status": exc.status_code, "message": exc.detail},
            status_code=exc.status_code,
        )
