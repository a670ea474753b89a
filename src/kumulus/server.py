"""Composition root: the backend API with the web consoles mounted on it."""

from __future__ import annotations

from fastapi import FastAPI

from kumulus import console
from kumulus.backend.app import create_app
from kumulus.config import BackendSettings


def create_server(settings: BackendSettings) -> FastAPI:
    app = create_app(settings)
    console.mount(app)
    return app
