"""Configuration errors that name the file, line and parameter at fault.

Postfix reports a broken configuration as ``FILE, line N: text`` and stops with
exit status 1; every configuration error in mailhorn carries the same three
facts so a command can print it the same way.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration mistake: bad syntax, a bad value, an unknown table type.

    ``file`` and ``line`` locate the mistake when it comes from a file;
    ``param`` names the parameter whose value is at fault, when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.param = param

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f", line {self.line}"
            where += ": "
        what = f"parameter {self.param}: " if self.param and self.param not in self.message else ""
        return f"{where}{what}{self.message}"
