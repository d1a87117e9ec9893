"""mailhorn: a complete mail server with a Postfix-compatible MTA and a built-in mail store."""

__version__ = "0.1.0"
