"""The PromQL queries of a Grafana dashboard, ready to send to a Prometheus: Grafana's template variables
substituted, and the metric names each query reads (to check them against the metrics the code defines)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# What Grafana would put in for its built-in variables and the dashboard's own (all values selected).
GRAFANA_VALUES = {
    "__rate_interval": "30s",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
    "namespace": ".*",
    "job": ".*",
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])[a-zA-Z_:][\w:]*")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"})


@dataclass(frozen=True)
class DashboardQuery:
    panel: str
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"panel {self.panel!r} query {self.ref_id}: {self.expr}"


def load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included (rows themselves too)."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: Mapping[str, Any]) -> list[DashboardQuery]:
    return [DashboardQuery(panel.get("title", f"#{panel.get('id')}"), target.get("refId", "?"), target.get("expr", ""))
            for panel in panels(dashboard) for target in panel.get("targets", [])]


def variables(expr: str) -> set[str]:
    """The names of the template variables a query uses."""
    return {next(group for group in match.groups() if group) for match in _VARIABLE.finditer(expr)}


def substitute(expr: str, values: Mapping[str, str] = GRAFANA_VALUES) -> str:
    """The query as Grafana sends it: $var, ${var}, ${var:format} and [[var]] replaced (unknown ones fail)."""
    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"no value for the dashboard variable ${name} in {expr!r}")
        return values[name]
    return _VARIABLE.sub(value, expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL query selects: identifiers that are no function, keyword or grouping label
    (a lexical reading that is enough for dashboard queries, not a full parser)."""
    cleaned = _STRING.sub('""', expr)
    cleaned = _MATCHERS.sub(" ", cleaned)
    cleaned = _RANGE.sub(" ", cleaned)
    cleaned = _GROUPING.sub(" ", cleaned)
    names = set()
    for match in _IDENTIFIER.finditer(cleaned):
        rest = cleaned[match.end():].lstrip()
        if match.group().lower() in _KEYWORDS or rest.startswith("("):
            continue
        names.add(match.group())
    return names


_SELECTOR_PARTS = re.compile(r"""(?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)"""
                             r"|(?P<matchers>\{[^}]*\})|(?P<range>\[[^\]]*\])"
                             r"|(?P<grouping>\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\))"
                             r"|(?P<name>(?<![\w.])[a-zA-Z_:][\w:]*)")


_CLAUSE_FIRST = re.compile(r"(?:by|without)\s*\([^)]*\)\s*\(")  # sum by (job) (...): an aggregation


def selectors(expr: str) -> list[tuple[str, str]]:
    """Each metric selector of a query: (metric name, its matchers between the braces, "" without braces)."""
    found: list[tuple[str, str]] = []
    parts = list(_SELECTOR_PARTS.finditer(expr))
    for index, part in enumerate(parts):
        name = part.group("name")
        rest = expr[part.end():].lstrip()
        if name is None or name.lower() in _KEYWORDS or rest.startswith("(") or _CLAUSE_FIRST.match(rest):
            continue
        following = parts[index + 1] if index + 1 < len(parts) else None
        braces = following is not None and following.group("matchers") is not None \
            and not expr[part.end():following.start()].strip()
        found.append((name, following.group()[1:-1] if following is not None and braces else ""))
    return found
