"""`python -m kumulus.cli`: what the `kumulus` entry point runs."""

from kumulus.cli import app

app()
