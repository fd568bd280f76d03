"""The PNG: logins/s completed per phase against the offered rate, what became of every
call in each phase, and CPU per login of each service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .run import OUTCOMES

PHASES = ("one-of-each", "two-of-each", "kill")
_OUTCOME_COLOURS = {
    "completed": "tab:green",
    "spoken_error": "tab:orange",
    "sip_error": "tab:purple",
    "died_with_edge": "tab:grey",
    "unclean": "tab:red",
}


def chart(results: dict[str, Any], path: Path) -> None:
    """Write the chart of ``results`` (as written to scale.json) to ``path``."""
    phases = [(name, results["phases"][name]) for name in PHASES if name in results["phases"]]
    names = [name for name, _ in phases]
    fig, (rate_ax, calls_ax, cpu_ax) = plt.subplots(1, 3, figsize=(16, 5.2))

    rate_ax.bar(names, [p["completed_per_second"] for _, p in phases], color="tab:blue")
    offered = results["setup"]["offered_per_second"]
    rate_ax.axhline(offered, color="black", ls="--", lw=1, label=f"offered {offered:g}/s")
    rate_ax.set_ylabel("logins/s completed")
    rate_ax.set_title("logins/s: one of everything vs two")
    rate_ax.legend(loc="lower right")

    bottom = [0] * len(phases)
    for outcome in OUTCOMES:
        counts = [p["outcomes"].get(outcome, 0) for _, p in phases]
        calls_ax.bar(names, counts, bottom=bottom, color=_OUTCOME_COLOURS[outcome], label=outcome)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    calls_ax.set_ylabel("calls")
    calls_ax.set_title("what became of each call")
    calls_ax.legend(loc="lower right", fontsize=8)

    services = list(phases[0][1]["cpu_ms_per_login"]) if phases else []
    width = 0.8 / max(1, len(phases))
    for i, (name, p) in enumerate(phases):
        xs = [j + i * width for j in range(len(services))]
        cpu_ax.bar(xs, [p["cpu_ms_per_login"].get(s, 0) for s in services], width, label=name)
    cpu_ax.set_xticks([j + width * (len(phases) - 1) / 2 for j in range(len(services))])
    cpu_ax.set_xticklabels(services, rotation=20)
    cpu_ax.set_ylabel("CPU ms per completed login (all instances)")
    cpu_ax.set_title("CPU per login")
    cpu_ax.legend(fontsize=8)

    machine = results["machine"]
    fig.suptitle(
        f"scale-out on one machine: 3-node NATS (R3), {machine['cpus']} shared cores, "
        f"{results['when']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
