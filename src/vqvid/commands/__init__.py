"""Subcommands of `vqvid`; each module exposes `main(argv: list[str] | None) -> int`."""
