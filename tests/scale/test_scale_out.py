"""Scale-out on one machine: a 3-node NATS cluster (R3), two instances of every
service, SIPp desks logging in through both edges; mid-run one NATS node (the ledger's
leader) and one instance of every service are SIGKILLed."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from bench.register.targets import users as desk_credentials
from bench.scale.run import PIN, observed
from bench.scale.system import running
from hotdesk_runtime import pins

RATE = 3.0
"""Logins offered per second, over both edges."""
SECONDS = 24.0
KILL_AT = 8.0


async def test_logins_survive_losing_a_nats_node_and_one_instance_of_every_service(
    tmp_path: Path,
) -> None:
    desks = desk_credentials(150)
    users = [str(30000 + n) for n in range(2 * len(desks))]
    pepper = secrets.token_hex(16)
    pin_hash = pins.hash_pin(PIN, pepper)
    async with (
        running(tmp_path / "system", desks, users, pin_hash, pepper=pepper, instances=2) as system,
        observed(system, tmp_path, desks, users) as run,
    ):
        assert all(run.desks_needed(RATE) <= len(pool[0]) for pool in run.pools)
        result = await run.phase("kill", RATE, SECONDS, kill_at=KILL_AT)
        report = json.dumps(result.as_json(), indent=1, default=str)
        logs = "\n".join(f"== {i.name}\n{i.log_tail(800)}" for i in system.instances)
    assert result.kill is not None
    assert result.calls >= RATE * SECONDS * 0.8, report
    assert result.outcomes["unclean"] == 0, report + logs
    assert result.lost == [], report
    assert result.audit["duplicate_msg_ids"] == [], report
    assert result.audit["duplicate_event_ids"] == [], report
    assert result.audit["calls_logged_in_twice"] == [], report
    assert result.audit["broken_desk_chains"] == [], report
    assert result.read_models_converged, report + logs
    # The system kept serving with what was left: logins completed after the kills.
    assert result.completed_after_kill > 0, report + logs
