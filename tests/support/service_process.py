"""One service as a deployment runs it: a ``hotdesk run <service>`` process with its
health port (``/healthz``, ``/readyz``, ``/metrics``) on loopback, stopped by SIGTERM
when the test is done with it."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from hotdesk_contracts.directory import Config, TelemetrySettings
from hotdesk_runtime.process import die_with_parent
from tests.support.natsserver import free_port


@dataclass
class ServiceProcess:
    service: str
    proc: subprocess.Popen[bytes]
    log: Path
    health_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
            return await client.get(path)

    async def first_readyz(self, timeout: float = 60.0) -> httpx.Response:
        """The first ``/readyz`` answer, once the health port is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"hotdesk run {self.service} exited with {self.proc.returncode}: "
                    f"{self.output()[-3000:]}"
                )
            with contextlib.suppress(httpx.TransportError):
                return await self.get("/readyz")
            await asyncio.sleep(0.05)
        raise AssertionError(f"the health port never answered: {self.output()[-3000:]}")

    async def until_ready(self, timeout: float = 60.0) -> httpx.Response:
        """``/readyz`` once it answers 200."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        response = await self.first_readyz(timeout)
        while response.status_code != 200:
            if loop.time() > deadline or self.proc.poll() is not None:
                raise AssertionError(
                    f"never ready; last answer {response.status_code} {response.text!r}: "
                    f"{self.output()[-3000:]}"
                )
            await asyncio.sleep(0.05)
            response = await self.get("/readyz")
        return response

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample of ``/metrics``: (name, labels) -> value."""
        response = await self.get("/metrics")
        assert response.status_code == 200, response.text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    found = [
        value
        for (sample_name, sample_labels), value in samples.items()
        if sample_name == name and set(labels.items()) <= sample_labels
    ]
    if len(found) > 1:
        raise AssertionError(f"{len(found)} samples of {name} match {labels}")
    return found[0] if found else None


@asynccontextmanager
async def hotdesk_run(service: str, config: Config, tmp: Path) -> AsyncIterator[ServiceProcess]:
    """``hotdesk run <service>`` with ``config`` and a free health port."""
    port = free_port()
    config = msgspec.structs.replace(
        config,
        telemetry=msgspec.structs.replace(
            config.telemetry or TelemetrySettings(), health_port=port, log_level="INFO"
        ),
    )
    path = tmp / f"{service}.json"
    path.write_bytes(msgspec.json.encode(config))
    log = tmp / f"{service}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hotdesk_cli", "run", service, "--resolved-config", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )
    try:
        yield ServiceProcess(service, proc, log, port)
    finally:
        await asyncio.to_thread(_stop, proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
