"""A real Prometheus server (the `prometheus` binary, e.g. Debian's package) for tests: scrapes the given targets,
evaluates the given rule files, answers queries on a free loopback port, data in a temporary directory.

    async with run_prometheus(binary, tmp_path, {"booking-service": ["127.0.0.1:8081"]}, [rules]) as prometheus:
        result = await prometheus.query("up")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from spacesync.testing.stack import free_port, spawn, tail, terminate
from spacesync.testing.wait import wait_until


class QueryError(Exception):
    """Prometheus refused the query (a PromQL syntax or type error): the message is Prometheus'."""


@dataclass
class PrometheusServer:
    url: str
    http: httpx.AsyncClient
    log: Path

    async def _get(self, path: str, **params: str) -> Any:
        response = await self.http.get(path, params=params)
        body = response.json()
        if body.get("status") != "success":
            raise QueryError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant query's result (a vector's or matrix's series; a scalar or string as one element)."""
        data = await self._get("/api/v1/query", query=expr)
        result: Any = data["result"]
        return result if data["resultType"] in ("vector", "matrix") else [{"value": result}]

    async def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts: each with labels, annotations, state."""
        alerts: list[dict[str, Any]] = (await self._get("/api/v1/alerts"))["alerts"]
        return alerts

    async def targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = (await self._get("/api/v1/targets"))["activeTargets"]
        return targets


def config(jobs: Mapping[str, Sequence[str]], rule_files: Sequence[Path], interval: str,
           relabel: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A prometheus.yml: one static job per service (job label = the name), the rule files as they are, and a
    job's metric_relabel_configs from `relabel`."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}],
                            **({"metric_relabel_configs": relabel[job]} if job in relabel else {})}
                           for job, targets in jobs.items()],
    }


@asynccontextmanager
async def run_prometheus(binary: str, workdir: Path, jobs: Mapping[str, Sequence[str]],
                         rule_files: Sequence[Path] = (), *, interval: str = "1s",
                         relabel: Mapping[str, list[dict[str, Any]]] | None = None,
                         timeout: float = 60.0) -> AsyncIterator[PrometheusServer]:
    config_file = write_config(workdir, config(jobs, rule_files, interval, relabel or {}))
    port = free_port()
    log = workdir / "prometheus.log"
    process = await spawn([binary, f"--config.file={config_file}", f"--storage.tsdb.path={workdir / 'data'}",
                           f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], log)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            async def ready() -> bool:
                if process.returncode is not None:
                    raise RuntimeError(f"prometheus exited with {process.returncode}:\n{tail(log)}")
                try:
                    return (await http.get("/-/ready")).status_code == 200
                except httpx.HTTPError:
                    return False
            await wait_until(ready, timeout=timeout, interval=0.2, message=f"prometheus ready at {url}")
            yield PrometheusServer(url, http, log)
    finally:
        await terminate(process)


def write_config(workdir: Path, content: dict[str, Any]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path
