"""The figures of one `python -m benchmarks` run as Markdown, for README's Performance section.

Every part is optional: a benchmark that was skipped or failed is named with its reason.
"""

from __future__ import annotations

from benchmarks.report import fmt

_SETUP_ORDER = ("pyike", "pyike-tunnel", "pyike-tunnel-udp", "relay", "strongswan", "wireguard",
                "veth")


def _cell(stats: dict | None, digits: int = 0) -> str:
    if not stats or stats.get("median") is None:
        return "-"
    if stats["min"] == stats["max"]:
        return fmt(stats["median"], digits)
    low, high = fmt(stats["min"], digits), fmt(stats["max"], digits)
    return f"{fmt(stats['median'], digits)} ({low}-{high})"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _skipped(name: str, result: dict | None) -> str | None:
    if result is None:
        return f"{name}: not run."
    if "error" in result:
        return f"{name}: not measured ({result['error'].splitlines()[0][:200]})."
    return None


def throughput(result: dict) -> list[str]:
    setups = [k for k in _SETUP_ORDER if result["setups"].get(k, {}).get("available")]
    labels = {k: result["setups"][k]["label"] for k in setups}
    anchors = list(result["ratios"][result["tests"][0]])
    out = [
        f"Throughput, host A to host B through each set-up: median (min-max) of "
        f"{result['rounds']} interleaved rounds of {result['seconds']} s; then the CPU "
        "microseconds both routers' forwarding processes spent per packet out of the tunnel "
        f"({result['packet_counter']}).",
        "",
        _row(["test", *[labels[k] for k in setups], *anchors]),
        _row(["---"] * (len(setups) + len(anchors) + 1)),
    ]
    for test in result["tests"]:
        name = "TCP, Mbit/s" if test == "tcp" else f"UDP {test[3:]}-byte packets, packets/s"
        ratios = result["ratios"][test]
        out.append(_row([name, *[_cell(result["results"][test].get(k)) for k in setups],
                         *[fmt(ratios[a], 2) for a in anchors]]))
    for test in result["tests"]:
        name = "TCP" if test == "tcp" else f"UDP {test[3:]}-byte packets"
        ratios = result["cost_ratios"][test]
        out.append(_row([f"{name}, CPU-µs per packet",
                         *[_cell(result["cpu_us_per_packet"][test].get(k), 1) for k in setups],
                         *[fmt(ratios[a], 2) for a in anchors]]))
    for meta in result["setups"].values():
        if not meta["available"]:
            out.append(f"\n{meta['label']}: not measured ({meta['error']}).")
    return out


def hub(result: dict) -> list[str]:
    name = result["ratio_name"]
    out = [
        f"One pyike hub, every spoke sending to the hub's LAN host at once: aggregate throughput "
        f"into the LAN host and the hub forwarding process's CPU microseconds per packet "
        f"({result['packet_counter']}), median (min-max) of {result['rounds']} rounds of "
        f"{result['seconds']} s windows, and the ratios {name} spokes of the medians:",
        "",
        _row(["test", *[f"{n} spokes" for n in result["spokes"]], f"{name}"]),
        _row(["---"] * (len(result["spokes"]) + 2)),
    ]
    if result.get("mode") == "fixed":
        out[0] += (f" Every spoke count offers the same total load, split evenly over its spokes "
                   f"({result['calibration']['load']:g} × one spoke's all-out aggregate).")
    points = result["points"]
    for test in result["tests"]:
        what = "TCP" if test == "tcp" else f"UDP {test[3:]}-byte packets"
        for key, digits, label in (("results", 0, f"{what}, {result['units'][test]}"),
                                   ("cpu_us_per_packet", 1, f"{what}, hub CPU-µs per packet")):
            ratio = result["ratios"][test]["throughput" if key == "results" else key]
            out.append(_row([label, *[_cell(points[str(n)][key].get(test), digits)
                                      for n in result["spokes"]], fmt(ratio, 2)]))
    for n in result["spokes"]:
        if not points[str(n)]["available"]:
            out.append(f"\n{n} spokes: not measured ({points[str(n)]['error']}).")
    return out


