"""The Grafana dashboard (deploy/k8s/base/monitoring/dashboards/spacesync.json): a well-formed dashboard whose
every query parses (a real, empty Prometheus answers it) and reads only metrics the code defines or a known
exporter serves, so a renamed metric fails here. That each query returns data: test_prometheus_live.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import REGISTRY

from spacesync.testing import dashboard
from spacesync.testing.prometheus import QueryError, run_prometheus
from spacesync.testing.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "k8s" / "base" / "monitoring"
DASHBOARD = MONITORING / "dashboards" / "spacesync.json"
RULES = MONITORING / "rules" / "spacesync.rules.yml"
GRID_WIDTH = 24
# Served by Prometheus itself, or by kafka_exporter's metric names (Strimzi's Kafka Exporter in a cluster, our
# spacesync.common.kafka.lag_exporter locally: a collector whose names appear only once it has read Kafka).
EXTERNAL_METRICS = {"up", "kafka_consumergroup_lag", "kafka_consumergroup_current_offset",
                    "kafka_topic_partition_current_offset", "kafka_topic_partition_oldest_offset"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count"),
            "gauge": ("",), "info": ("_info",)}


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return dashboard.load(DASHBOARD)


def exposed_names(registry: CollectorRegistry) -> set[str]:
    """The sample names /metrics shows for every metric family in the registry."""
    return {family.name + suffix for family in registry.collect() for suffix in SUFFIXES.get(family.type, ("",))}


def defined_metrics() -> set[str]:
    """Our services' metrics (their modules register them in the default registry on import), and the libraries'
    every service exposes: process_*, FastStream's consumer metrics, prometheus-fastapi-instrumentator's HTTP ones."""
    from faststream.prometheus.container import MetricsContainer
    from prometheus_fastapi_instrumentator import metrics as http_metrics

    import spacesync.availability_service.metrics
    import spacesync.booking_service.api.public
    import spacesync.booking_service.exchange_admin
    import spacesync.common.exchange.metrics
    import spacesync.common.kafka.dlq
    import spacesync.common.loop_lag
    import spacesync.common.outbox.relay
    import spacesync.exchange_poller.metrics
    import spacesync.exchange_writer.metrics  # noqa: F401

    libraries = CollectorRegistry()
    ProcessCollector(registry=libraries)
    MetricsContainer(libraries, custom_label_names=())
    http_metrics.default(registry=libraries)
    return exposed_names(REGISTRY) | exposed_names(libraries)


def test_it_is_a_grafana_dashboard_with_a_datasource_variable(board: dict[str, Any]) -> None:
    assert board["uid"] == "spacesync"
    assert board["schemaVersion"] >= 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    unknown = {v for q in dashboard.queries(board) for v in dashboard.variables(q.expr)} - set(dashboard.GRAFANA_VALUES)
    assert not unknown, f"queries use variables the live test cannot fill in: {unknown}"


def test_every_panel_is_placed_described_and_queries_the_variable_datasource(board: dict[str, Any]) -> None:
    panels = list(dashboard.panels(board))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid), panel["title"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        for cell in ((x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                     for y in range(grid["y"], grid["y"] + grid["h"])):
            assert cell not in cells, f"{panel['title']!r} overlaps {cells[cell]!r}"
            cells[cell] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel.get("description", "").strip(), f"{panel['title']!r} has no description"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"{panel['title']!r} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{panel['title']!r} repeats a refId"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{panel['title']!r} {target['refId']} has no expr"
            assert target.get("datasource", panel["datasource"])["uid"] == "${datasource}", panel["title"]


def test_every_metric_a_query_reads_is_defined(board: dict[str, Any]) -> None:
    known = defined_metrics() | EXTERNAL_METRICS
    unknown = {f"{query.panel} {query.ref_id}: {name}" for query in dashboard.queries(board)
               for name in dashboard.metric_names(query.expr) - known}
    assert not unknown, "metrics no code defines (renamed?):\n" + "\n".join(sorted(unknown))


def test_the_alerts_panels_name_exist(board: dict[str, Any]) -> None:
    """Descriptions send operators to alerts by name: a renamed alert must not leave them looking for a ghost."""
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
              if "alert" in rule}
    named = {(panel["title"], name) for panel in dashboard.panels(board)
             for name in re.findall(r"\bSpacesync[A-Z]\w+", panel.get("description", ""))}
    assert named, "no panel names an alert"
    assert not {(title, name) for title, name in named if name not in alerts}


def test_every_selector_is_scoped_to_the_chosen_namespace(board: dict[str, Any]) -> None:
    """One Prometheus may watch dev and prod (the rules keep `namespace`): unscoped queries would add both up
    (Active pollers 2) or take the max across two Kafka clusters' lag. Compose has no namespace: ".*" matches."""
    names = [variable["name"] for variable in board["templating"]["list"]]
    assert "namespace" in names
    unscoped = {f"{query.panel} {query.ref_id}: {name}" for query in dashboard.queries(board)
                for name, matchers in dashboard.selectors(query.expr) if 'namespace=~"$namespace"' not in matchers}
    assert not unscoped, "selectors without namespace=~\"$namespace\":\n" + "\n".join(sorted(unscoped))


@pytest.mark.parametrize(("expr", "found"), [
    ('sum by (job) (rate(a_total{job=~"x|y"}[5m])) / on (job) b', [("a_total", 'job=~"x|y"'), ("b", "")]),
    ('label_replace(c {n="a"}, "kind", "up", "", "") or vector(0) > bool 1e3', [("c", 'n="a"')]),
])
def test_selectors_are_read_from_a_query(expr: str, found: list[tuple[str, str]]) -> None:
    assert dashboard.selectors(expr) == found


async def test_every_query_parses(board: dict[str, Any], tmp_path: Path) -> None:
    async with run_prometheus(require_tool("prometheus"), tmp_path, {}) as prometheus:
        failures = []
        for query in dashboard.queries(board):
            try:
                await prometheus.query(dashboard.substitute(query.expr))
            except QueryError as error:
                failures.append(f"{query}\n  {error}")
    assert not failures, "\n".join(failures)


async def test_a_bad_query_is_reported(tmp_path: Path) -> None:
    """The parse check above relies on Prometheus refusing bad PromQL with an error."""
    async with run_prometheus(require_tool("prometheus"), tmp_path, {}) as prometheus:
        with pytest.raises(QueryError, match="parse error"):
            await prometheus.query("sum by (job) (rate(up[5m])")


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (job, le) (rate(http_requests_total{job=~"a|b", status="5xx"}[$__rate_interval]))',
     {"http_requests_total"}),
    ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) / on(job) group_left(y) z", {"x_bucket", "z"}),
    ('label_replace(a, "kind", "retry", "", "") or vector(0) and b unless c offset 5m', {"a", "b", "c"}),
    ("quantile(0.95, spacesync:ratio:sum) > bool 1e3", {"spacesync:ratio:sum"}),
])
def test_metric_names_are_read_from_a_query(expr: str, names: set[str]) -> None:
    assert dashboard.metric_names(expr) == names


def test_grafana_variables_are_substituted() -> None:
    assert dashboard.substitute('rate(x{job=~"$job"}[$__rate_interval]) [[job]] ${job:regex}') == \
        'rate(x{job=~".*"}[30s]) .* .*'
    with pytest.raises(KeyError, match="cluster"):
        dashboard.substitute('x{cluster="$cluster"}')

