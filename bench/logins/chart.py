"""The PNG: logins/s per rate step of each hash profile against the target and the
Cisco reference, the latency and RTP jitter at each step, and where the CPU of a login
goes in each profile's final run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

_COLOURS = ["tab:red", "tab:green", "tab:blue", "tab:orange"]


def _value(row: dict[str, Any], key: str) -> float:
    value = row.get(key)
    return float(value) if isinstance(value, int | float) else math.nan


def chart(results: dict[str, Any], path: Path) -> None:
    """Write the chart of ``results`` (as written to logins.json) to ``path``."""
    fig, (rate_ax, lat_ax, jit_ax, cpu_ax) = plt.subplots(1, 4, figsize=(21, 5.2))
    for colour, (name, profile) in zip(_COLOURS, results["profiles"].items(), strict=False):
        steps = profile.get("steps", [])
        offered = [s["offered_per_second"] for s in steps]
        label = f"{name} ({profile['argon2_cpu_ms_per_check']:.3g} ms argon2)"
        rate_ax.plot(offered, [s["completed_per_second"] for s in steps], "o-", color=colour)
        lat_ax.plot(offered, [_value(s, "latency_p99_ms") for s in steps], "s-", color=colour)
        lat_ax.plot(
            offered, [_value(s, "latency_p50_ms") for s in steps], "o:", color=colour, alpha=0.6
        )
        jit_ax.plot(offered, [_value(s, "jitter_p99_ms") for s in steps], "o-", color=colour)
        for s in steps:
            if not s["held"]:
                rate_ax.plot(s["offered_per_second"], s["completed_per_second"], "kx", ms=10)
        final = profile.get("final")
        if final:
            rate_ax.plot(
                final["offered_per_second"],
                final["completed_per_second"],
                "*",
                ms=16,
                color=colour,
                label=f"{label}: final {final['completed_per_second']}/s",
            )
            at = final["offered_per_second"]
            lat_ax.plot(at, _value(final, "latency_p99_ms"), "*", ms=14, color=colour)
            jit_ax.plot(at, _value(final, "jitter_p99_ms"), "*", ms=14, color=colour)
        else:
            rate_ax.plot([], [], "o-", color=colour, label=f"{label}: no step held")
    top = max(
        [results["targets"]["logins_per_second"]]
        + [s["offered_per_second"] for p in results["profiles"].values() for s in p["steps"]]
    )
    rate_ax.plot([0, top], [0, top], color="grey", lw=0.8, ls="-", label="completed = offered")
    rate_ax.axhline(results["targets"]["logins_per_second"], color="tab:blue", ls="--")
    rate_ax.text(0.5, results["targets"]["logins_per_second"], " target", va="bottom")
    cisco = results["reference"]["logins_per_second_per_node"]
    rate_ax.axhline(cisco, color="tab:purple", ls=":")
    rate_ax.text(
        top * 0.45, cisco, "Cisco EM ~75/min/node (quoted)", va="bottom", color="tab:purple"
    )
    rate_ax.set_xlabel("offered logins/s (x: step did not hold, *: final run)")
    rate_ax.set_ylabel("completed logins/s")
    rate_ax.set_title("logins completed per second")
    rate_ax.legend(loc="center right", fontsize=8)
    lat_ax.set_xlabel("offered logins/s")
    lat_ax.set_ylabel("ms (solid p99, dotted p50)")
    lat_ax.set_yscale("log")
    lat_ax.set_title("last PIN digit at the edge → ledger event")
    jit_ax.axhline(results["targets"]["rtp_send_jitter_p99_ms"], color="tab:blue", ls="--")
    jit_ax.set_xlabel("offered logins/s (p99 beyond 200 ms: not drawn)")
    jit_ax.set_ylabel("ms")
    jit_ax.set_yscale("log")
    jit_ax.set_title("edge RTP send jitter p99 (dashed: target)")
    _cpu_panel(cpu_ax, results)
    fig.suptitle(
        f"hotdesk logins: SIPp desks, RFC 2833 PINs; edge + IVR + nats-server on "
        f"{results['machine']['cpus']} cores"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


_PROCESS_COLOURS = {
    "edge": "tab:blue",
    "ivr": "tab:orange",
    "nats_server": "tab:green",
    "sipp": "tab:grey",
}


def _cpu_panel(ax: Any, results: dict[str, Any]) -> None:
    """CPU ms per login of each process in each profile's final run, stacked."""
    names = [n for n, p in results["profiles"].items() if p.get("final")]
    budget = 1000.0 * results["machine"]["cpus"] / results["targets"]["logins_per_second"]
    right = 1.6 * budget  # a costlier profile runs off the edge, its total written in
    for row, name in enumerate(names):
        final = results["profiles"][name]["final"]
        left = 0.0
        for process, ms in final["cpu_ms_per_login"].items():
            ax.barh(
                row,
                ms,
                left=left,
                color=_PROCESS_COLOURS.get(process, "tab:brown"),
                label=process if row == 0 else None,
            )
            left += ms
        ax.text(
            min(left, right * 0.62),
            row + 0.45,
            f"{left:.1f} ms at {final['offered_per_second']:g}/s",
            va="center",
            fontsize=8,
        )
    ax.axvline(budget, color="tab:blue", ls="--")
    ax.text(
        budget,
        -0.6,
        f" {results['machine']['cpus']} cores / {results['targets']['logins_per_second']:g} per s",
        color="tab:blue",
        fontsize=8,
    )
    ax.set_xlim(0, right)
    ax.set_ylim(-0.8, len(names) - 0.2)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("CPU ms per login by process (final run)")
    ax.set_title("CPU per login (dashed: budget at the target)")
    if names:
        ax.legend(loc="center right", fontsize=8)
