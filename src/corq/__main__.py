"""`python -m corq` runs the CLI."""

from __future__ import annotations

from corq.cli import main

main()
