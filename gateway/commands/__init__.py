"""CLI sub-commands: each module exposes `app`, a Typer group mounted by gateway/cli.py."""