def handshake(result: dict) -> list[str]:
    responders = result["responders"]
    out = [
        f"IKEv1 handshakes per second completed by the responder (median (min-max) of "
        f"{result['rounds']} rounds of {result['seconds']:g} s; AES-128, SHA-1, PSK, MODP-2048), "
        "and per CPU-second the responder spent:",
        "",
        _row(["test", "pyike /s", "charon /s", "pyike/charon", "pyike per CPU-s",
              "charon per CPU-s", "pyike/charon per CPU-s"]),
        _row(["---"] * 7),
    ]
    for test in result["tests"]:
        mode, level = test.split("@")
        who = "1 initiator" if level == "1" else f"{level} initiators"
        name = {"main": f"main mode, {who}", "quick": f"main + quick mode with PFS, {who}"}.get(
            mode, f"main mode with MODP-1024 (the article's group 2), {who}")
        rates, cpu = result["rates"][test], result["per_cpu_s"][test]
        ratios = result["ratios"].get(test, {})
        out.append(_row([
            name, _cell(rates.get("pyike")), _cell(rates.get("charon")),
            fmt(ratios.get("pyike/charon"), 2), _cell(cpu.get("pyike")),
            _cell(cpu.get("charon")), fmt(ratios.get("pyike/charon per cpu-s"), 2),
        ]))
    for meta in responders.values():
        if not meta["available"]:
            out.append(f"\n{meta['label']}: not measured ({meta['error']}).")
    return out


def memory(result: dict) -> list[str]:
    out = [
        "Resident memory of one process holding N established phase-1 + phase-2 pairs "
        "(responder engine and forwarding SAD; goal at most 20 KiB per pair):",
        "",
        _row(["pairs", "RSS MiB", "KiB per pair"]),
        _row(["---"] * 3),
    ]
    for p in result["points"]:
        per = p["bytes_per_pair"]
        out.append(_row([f"{p['pairs']:,}", fmt(p["rss_bytes"] / 2**20, 1),
                         fmt(per / 1024 if per is not None else None, 1)]))
    return out


def profile(result: dict) -> list[str]:
    sizes = list(result["ns_per_packet"])
    out = [
        "Cost of one forwarded packet by data-plane stage, microseconds (median):",
        "",
        _row(["stage", *[f"{s} B" for s in sizes]]),
        _row(["---"] * (len(sizes) + 1)),
    ]
    for direction in ("out", "in"):
        for stage in result["stages"][direction]:
            out.append(_row([f"{direction}: {stage}", *[
                fmt((result["ns_per_packet"][s].get(stage) or 0) / 1000, 2) for s in sizes]]))
        out.append(_row([f"{direction}: total", *[
            fmt(result["totals_ns"][s][direction] / 1000, 2) for s in sizes]]))
    return out


def esp(result: dict) -> list[str]:
    out = [
        "ESP seal/open, microseconds per packet, beside OpenSSL's cost for the same bytes:",
        "",
        _row(["payload", "seal", "open", "OpenSSL seal", "OpenSSL open", "seal/OpenSSL",
              "open/OpenSSL"]),
        _row(["---"] * 7),
    ]
    for size, entry in result["sizes"].items():
        out.append(_row([
            f"{size} B", _cell(entry["seal_us"], 2), _cell(entry["open_us"], 2),
            _cell(entry["openssl_seal_us"], 2), _cell(entry["openssl_open_us"], 2),
            fmt(entry["seal_vs_openssl"], 2), fmt(entry["open_vs_openssl"], 2),
        ]))
    return out


SECTIONS = (("throughput", throughput), ("hub", hub), ("handshake", handshake),
            ("memory", memory), ("profile", profile), ("esp", esp))


def markdown(results: dict, command: str) -> str:
    m = results["machine"]
    lines = [
        f"Measured {m['date']} on this project's build machine ({m['cpus']} cores, Linux "
        f"{m['kernel']}, Python {m['python']}) with `{command}`. The machine is shared and "
        "noisy: absolute figures move from run to run, **only the ratios, taken within one run, "
        "are comparable**.",
    ]
    for name, render in SECTIONS:
        result = results.get(name)
        skipped = _skipped(name, result)
        lines.append("")
        if skipped:
            lines.append(skipped)
        else:
            lines.extend(render(result))
    return "\n".join(lines) + "\n"
