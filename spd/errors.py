"""The one error a setkey.conf can raise, and the offset-to-line:column bookkeeping it needs."""

from __future__ import annotations

import bisect


class SetkeyError(Exception):
    """A setkey.conf problem at FILE:LINE:COLUMN (both 1-based), naming the offending token."""

    def __init__(self, file: str, line: int, col: int, token: str, msg: str) -> None:
        self.file = file
        self.line = line
        self.col = col
        self.token = token
        self.msg = msg
        where = f" at '{token}'" if token else ""
        super().__init__(f"{file}:{line}:{col}: {msg}{where}")


class SourceText:
    """A file's text plus the start offset of each line, to turn offsets into positions."""

    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename
        self._line_starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self._line_starts.append(i + 1)

    def position(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def error(self, offset: int, token: str, msg: str) -> SetkeyError:
        line, col = self.position(offset)
        return SetkeyError(self.filename, line, col, token, msg)
