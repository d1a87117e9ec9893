"""Command-line programs: ``mailhorn`` and the Postfix-compatible tools, one module each."""
