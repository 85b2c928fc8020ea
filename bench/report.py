"""Printing and plotting suite results: every peer's figure as a ratio to hubbub's."""

from __future__ import annotations

import os
import platform
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.suite import Result


def machine(servers: list[str], pinned: bool, uvloop: bool) -> str:
    from bench.suite import versions

    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    placement = "server on CPU 0, load generator on CPU 1" if pinned else "NOT pinned (one core?)"
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} x {model}; {placement}; "
        f"event loop: {'uvloop' if uvloop else 'asyncio'} (servers), {loadgen_loop()} (load generator); "
        f"{versions()}; servers: {', '.join(servers)}"
    )


def loadgen_loop() -> str:
    import asyncio

    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def line(r: Result) -> str:
    flag = "  LOAD GENERATOR SATURATED: the server may be faster" if r.loadgen_bound else ""
    return (
        f"{r.scenario:<28} {r.server:<11} {r.phase:<18} {r.delivered_per_s:>11,.0f}/s  p50 {r.p50_ms:7.1f}  "
        f"p99 {r.p99_ms:7.1f}  max {r.max_ms:7.1f} ms  lost {r.lost:<6} hs {r.handshakes_per_s:6,.0f}/s  "
        f"{r.kib_per_conn:5.1f} KiB/conn  cpu srv {r.server_cpu:4.0%} ({cpu_per_delivery(r):5.2f} us/delivery) "
        f"lg {r.loadgen_cpu:4.0%}{flag}"
    )


HEADER = (
    "| server | deliveries/s | p50 ms | p99 ms | max ms | lost | handshakes/s | KiB/conn | server CPU"
    " | server CPU us/delivery | LG CPU |"
)


def cpu_per_delivery(r: Result) -> float:
    """Microseconds of server CPU per delivery over the phase (0 when nothing was delivered)."""
    return r.server_cpu / r.delivered_per_s * 1e6 if r.delivered_per_s else 0.0


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def tables(results: list[Result]) -> str:
    """One markdown table per scenario and phase; peers' figures as ratios to hubbub's."""
    groups: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for r in results:
        groups[(r.scenario, r.phase)].append(r)
    out = [
        "Ratios are peer / hubbub: for deliveries/s and handshakes/s below 1 means hubbub is faster; "
        "for latency and KiB/conn above 1 means hubbub is better. LG = load generator CPU; "
        "LG >= 90% means it, not the server, was probably the limit.",
        "",
    ]
    for (scenario, phase), rows in groups.items():
        base = next((r for r in rows if r.server == "hubbub"), None)
        out += [f"### {scenario}, {phase}", ""]
        out.append(HEADER)
        out += ["|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lg = f"{r.loadgen_cpu:.0%}" + (" (saturated)" if r.loadgen_bound else "")
            if base is None or r is base:
                cells = [f"{r.delivered_per_s:,.0f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.max_ms:.1f}",
                         str(r.lost), f"{r.handshakes_per_s:,.0f}", f"{r.kib_per_conn:.1f}"]  # fmt: skip
                name = f"**{r.server}**"
            else:
                cells = [
                    _ratio(r.delivered_per_s, base.delivered_per_s), _ratio(r.p50_ms, base.p50_ms),
                    _ratio(r.p99_ms, base.p99_ms), _ratio(r.max_ms, base.max_ms), str(r.lost),
                    _ratio(r.handshakes_per_s, base.handshakes_per_s), _ratio(r.kib_per_conn, base.kib_per_conn),
                ]  # fmt: skip
                name = r.server
            per_delivery = f"{cpu_per_delivery(r):.2f}"
            if base is not None and r is not base:
                per_delivery = _ratio(cpu_per_delivery(r), cpu_per_delivery(base))
            out.append(f"| {name} | " + " | ".join(cells) + f" | {r.server_cpu:.0%} | {per_delivery} | {lg} |")
        out.append("")
    return "\n".join(out)


def plots(results: list[Result], folder: Path, meta: dict[str, Any]) -> list[Path]:
    """PNG charts: deliveries/s by server and scenario, and latency percentiles of the open loops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    servers = list(dict.fromkeys(r.server for r in results))
    caption = f"{meta['machine']}\n{meta['command']} ({meta['when']})"

    throughput = [r for r in results if r.phase == "closed loop"]
    if throughput:
        scenarios = list(dict.fromkeys(r.scenario for r in throughput))
        figure, axes = plt.subplots(figsize=(9, 4.8))
        width = 0.8 / len(servers)
        for i, server in enumerate(servers):
            values = [
                next((r.delivered_per_s for r in throughput if r.server == server and r.scenario == s), 0)
                for s in scenarios
            ]
            axes.bar([x + i * width for x in range(len(scenarios))], values, width, label=server)
        axes.set_xticks([x + width * (len(servers) - 1) / 2 for x in range(len(scenarios))], scenarios)
        axes.set_yscale("log")
        axes.set_ylabel("deliveries/s (log scale), closed loop, 64 in flight")
        axes.legend()
        written.append(_save(plt, figure, caption, folder / "deliveries.png", bottom=0.2))

    latency = [r for r in results if r.phase.startswith("open loop")]
    if latency:
        labels = list(dict.fromkeys(f"{r.scenario}\n{r.phase}" for r in latency))
        figure, axes = plt.subplots(figsize=(12, 5.5))
        width = 0.8 / len(servers)
        for i, server in enumerate(servers):
            p99 = [
                next((r.p99_ms for r in latency if r.server == server and f"{r.scenario}\n{r.phase}" == label), 0)
                for label in labels
            ]
            p50 = [
                next((r.p50_ms for r in latency if r.server == server and f"{r.scenario}\n{r.phase}" == label), 0)
                for label in labels
            ]
            xs = [x + i * width for x in range(len(labels))]
            bars = axes.bar(xs, p99, width, label=f"{server} p99", alpha=0.55)
            axes.bar(
                xs,
                p50,
                width * 0.5,
                color=bars.patches[0].get_facecolor() if bars.patches else None,
                label=f"{server} p50",
            )
        ticks = [label.replace(" users / ", " users /\n").replace(" open loop", "\nopen loop") for label in labels]
        axes.set_xticks([x + width * (len(servers) - 1) / 2 for x in range(len(labels))], ticks, fontsize=7)
        axes.set_yscale("log")
        axes.set_ylabel("latency ms (log): wide bar p99, narrow bar p50")
        axes.legend(fontsize=7, ncol=2)
        written.append(_save(plt, figure, caption, folder / "latency.png", bottom=0.25))
    return written


def _save(plt: Any, figure: Any, caption: str, path: Path, bottom: float) -> Path:
    """Machine, versions and command under the chart, then the PNG."""
    figure.text(0.01, 0.01, caption, fontsize=6, wrap=True)
    figure.subplots_adjust(bottom=bottom)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
