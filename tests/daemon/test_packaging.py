"""What ships beside the code: the systemd unit, the logrotate snippet, the man pages and the
LICENSE agree with the program and with their tools' own checks."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pyike import cli, ctl, setkey

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "packaging" / "pyike.service"
LOGROTATE = REPO / "packaging" / "pyike.logrotate"
MAN = REPO / "docs" / "man"
INSTALLED_AT = "/usr/local/bin/pyike"  # where the unit expects `pip install` to put pyike


def _unit() -> dict[str, list[str]]:
    """The unit's `Key=value` lines (a key may repeat)."""
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_unit_runs_pyike_in_the_foreground_with_notify_reload_and_restart():
    unit = _unit()
    assert unit["Type"] == ["notify"]  # pyike sends READY=1 itself (pyike.sdnotify)
    assert unit["Restart"] == ["on-failure"]
    start = unit["ExecStart"][0].split()
    # a detaching pyike would leave systemd watching a process that is gone
    assert start[0] == INSTALLED_AT and "-F" in start
    assert start[start.index("-f") + 1] == cli.DEFAULT_CONF
    check = unit["ExecStartPre"][0].split()
    assert "-t" in check and check[check.index("-f") + 1] == cli.DEFAULT_CONF
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    pyike = Path(sys.executable).with_name("pyike")
    if not pyike.exists():
        pytest.skip("pyike is not installed beside this interpreter")
    unit = tmp_path / "pyike.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_AT, str(pyike)))
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stderr) == (0, "")


def test_logrotate_snippet_renames_and_signals():
    text = LOGROTATE.read_text()
    statements = [line.split("#")[0].strip() for line in text.splitlines()]
    assert "copytruncate" not in statements  # pyike reopens a renamed file
    assert "postrotate" in statements and "endscript" in statements
    assert "systemctl reload pyike.service" in statements
    assert re.search(r'kill -HUP "\$\(cat /run/pyike/pyike\.pid\)"', text)
    assert cli.DEFAULT_PIDFILE == "/run/pyike/pyike.pid"


@pytest.mark.skipif(shutil.which("logrotate") is None and not Path("/usr/sbin/logrotate").exists(),
                    reason="needs logrotate")
def test_logrotate_accepts_the_snippet(tmp_path):
    conf = tmp_path / "pyike"
    conf.write_text(LOGROTATE.read_text().replace("/var/log/pyike.log",
                                                  str(tmp_path / "pyike.log")))
    conf.chmod(0o644)
    (tmp_path / "pyike.log").write_text("a line\n")
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    out = subprocess.run([logrotate, "-d", "-s", str(tmp_path / "state"), str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "error" not in out.stderr.lower(), out.stderr


@pytest.mark.parametrize("page", ["pyike.8", "pyike.conf.5", "pyikectl.8", "pyike-setkey.8"])
@pytest.mark.skipif(shutil.which("groff") is None, reason="needs groff")
def test_man_page_renders_without_warnings(page):
    out = subprocess.run(["groff", "-man", "-ww", "-z", str(MAN / page)], capture_output=True,
                         text=True, timeout=60)
    assert (out.returncode, out.stderr) == (0, "")


def test_pyike_8_documents_every_option_of_the_command():
    text = (MAN / "pyike.8").read_text()
    flags = [s for action in cli.build_parser()._actions for s in action.option_strings
             if s not in ("-h", "--help")]
    assert flags
    for flag in flags:
        assert flag.replace("-", r"\-") in text, flag


FONT = re.compile(r"\\f[BIRP]")


def _marked_up(page: str) -> str:
    """The page's request lines (`.B`, `.TP`, ...), font changes taken out: where a term is
    set as one, not merely named in the prose."""
    lines = (MAN / page).read_text().splitlines()
    return "\n".join(FONT.sub("", line) for line in lines if line.startswith("."))


def _documented(page: str, words: list[str]) -> list[str]:
    """The words (options, commands) that the page does not set as terms of their own."""
    text = _marked_up(page)
    missing = []
    for word in words:
        roff = re.escape(word.replace("-", r"\-"))
        if not re.search(rf"(?<![\w\\-]){roff}(?![\w-])", text):
            missing.append(word)
    return missing


def _getopt_flags(spec: str) -> list[str]:
    """`-x` for each letter of a getopt string."""
    return [f"-{c}" for c in spec if c != ":"]


def test_pyikectl_8_documents_every_command_alias_and_option():
    verbs = sorted({*ctl.KNOWN, *ctl.ALIASES.values()})
    # the options racoonctl's getopt reads, and each command's, as the usage lists them
    flags = sorted({*_getopt_flags(ctl.GLOBAL_OPTIONS), "--json",
                    *re.findall(r"(?<![\w-])(--?[a-z][a-z]*)", ctl.USAGE)})
    assert {"rc", "show-event", "vpn-connect"} <= set(verbs)
    assert {"-l", "-w", "-n", "-u", "-v", "-f", "--format", "-p"} <= set(flags)
    assert _documented("pyikectl.8", verbs + flags) == []


def test_pyike_setkey_8_documents_every_option():
    flags = [*_getopt_flags(setkey.OPTIONS), "--json"]
    assert {"-D", "-P", "-F", "-c", "-f", "-x", "-s"} <= set(flags)
    assert _documented("pyike-setkey.8", flags) == []


def test_the_documented_check_finds_a_missing_term():
    assert _documented("pyikectl.8", ["--no-such-flag", "vpn-connect"]) == ["--no-such-flag"]


def test_license_file_is_the_one_pyproject_declares():
    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["license"] == "BSD-2-Clause" and project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("BSD 2-Clause License\n")
    assert text.count("Redistributions") == 2  # the two clauses; a third would be BSD-3
