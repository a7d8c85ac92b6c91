"""The alert rules (deploy/k8s/base/monitoring/rules/spacesync.rules.yml): valid for promtool, their unit tests
pass and exercise every alert both ways, the PrometheusRule is rendered from them, every alert carries its
runbook and has a section in docs/alerts.md, and every metric they read is one our code defines."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from spacesync.testing.dashboard import metric_names
from spacesync.testing.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "k8s" / "base" / "monitoring"
RULES = MONITORING / "rules" / "spacesync.rules.yml"
RULE_TESTS = sorted((MONITORING / "rules" / "tests").glob("*.yml"))
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
ALERTS_DOC = ROOT / "docs" / "alerts.md"
RUNBOOK_BASE = "https://github.com/spacesync/spacesync/blob/main/docs/alerts.md#"
SEVERITIES = {"critical", "warning"}
ANNOTATIONS = {"summary", "description", "runbook", "runbook_url"}
# Metrics exempt from the "defined in our code" check, each with why (who serves it).
EXTERNAL = {
    "up": "Prometheus itself, one per scrape target",
    r"kafka_\w+": "kafka_exporter's names (our lag exporter serves them; Strimzi's Kafka Exporter too)",
    "http_requests_total": "prometheus-fastapi-instrumentator's default metric (spacesync.common.http.metrics); "
                           "tests/deploy/test_metrics_live.py sees it on the live services",
}
# Where a metric is defined: its name as a string literal in the code of libs/ and services/ (not their tests).
SOURCES = [p for base in ("libs", "services") for p in (ROOT / base).glob("*/src/**/*.py")]


def load_rules(text: str | None = None) -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text() if text is None else text)
    return [rule for group in document["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in load_rules() if "alert" in rule]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in alerts()}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *map(str, args)],  # noqa: S603 (our files, a known tool)
                          capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool unit tests found"
    result = promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """Mutation check: the lag alert with a far higher threshold no longer fires where the tests expect it."""
    mutated = RULES.read_text().replace("namespace_consumergroup_topic:kafka_consumergroup_lag:sum > 50",
                                        "namespace_consumergroup_topic:kafka_consumergroup_lag:sum > 5000")
    assert mutated != RULES.read_text()
    (tmp_path / "spacesync.rules.yml").write_text(mutated)
    (tmp_path / "tests").mkdir()
    shutil.copy(MONITORING / "rules" / "tests" / "kafka.yml", tmp_path / "tests" / "kafka.yml")
    result = promtool("test", "rules", tmp_path / "tests" / "kafka.yml")
    assert result.returncode != 0
    assert "SpacesyncConsumerLagGrowing" in result.stdout + result.stderr


def render(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "deploy" / "render_rules.py"), *map(str, args)],  # noqa: S603
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_prometheusrule_is_rendered_from_the_rules() -> None:
    result = render("--check")
    assert result.returncode == 0, result.stderr
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert resource["kind"] == "PrometheusRule"
    assert resource["metadata"]["labels"]["role"] == "alert-rules"
    assert resource["spec"] == yaml.safe_load(RULES.read_text())


def test_render_check_fails_when_the_rendered_file_is_stale(tmp_path: Path) -> None:
    output = tmp_path / "prometheusrule.yaml"
    output.write_text(PROMETHEUS_RULE.read_text().replace("for: 3m", "for: 1m", 1))
    stale = render("--check", "--output", output)
    assert stale.returncode == 1
    assert "stale" in stale.stderr
    assert render("--output", output).returncode == 0
    assert output.read_text() == PROMETHEUS_RULE.read_text()
    assert render("--check", "--output", output).returncode == 0


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: f"{rule['alert']}-{rule['labels']['severity']}")
def test_every_alert_has_for_severity_and_a_runbook(rule: dict[str, Any]) -> None:
    assert "for" in rule, "every alert needs `for:` (even 0m, said explicitly)"
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule.get("annotations", {})
    missing = ANNOTATIONS - set(annotations)
    assert not missing, f"missing annotations: {missing}"
    assert all(str(annotations[key]).strip() for key in ANNOTATIONS)
    assert "{{" in annotations["description"], "the description should say which job/group/room and how bad"
    assert annotations["runbook_url"] == RUNBOOK_BASE + rule["alert"].lower()


def test_the_alerts_agreed_with_the_team_exist() -> None:
    agreed = {"SpacesyncServiceDown", "SpacesyncConsumerLagGrowing", "SpacesyncDeadLettersReceived",
              "SpacesyncSlotsFailingToSync", "SpacesyncOutboxStuck", "SpacesyncExchangeErrorsHigh",
              "SpacesyncExchangeThrottled", "SpacesyncBusyPictureStale"}
    assert agreed <= alert_names()


def unit_test_cases() -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(file, alertname, expected alerts) of every alert_rule_test case in the promtool test files."""
    cases = []
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.append((path.name, case["alertname"], case.get("exp_alerts") or []))
    return cases


