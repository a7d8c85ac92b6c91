"""What a set of NetworkPolicies lets through, evaluated as a CNI does (tests/deploy/test_k8s_manifests.py).

A pod that no policy of a direction selects is not isolated in that direction; an isolated pod takes traffic that
some rule of a selecting policy admits by port AND peer. Peers: podSelector alone means the policy's namespace,
namespaceSelector matches `kubernetes.io/metadata.name` (set on every namespace), both means both, ipBlock
matches addresses outside the cluster. A connection needs the sender's egress and the receiver's ingress.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from typing import Any, Literal

Manifest = dict[str, Any]
Direction = Literal["Ingress", "Egress"]


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class External:
    """An address outside the cluster (Exchange, a managed database)."""

    ip: str


Peer = Pod | External


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions with In/NotIn/Exists/DoesNotExist) matches the labels."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[operator]
        if not ok:
            return False
    return True


def _policy_types(spec: Mapping[str, Any]) -> list[str]:
    default = ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]
    types: list[str] = spec.get("policyTypes", default)
    return types


def _peer_matches(entry: Mapping[str, Any], policy_namespace: str, peer: Peer) -> bool:
    if "ipBlock" in entry:
        if not isinstance(peer, External):
            return False
        address, block = ip_address(peer.ip), entry["ipBlock"]
        return address in ip_network(block["cidr"]) and not any(address in ip_network(e)
                                                                 for e in block.get("except", []))
    if not isinstance(peer, Pod):
        return False
    namespaces = entry.get("namespaceSelector")
    in_namespace = (selects(namespaces, {"kubernetes.io/metadata.name": peer.namespace}) if namespaces is not None
                    else peer.namespace == policy_namespace)
    pods = entry.get("podSelector")
    return in_namespace and (pods is None or selects(pods, peer.labels))


def _port_matches(rule: Mapping[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("protocol", "TCP") == protocol
                            and (p.get("port") is None or p["port"] <= port <= p.get("endPort", p["port"]))
                            for p in ports if not isinstance(p.get("port"), str))


def allows(policies: Iterable[Manifest], pod: Pod, direction: Direction, peer: Peer, port: int,
           protocol: str = "TCP") -> bool:
    """Whether the pod's own side lets traffic with the peer through on that port."""
    selecting = [p for p in policies if p["kind"] == "NetworkPolicy" and p["metadata"]["namespace"] == pod.namespace
                 and direction in _policy_types(p["spec"]) and selects(p["spec"]["podSelector"], pod.labels)]
    if not selecting:
        return True
    side = "to" if direction == "Egress" else "from"
    return any(_port_matches(rule, port, protocol)
               and (not rule.get(side) or any(_peer_matches(e, policy["metadata"]["namespace"], peer)
                                              for e in rule[side]))
               for policy in selecting for rule in policy["spec"].get(direction.lower(), []))


def connects(policies: list[Manifest], source: Pod, target: Peer, port: int, protocol: str = "TCP") -> bool:
    """The source's egress and, for a pod, the target's ingress both let the connection through."""
    if not allows(policies, source, "Egress", target, port, protocol):
        return False
    return not isinstance(target, Pod) or allows(policies, target, "Ingress", source, port, protocol)
