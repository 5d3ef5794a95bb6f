"""racoon.conf input that once crashed or ran away: NUL bytes, include cycles, include fan-out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyike.config
from pyike.config import ConfigError, parser

REPO = Path(__file__).resolve().parents[2]
NUL_MESSAGE = "a NUL byte: a configuration file is text, so nothing in this file is used"


def _lines(errors: list[ConfigError]) -> list[str]:
    return [str(e) for e in errors]


@pytest.mark.parametrize(
    "text",
    [
        'path pre_shared_key "ps\0k.txt";\n',
        'include "a\0b";\n',
        'setkey "set\0key.conf";\n',
        "log no\0tify;\n",
        "\0",
        '\0path pre_shared_key "psk.txt";\n',
    ],
)
def test_a_nul_byte_is_a_file_line_error(write, text):
    root = write({"racoon.conf": "# NUL on the next line\n" + text})
    conf = root / "racoon.conf"
    assert _lines(pyike.config.check(str(conf))) == [f"{conf}:2: {NUL_MESSAGE}"]


def test_a_nul_byte_in_an_included_file_names_that_file(write):
    root = write({"racoon.conf": 'include "inc.conf";\n', "inc.conf": "\n\nlog\0;\n"})
    assert _lines(pyike.config.check(str(root / "racoon.conf"))) == [
        f"{root / 'inc.conf'}:3: {NUL_MESSAGE}"
    ]


def test_a_nul_byte_in_setkey_conf_is_a_file_line_column_error(write):
    root = write({"racoon.conf": 'setkey "setkey.conf";\n', "setkey.conf": "spdflush;\nsp\0d;\n"})
    assert _lines(pyike.config.check(str(root / "racoon.conf"))) == [
        f"{root / 'setkey.conf'}:2:3: a NUL byte: setkey.conf is text at '\\0'"
    ]


def test_three_self_includes_are_three_errors_at_once(write):
    root = write({"racoon.conf": 'include "racoon.conf";\n' * 3})
    conf = root / "racoon.conf"
    assert _lines(pyike.config.check(str(conf))) == [
        f'{conf}:{n}: include "racoon.conf": an include cycle ({conf} -> {conf}); {conf} is not '
        "read again"
        for n in (1, 2, 3)
    ]


def test_an_include_cycle_names_the_statement_and_the_cycle(write):
    root = write(
        {
            "racoon.conf": 'log notify;\ninclude "a.conf";\n',
            "a.conf": '# a\ninclude "b.conf";\n',
            "b.conf": '\n\ninclude "a.conf";\n',
        }
    )
    a, b = root / "a.conf", root / "b.conf"
    assert _lines(pyike.config.check(str(root / "racoon.conf"))) == [
        f'{b}:3: include "a.conf": an include cycle ({a} -> {b} -> {a}); {a} is not read again'
    ]


def test_a_cycle_through_a_symlink_is_found(write):
    root = write({"racoon.conf": 'include "link.conf";\n'})
    (root / "link.conf").symlink_to(root / "racoon.conf")
    conf, link = root / "racoon.conf", root / "link.conf"
    assert _lines(pyike.config.check(str(conf))) == [
        f'{conf}:1: include "link.conf": an include cycle ({conf} -> {link}); {link} is not '
        "read again"
    ]


def test_a_glob_that_matches_its_own_file_reports_each_statement_once(write):
    glob_include = 'include "conf.d/*.conf";\n'
    root = write(
        {"racoon.conf": glob_include, "conf.d/a.conf": glob_include, "conf.d/b.conf": glob_include}
    )
    a, b = root / "conf.d" / "a.conf", root / "conf.d" / "b.conf"
    assert _lines(pyike.config.check(str(root / "racoon.conf"))) == [
        f'{a}:1: include "conf.d/*.conf": an include cycle ({a} -> {a}); {a} is not read again',
        f'{b}:1: include "conf.d/*.conf": an include cycle ({a} -> {b} -> {a}); {a} is not read '
        "again",
    ]


def test_a_glob_of_many_self_including_files_stays_bounded(write):
    glob_include = 'include "conf.d/*.conf";\n'
    files = {f"conf.d/{n:02}.conf": glob_include for n in range(12)}
    root = write({"racoon.conf": glob_include, **files})
    errors = pyike.config.check(str(root / "racoon.conf"))
    assert errors and all(e.keyword == "include" for e in errors)
    # at most one cycle or depth error per include statement (12 files and the main one) ...
    per_statement = [e for e in errors if "files read through includes" not in e.message]
    assert len({(e.file, e.line) for e in per_statement}) == len(per_statement) <= 13
    # ... and the bound on files read said once
    assert len(errors) - len(per_statement) <= 1


def test_include_depth_is_bounded(write):
    depth = parser.MAX_INCLUDE_DEPTH
    files = {f"f{n}.conf": f'include "f{n + 1}.conf";\n' for n in range(depth + 2)}
    root = write({"racoon.conf": 'include "f0.conf";\n', **files})
    chain = " -> ".join(str(root / name) for name in ["racoon.conf"] + list(files)[:depth])
    assert _lines(pyike.config.check(str(root / "racoon.conf"))) == [
        f"{root / f'f{depth - 1}.conf'}:1: includes nested deeper than {depth} levels ({chain})"
    ]


def test_repeated_includes_stop_at_the_bound_on_files_read(write, monkeypatch):
    """Each file includes the next twice: 2^10 readings without a bound, in racoon too."""
    twice = 'include "f{0}.conf";\ninclude "f{0}.conf";\n'
    files = {f"f{n}.conf": twice.format(n + 1) for n in range(9)}
    files["f9.conf"] = "log notify;\n"
    root = write({"racoon.conf": 'include "f0.conf";\n', **files})
    read = []
    real_parse_file = parser._Parser.parse_file

    def counting(self, path, via):
        read.append(path)
        return real_parse_file(self, path, via)

    monkeypatch.setattr(parser._Parser, "parse_file", counting)
    errors = pyike.config.check(str(root / "racoon.conf"))
    assert len(read) == parser.MAX_FILES_READ
    (error,) = errors
    assert error.keyword == "include"
    assert f"more than {parser.MAX_FILES_READ} files read through includes" in error.message


def test_pyike_t_reports_nul_and_cycles_without_a_traceback(write):
    root = write(
        {
            "racoon.conf": 'include "loop.conf";\ninclude "nul.conf";\n',
            "loop.conf": 'include "racoon.conf";\n',
            "nul.conf": 'path pre_shared_key "\0";\n',
        }
    )
    conf, loop = root / "racoon.conf", root / "loop.conf"
    out = subprocess.run(
        [sys.executable, "-m", "pyike", "-t", "-f", str(conf)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert (out.returncode, out.stderr) == (1, "")
    assert out.stdout.splitlines() == [
        f'{loop}:1: include "racoon.conf": an include cycle ({conf} -> {loop} -> {conf}); '
        f"{conf} is not read again",
        f"{root / 'nul.conf'}:1: {NUL_MESSAGE}",
    ]


WORDS = ['include "racoon.conf";', 'include "*.conf";', 'path include "', "\0", "{", "}", ";",
         'setkey "x";', "log", "notify", "\n", "remote", "anonymous", '"', "#"]


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=5)), max_size=20))
def test_any_racoon_conf_gives_file_line_errors_only(write, words):
    root = write({"racoon.conf": " ".join(words)})
    for error in pyike.config.check(str(root / "racoon.conf")):
        assert isinstance(error, ConfigError) and error.line >= 0
        str(error).encode("utf-8", errors="surrogateescape")
