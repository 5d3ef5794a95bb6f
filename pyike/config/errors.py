"""Configuration errors: each names the file, the line and the keyword at fault."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigError:
    """One problem in a configuration file; prints as `FILE:LINE: message`, or
    `FILE:LINE:COLUMN: message` where the column is known (setkey.conf)."""

    file: str
    line: int
    keyword: str
    message: str
    column: int = 0

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" + (f":{self.column}" if self.column else "")

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ConfigErrors(Exception):
    """Raised by `load()` when any file it read has errors; `.errors` lists them all."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))
