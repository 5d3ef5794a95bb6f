"""Join racoon.conf, psk.txt and the setkey files into one DaemonConfig."""

from __future__ import annotations

import os
from typing import Any

from ikev1.policy import EngineConfig, RetransmitTimer
from pyike.config.errors import ConfigError
from pyike.config.lexer import Token
from pyike.config.model import DEFAULT_PIDFILE, RUN_DIR, DaemonConfig
from pyike.config.parser import ISAKMP_PORT, NATT_PORT, ParsedConfig, parse_config
from pyike.config.psk import PskFileRefused, SecretMap, read_psk_file


def load_all(path: str) -> tuple[DaemonConfig | None, list[ConfigError]]:
    """The configuration and every error found; the configuration is None on errors."""
    parsed = parse_config(path)
    errors = parsed.errors
    sources = parsed.sources
    psk = _load_psk(parsed, errors, sources)
    setkey = tuple(_load_setkey(p, tok, errors, sources) for p, tok in parsed.setkey_files)
    if setkey and all(sf is not None for _, sf in setkey):
        _check_setkey_state(setkey, parsed, errors)
        if parsed.tunnel_device is None:
            _check_tunnel_policies(setkey, errors)
    if errors:
        return None, errors
    engine = EngineConfig(
        local_addresses=tuple(dict.fromkeys(a for a, _ in parsed.listen_isakmp)),
        remotes=tuple(parsed.remotes),
        sainfos=tuple(parsed.sainfos),
        psk=psk,
        timer=RetransmitTimer(**parsed.timer),
        isakmp_port=parsed.listen_isakmp[0][1] if parsed.listen_isakmp else ISAKMP_PORT,
        natt_port=_natt_port(parsed),
        **parsed.padding,
    )
    pidfile = parsed.paths.get("pidfile", DEFAULT_PIDFILE)
    config = DaemonConfig(
        engine=engine,
        sources=tuple(dict.fromkeys(sources)),
        listen_isakmp=tuple(parsed.listen_isakmp),
        listen_natt=tuple(parsed.listen_natt),
        adminsock=parsed.adminsock,
        adminsock_mode=parsed.adminsock_mode,
        adminsock_owner=parsed.adminsock_owner,
        adminsock_group=parsed.adminsock_group,
        pidfile=pidfile if os.path.isabs(pidfile) else os.path.join(RUN_DIR, pidfile),
        log_level=parsed.log_level,
        setkey=setkey,
        gre_tunnels=tuple(parsed.gre_tunnels),
        tunnel_device=parsed.tunnel_device,
        scripts=parsed.scripts,
        remote_names=parsed.remote_names,
        psk_file=parsed.paths.get("pre_shared_key", ""),
        warnings=tuple(parsed.warnings),
    )
    return config, []


def _natt_port(parsed: ParsedConfig) -> int:
    """The port IKE floats to: the first `isakmp_natt` port other than the IKE port (racoon's
    `isakmp_natt ADDR;` means port 500, which is a plain IKE socket to pyike), else 4500."""
    isakmp = {port for _, port in parsed.listen_isakmp} or {ISAKMP_PORT}
    ports = [port for _, port in parsed.listen_natt if port not in isakmp]
    return ports[0] if ports else NATT_PORT


def _load_psk(parsed: ParsedConfig, errors: list[ConfigError], sources: list[str]) -> SecretMap:
    path = parsed.paths.get("pre_shared_key")
    if path is None:
        use = parsed.psk_first_use
        if use is not None:
            errors.append(
                ConfigError(
                    use.file,
                    use.line,
                    "pre_shared_key",
                    'pre_shared_key authentication needs a "path pre_shared_key" statement',
                )
            )
        return SecretMap()
    anchor = parsed.path_tokens["pre_shared_key"]
    try:
        table = read_psk_file(path)
    except PskFileRefused as exc:
        errors.append(ConfigError(anchor.file, anchor.line, "pre_shared_key", str(exc)))
        return SecretMap()
    sources.append(path)
    errors.extend(table.errors)
    parsed.warnings.extend(table.warnings)
    return table.keys


def _load_setkey(
    path: str, anchor: Token, errors: list[ConfigError], sources: list[str]
) -> tuple[str, Any]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        errors.append(
            ConfigError(anchor.file, anchor.line, "setkey", f"cannot read {path}: {exc.strerror}")
        )
        return (path, None)
    sources.append(path)
    try:
        from spd.parse import SetkeyError, parse_setkey
    except ImportError:  # the SPD package is optional for reading racoon.conf alone
        return (path, None)
    try:
        return (path, parse_setkey(text, path))
    except SetkeyError as exc:
        errors.append(_setkey_error(exc, path))
        return (path, None)


def _check_setkey_state(
    setkey: tuple[tuple[str, Any], ...], parsed: ParsedConfig, errors: list[ConfigError]
) -> None:
    """Apply the setkey files to an empty SPD and SAD, as the forwarding process does at start
    (the same function, without a socket or device), so that what start would refuse is an
    error here."""
    from pyike.sadb import setkey_state
    from spd.parse import SetkeyError

    local = [str(g.local) for g in parsed.gre_tunnels]  # the tunnels' local ends, as at start
    try:
        setkey_state([sf for _, sf in setkey], local, 0.0)
    except SetkeyError as exc:
        errors.append(_setkey_error(exc, exc.file))


def _check_tunnel_policies(setkey: tuple[tuple[str, Any], ...], errors: list[ConfigError]
                           ) -> None:
    """Without a `tunnel_device` nothing carries an esp/tunnel policy's traffic: the first such
    policy is an error, rather than a policy that loads and then protects nothing."""
    for path, sf in setkey:
        for cmd in sf.spd_commands():
            policy = getattr(cmd, "policy", None)
            if (getattr(cmd, "verb", "") != "spddelete" and policy is not None
                    and policy.action == "ipsec"
                    and any(rule.mode == "tunnel" for rule in policy.rules)):
                errors.append(ConfigError(
                    path, cmd.line, "tunnel",
                    "an esp/tunnel policy needs pyike's `tunnel_device \"NAME\";` statement "
                    "(the TUN device its traffic comes in and goes out on)", cmd.column))
                return


def _setkey_error(exc: Exception, path: str) -> ConfigError:
    token = str(getattr(exc, "token", "") or "")
    message = str(getattr(exc, "msg", None) or exc)
    return ConfigError(
        getattr(exc, "file", None) or path,
        int(getattr(exc, "line", 0) or 0),
        token or "setkey",
        f"{message} at '{token}'" if token else message,
        int(getattr(exc, "col", 0) or 0),
    )
