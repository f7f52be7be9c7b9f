"""Shared infrastructure for dgbench: data, checkpoints, entry-point plumbing."""


class DGBenchError(Exception):
    """An error the user can fix. Entry points print its message as one line and exit non-zero."""