def test_every_alert_is_unit_tested_firing_at_each_severity_and_staying_quiet() -> None:
    cases = unit_test_cases()
    fired = {(name, alert["exp_labels"]["severity"]) for _, name, expected in cases for alert in expected}
    quiet = {name for _, name, expected in cases if not expected}
    defined = {(rule["alert"], rule["labels"]["severity"]) for rule in alerts()}
    assert defined - fired == set(), "alerts no unit test shows firing"
    assert alert_names() - quiet == set(), "alerts no unit test shows staying quiet"
    assert {name for _, name, _ in cases} <= alert_names(), "unit tests of alerts that do not exist"


def test_every_firing_case_checks_the_annotations() -> None:
    for path, name, expected in unit_test_cases():
        for alert in expected:
            assert set(alert.get("exp_annotations", {})) == ANNOTATIONS, f"{path}: {name} {alert['exp_labels']}"


def documented_alerts() -> list[str]:
    return re.findall(r"^## (\w+)\s*$", ALERTS_DOC.read_text(), flags=re.MULTILINE)


def test_every_alert_has_one_section_in_the_docs() -> None:
    sections = documented_alerts()
    assert len(sections) == len(set(sections)), "an alert documented twice"
    assert set(sections) == alert_names()
    for name in sections:
        body = ALERTS_DOC.read_text().split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**Means:**", "**Patron impact:**", "**First checks:**", "**Resolve:**", "**Escalate:**"):
            assert part in body, f"docs/alerts.md#{name.lower()} has no {part}"


def defined_in_code(metric: str) -> bool:
    base = re.sub(r"_(total|bucket|sum|count|created)$", "", metric)
    literals = {f'"{metric}"', f'"{base}"'}
    return any(literal in path.read_text() for path in SOURCES for literal in literals)


def undefined_metrics(expr: str) -> set[str]:
    recorded = {rule["record"] for rule in load_rules() if "record" in rule}
    return {name for name in metric_names(expr) - recorded
            if not any(re.fullmatch(pattern, name) for pattern in EXTERNAL) and not defined_in_code(name)}


def test_every_metric_an_alert_reads_is_defined_in_the_code() -> None:
    assert SOURCES, "no source files found"
    unknown = {f"{rule.get('alert') or rule['record']}: {sorted(undefined_metrics(rule['expr']))}"
               for rule in load_rules() if undefined_metrics(rule["expr"])}
    assert not unknown, "metrics no code defines (renamed?):\n" + "\n".join(sorted(unknown))


@pytest.mark.parametrize(("expr", "unknown"), [
    ("rate(spacesync_writer_failures_total[5m]) > 0", set()),
    ("histogram_quantile(0.9, sum by (le) (rate(spacesync_writer_sync_lag_seconds_bucket[5m])))", set()),
    ('sum by (job) (up{job="x"}) == 0 or kafka_consumergroup_lag > 1', set()),
    ("increase(spacesync_writer_failure_total[15m]) > 0", {"spacesync_writer_failure_total"}),
    ("spacesync_outbox_oldest_age_seconds > 120", {"spacesync_outbox_oldest_age_seconds"}),
    ('rate(http_requests_total{status="5xx"}[3m]) > 0', set()),
    ('rate(http_request_total{status="5xx"}[3m]) > 0', {"http_request_total"}),
])
def test_a_renamed_metric_is_caught(expr: str, unknown: set[str]) -> None:
    assert undefined_metrics(expr) == unknown
