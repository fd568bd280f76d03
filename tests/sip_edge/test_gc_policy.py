"""The garbage collector policy of an edge process: rare collections, nothing from
start-up walked again."""

from __future__ import annotations

import json
import subprocess
import sys

from hotdesk_sip_edge.edge import GC_THRESHOLDS


def test_an_edge_process_collects_rarely_and_freezes_what_existed_at_start() -> None:
    # In a process of its own: the policy is process-wide.
    code = (
        "import gc, json\n"
        "before = gc.get_threshold()\n"
        "from hotdesk_sip_edge.edge import tune_garbage_collector\n"
        "tune_garbage_collector()\n"
        "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    before, after, frozen = json.loads(out.stdout)
    assert tuple(after) == GC_THRESHOLDS
    assert after[0] > before[0]
    assert frozen > 10_000  # the imported modules and their objects
