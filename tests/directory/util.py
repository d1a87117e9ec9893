"""Running the directory commands in-process, as ``mailhorn COMMAND`` would."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from mailhorn.cli.directory import run_alias, run_domain, run_transport, run_user

RUNNERS = {"domain": run_domain, "user": run_user, "alias": run_alias, "transport": run_transport}


@dataclass(frozen=True)
class Result:
    status: int
    out: str
    err: str


class Admin:
    """Runs ``mailhorn -c CONFDIR COMMAND ...`` in this process and captures its output."""

    def __init__(self, confdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.confdir = confdir
        self.capsys = capsys

    def __call__(self, command: str, *args: str) -> Result:
        self.capsys.readouterr()
        status = RUNNERS[command](["-c", str(self.confdir), *args])
        captured = self.capsys.readouterr()
        return Result(status, captured.out, captured.err)

    def ok(self, command: str, *args: str) -> str:
        """Run and insist on success and a silent standard error; the output."""
        result = self(command, *args)
        assert (result.status, result.err) == (0, ""), result
        return result.out

    def fails(self, command: str, *args: str) -> str:
        """Run and insist on exit 1 with one fatal message; the message after ``fatal: ``."""
        result = self(command, *args)
        assert result.status == 1, result
        assert result.out == ""
        first = result.err.splitlines()[0]
        prefix = f"mailhorn-{command}: fatal: "
        assert first.startswith(prefix), result.err
        return first[len(prefix):]
