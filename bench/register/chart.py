"""The benchmark's chart: completed vs offered rate, p99 delay and CPU per REGISTER for
each registrar, one line each (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6))
    ran = {n: t for n, t in results["targets"].items() if t.get("available")}
    for i, (name, target) in enumerate(ran.items()):
        steps = target["steps"]
        rates = [s["offered_rate"] for s in steps]
        colour = f"C{i}"
        axes[0].plot(
            rates, [max(s["achieved_rate"], 1.0) for s in steps], "o-", color=colour, label=name
        )
        failed = [s for s in steps if not s["holds"]]
        axes[0].plot(
            [s["offered_rate"] for s in failed],
            [max(s["achieved_rate"], 1.0) for s in failed],
            "x",
            color="black",
            markersize=10,
        )
        axes[1].plot(rates, [max(s["p99_ms"], 0.5) for s in steps], "o-", color=colour, label=name)
        axes[2].plot(
            rates, [s["cpu_us_per_register"] for s in steps], "o-", color=colour, label=name
        )
    top = max(
        (s["offered_rate"] for t in ran.values() for s in t["steps"]),
        default=1000,
    )
    bottom = min((s["offered_rate"] for t in ran.values() for s in t["steps"]), default=100)
    axes[0].plot([bottom, top], [bottom, top], ":", color="grey", label="offered")
    axes[0].axhline(
        results["setup"]["target_per_second"], color="red", linestyle="--", label="target"
    )
    axes[0].set_title("completed REGISTER/s (x: step did not hold)")
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[1].set_title("p99 REGISTER -> 200 delay (ms; < 1 ms drawn at 0.5)")
    axes[2].set_title("registrar CPU per REGISTER (µs)")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("offered REGISTER/s (digest auth, UDP)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    lines = []
    for name, target in results["targets"].items():
        if not target.get("available"):
            lines.append(f"{name}: not available ({target['reason'][:80]})")
            continue
        summary = target["summary"]
        held = f"holds {summary['max_rate']}/s" if summary["max_rate"] else "no step held"
        if summary["max_rate"] and not summary["saturated"]:
            held += " (not saturated)"
        per_core = summary["registers_per_cpu_second"] or 0
        lines.append(
            f"{name}: {held}, p99 {summary['p99_ms']} ms, "
            f"{summary['cpu_us_per_register'] or float('nan'):.0f} µs CPU/REGISTER "
            f"= {per_core:,.0f}/s per core"
        )
    versus = results.get("ratio_edge_vs_kamailio", {})
    if "max_rate" in versus:
        lines.append(
            f"edge / kamailio (1 worker): rate {versus['max_rate']:.2f}, "
            f"per-core capacity {versus['registers_per_cpu_second']:.3f}"
        )
    elif versus.get("note"):
        lines.append(f"edge / kamailio: {versus['note']}")
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=8, family="monospace", va="bottom")
    fig.suptitle(
        f"Authenticated REGISTER, {results['setup']['users']} users, "
        f"{results['setup']['step_seconds']} s per step, SIPp on the same machine"
    )
    fig.tight_layout(rect=(0, 0.15, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
