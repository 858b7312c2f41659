"""`python -m serving`: the same as `modelbot-serve`."""

from serving.cli import entry

entry()
