"""Running ``mailhorn pw`` as a user would, through its module."""

from __future__ import annotations

import os
import subprocess
import sys


def run_pw(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``mailhorn pw ARGS`` in a child process, output captured."""
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    return subprocess.run([sys.executable, "-m", "mailhorn.cli.pw", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=120)
