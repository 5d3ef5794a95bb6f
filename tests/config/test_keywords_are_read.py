"""Every setting the configuration holds is read by the code that acts on it.

A racoon.conf statement that pyike parses and then ignores is a trap: the site believes it in
force. The configuration's dataclasses are walked field by field, and each field must be read
(as `.field`) somewhere outside the configuration loader: in the engine, the daemon, the data
plane or the control commands. A field read only through another name is listed below with its
reader. Adding a field that nothing reads makes this test fail (as `ike_frag`,
`generate_policy` and `strict_address` would have: parsed, kept, and read by nothing). The check
is by name, so a field named like some other attribute (`port`, `name`) passes on that other
reading; statements that keep no field either act at once or warn (tests/config/
test_racoon_sites.py).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from ikev1 import policy
from pyike.config.model import DaemonConfig, GreTunnel, TunnelDevice

ROOT = Path(__file__).resolve().parents[2]
READERS = ("ikev1", "pyike", "esp", "spd", "gre")  # pyike/config/ excluded below
CONFIG_CLASSES = (DaemonConfig, GreTunnel, TunnelDevice, policy.EngineConfig,
                  policy.RemotePolicy, policy.Phase1Proposal, policy.Phase2Policy,
                  policy.Phase2Route, policy.TrafficSelector,
                  policy.DpdSettings, policy.RetransmitTimer)
# field -> where it is read when not as `.field`
READ_OTHERWISE = {
    # no statement's setting: the loader's record of the files it read
    "DaemonConfig.sources": "the files read, for whoever shows the configuration",
    "DaemonConfig.psk_file": "the `path pre_shared_key` file; its keys are EngineConfig.psk",
    # racoon proposes IPComp only for a policy that asks for it; pyike proposes ESP alone
    "Phase2Policy.compression": "required by racoon's grammar, never proposed",
}


def _attributes_read() -> set[str]:
    names: set[str] = set()
    for package in READERS:
        for path in (ROOT / package).rglob("*.py"):
            if path.is_relative_to(ROOT / "pyike" / "config"):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                    names.add(node.attr)
                elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                      and node.func.id == "getattr" and len(node.args) >= 2
                      and isinstance(node.args[1], ast.Constant)):
                    names.add(node.args[1].value)  # getattr(config, "field", default)
    return names


READ = _attributes_read()


@pytest.mark.parametrize(
    "field", [f"{cls.__name__}.{f.name}" for cls in CONFIG_CLASSES
              for f in dataclasses.fields(cls)])
def test_every_configuration_field_is_read_outside_the_loader(field):
    name = field.split(".")[1]
    assert name in READ or field in READ_OTHERWISE, (
        f"{field} is filled from the configuration but nothing outside pyike/config reads it: "
        "act on it, refuse the statement, or drop the field")


def test_the_exceptions_are_still_needed():
    for field in READ_OTHERWISE:
        assert field.split(".")[1] not in READ, f"{field} is read directly now: unlist it"
