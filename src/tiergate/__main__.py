"""`python -m tiergate` runs the CLI (tests use it to avoid depending on the console script's path)."""

from tiergate.cli import app

app()
