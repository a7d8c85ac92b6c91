"""deploy/k8s: every overlay builds, every object matches its schema (CRDs too), and the built output does what
the operators' page promises: probes, drain-aware termination, PDBs, scaling, topics, monitoring, network
policies, Secrets, images, and environment variables the services actually read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from spacesync.availability_service.settings import AvailabilitySettings
from spacesync.booking_service.settings import BookingServiceSettings
from spacesync.common.events import Topic
from spacesync.common.events.registry import COMPACTED_TOPICS
from spacesync.common.kafka.dlq import dlq_topic
from spacesync.common.kafka.lag_exporter import LagExporterSettings
from spacesync.common.settings import KafkaSettings
from spacesync.exchange_poller.settings import PollerSettings
from spacesync.exchange_simulator.settings import SimulatorSettings
from spacesync.exchange_writer.settings import WriterSettings
from spacesync.testing.kube import K8S, Manifest, build, containers, name_of, schema_errors
from spacesync.testing.netpol import External, Pod, connects, selects
from spacesync.testing.settings import env_names

BUILDS = ("base", "overlays/dev", "overlays/prod")
OVERLAYS = ("overlays/dev", "overlays/prod")
SETTINGS: dict[str, type[BaseSettings]] = {
    "booking-service": BookingServiceSettings,
    "exchange-writer": WriterSettings,
    "exchange-poller": PollerSettings,
    "availability-service": AvailabilitySettings,
    "kafka-lag-exporter": LagExporterSettings,
    "exchange-simulator": SimulatorSettings,
}
SERVICES = ("booking-service", "exchange-writer", "exchange-poller", "availability-service")
# The image each Deployment runs: spacesync/<this>.
IMAGES = {**{s: s for s in SERVICES}, "kafka-lag-exporter": "booking-service",
          "exchange-simulator": "exchange-simulator"}
# The topics each service's consumer group reads and its consumers of each per pod (the apps' subscribe calls);
# a variable's name where a setting decides.
CONSUMED: dict[str, dict[Topic, int | str]] = {
    "booking-service": {Topic.EXCHANGE_SYNC: 1, Topic.EXCHANGE_FREEBUSY: 1},
    "exchange-writer": {Topic.CATALOG_EVENTS: 1, Topic.BOOKING_EVENTS: 1},
    "exchange-poller": {Topic.CATALOG_EVENTS: 1},
    "availability-service": {Topic.CATALOG_EVENTS: 1, Topic.EXCHANGE_FREEBUSY: 1,
                             Topic.BOOKING_EVENTS: "SPACESYNC_FOLD_CONSUMERS"},
}
COMPACTED = {t.value for t in COMPACTED_TOPICS}  # the reasons: deploy/k8s/base/kafka-topics.yaml


@pytest.fixture(scope="module")
def builds() -> dict[str, list[Manifest]]:
    return {path: build(K8S / path) for path in BUILDS}


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in of_kind(manifests, kind) if m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def config_map(manifests: list[Manifest]) -> dict[str, str]:
    found = [m for m in of_kind(manifests, "ConfigMap") if m["metadata"]["name"].startswith("spacesync-config")]
    assert len(found) == 1, "expected one spacesync-config ConfigMap"
    data: dict[str, str] = found[0]["data"]
    return data


def spacesync_deployments(manifests: list[Manifest]) -> Iterator[Manifest]:
    for deployment in of_kind(manifests, "Deployment"):
        assert deployment["metadata"]["name"] in SETTINGS, f"unexpected {name_of(deployment)}"
        yield deployment


# --- build and schemas ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BUILDS)
def test_every_object_matches_its_schema(builds: dict[str, list[Manifest]], path: str) -> None:
    errors = schema_errors(builds[path])
    assert not errors, f"{path}: objects that a cluster would refuse:\n" + "\n".join(errors)


@pytest.mark.parametrize("path", BUILDS)
def test_names_are_unique(builds: dict[str, list[Manifest]], path: str) -> None:
    names = [name_of(m) for m in builds[path]]
    assert sorted({n for n in names if names.count(n) > 1}) == []


# --- pods -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BUILDS)
def test_probes_resources_and_security(builds: dict[str, list[Manifest]], path: str) -> None:
    for deployment in spacesync_deployments(builds[path]):
        pod = deployment["spec"]["template"]["spec"]
        where = name_of(deployment)
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] == 10001, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in containers(deployment):
            # Liveness is the process only (/healthz never asks Kafka or Postgres); readiness the dependencies.
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            if "startupProbe" in container:
                assert container["startupProbe"]["httpGet"]["path"] == "/healthz", where
            elif deployment["metadata"]["name"] != "exchange-simulator":  # no migrations there
                pytest.fail(f"{where}: no startupProbe (migrations run at start)")
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) == {"cpu", "memory"}, f"{where}: resources.{kind}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where


@pytest.mark.parametrize("path", BUILDS)
def test_replicas_spread_over_nodes(builds: dict[str, list[Manifest]], path: str) -> None:
    """A service that runs more than one pod asks for them on different nodes: a node's loss leaves one running
    (the poller's standby above all)."""
    for service in SERVICES:
        deployment = one(builds[path], "Deployment", service)
        spreads = [c for c in deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
                   if c["topologyKey"] == "kubernetes.io/hostname"
                   and selects(c["labelSelector"], pod_labels(deployment))]
        assert spreads, f"{name_of(deployment)}: nothing spreads its pods over nodes"
        assert spreads[0]["maxSkew"] == 1, name_of(deployment)


@pytest.mark.parametrize("path", BUILDS)
def test_termination_outlasts_the_drain(builds: dict[str, list[Manifest]], path: str) -> None:
    """SIGKILL comes after preStop + uvicorn's graceful period + the app's drain (both the shutdown grace) +
    the writer's 5 s margin: nothing in flight is cut off."""
    grace = float(config_map(builds[path])["SPACESYNC_SHUTDOWN_GRACE_SECONDS"])
    for deployment in spacesync_deployments(builds[path]):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        drains = any(source.get("configMapRef", {}).get("name", "").startswith("spacesync-config")
                     for source in container.get("envFrom", []))
        needed = pause + (2 * grace + 5 if drains else 0)
        assert pod["terminationGracePeriodSeconds"] > needed, (
            f"{name_of(deployment)}: terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} "
            f"<= {needed} (preStop {pause} s, shutdown grace {grace} s)")


@pytest.mark.parametrize("path", BUILDS)
def test_every_workload_has_a_disruption_budget(builds: dict[str, list[Manifest]], path: str) -> None:
    budgets = of_kind(builds[path], "PodDisruptionBudget")
    for workload in of_kind(builds[path], "Deployment"):
        matching = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(workload))]
        assert len(matching) == 1, f"{name_of(workload)}: {len(matching)} PodDisruptionBudgets select it"


@pytest.mark.parametrize("path", BUILDS)
def test_images_are_spacesync_images(builds: dict[str, list[Manifest]], path: str) -> None:
    for deployment in spacesync_deployments(builds[path]):
        (container,) = containers(deployment)
        reference = container["image"]
        tagged = ":" in reference.rsplit("/", 1)[-1]  # not a registry's port
        image, tag = (reference.rsplit(":", 1)[0], reference.rsplit(":", 1)[1]) if tagged else (reference, "")
        wanted = f"spacesync/{IMAGES[deployment['metadata']['name']]}"
        assert image == wanted or image.endswith("/" + wanted), f"{name_of(deployment)}: image {reference}"
        if path != "base":
            assert tag not in ("", "latest"), f"{name_of(deployment)}: {path} must pin a tag"


@pytest.mark.parametrize("path", BUILDS)
def test_every_env_var_is_one_the_service_reads(builds: dict[str, list[Manifest]], path: str) -> None:
    """A typo (SPACESYNC_SHUTDOWN_GRACE instead of ..._SECONDS) would be silently ignored by the service."""
    config = config_map(builds[path])
    for deployment in spacesync_deployments(builds[path]):
        (container,) = containers(deployment)
        names = {variable["name"] for variable in container.get("env", [])}
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"].startswith("spacesync-config"), name_of(deployment)
            names |= set(config)
        unknown = names - env_names(SETTINGS[deployment["metadata"]["name"]])
        assert not unknown, f"{name_of(deployment)}: variables its settings do not read: {sorted(unknown)}"


# --- scaling ----------------------------------------------------------------------------------------------------


def scaled_by(manifests: list[Manifest], deployment: str) -> list[Manifest]:
    hpas = [h for h in of_kind(manifests, "HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment}]
    scaled = [s for s in of_kind(manifests, "ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == deployment]
    return hpas + scaled


def consumers_per_pod(manifests: list[Manifest], service: str, topic: Topic) -> int:
    count = CONSUMED[service][topic]
    if isinstance(count, int):
        return count
    (container,) = containers(one(manifests, "Deployment", service))
    env = {variable["name"]: variable.get("value") for variable in container.get("env", [])}
    if env.get(count) is not None:
        return int(env[count])
    default = SETTINGS[service].model_fields[count.removeprefix("SPACESYNC_").lower()].default
    return int(default)


def partitions(manifests: list[Manifest], topic: str) -> int:
    found = [t for t in of_kind(manifests, "KafkaTopic") if t["spec"]["topicName"] == topic]
    assert len(found) == 1, f"no KafkaTopic for {topic}"
    count: int = found[0]["spec"]["partitions"]
    return count


@pytest.mark.parametrize("path", BUILDS)
def test_scaling(builds: dict[str, list[Manifest]], path: str) -> None:
    manifests = builds[path]
    (hpa,) = scaled_by(manifests, "booking-service")
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for service in ("exchange-writer", "availability-service"):
        (scaled,) = scaled_by(manifests, service)  # a ScaledObject and no second HPA fighting it
        assert scaled["kind"] == "ScaledObject", f"{service} is scaled by {name_of(scaled)}"
        assert "replicas" not in one(manifests, "Deployment", service)["spec"], f"{service}: KEDA owns replicas"
        kafka = [t for t in scaled["spec"]["triggers"] if t["type"] == "kafka"]
        assert kafka, f"{service}: no Kafka lag trigger"
        for trigger in kafka:
            assert trigger["metadata"]["consumerGroup"] == service
            assert Topic(trigger["metadata"]["topic"]) in CONSUMED[service]
            if path != "base":
                assert trigger["metadata"]["bootstrapServers"] == config_map(manifests)["KAFKA_BOOTSTRAP_SERVERS"]
    assert {t["type"] for t in one(manifests, "ScaledObject", "availability-service")["spec"]["triggers"]} == {
        "kafka", "cpu"}
    # The poller: one active instance and a standby, never autoscaled.
    assert scaled_by(manifests, "exchange-poller") == []
    assert one(manifests, "Deployment", "exchange-poller")["spec"]["replicas"] == 2
    assert one(manifests, "PodDisruptionBudget", "exchange-poller")["spec"]["minAvailable"] == 1


@pytest.mark.parametrize("path", OVERLAYS)
def test_keda_reaches_kafka_from_its_own_namespace(builds: dict[str, list[Manifest]], path: str) -> None:
    """KEDA's operator reads the lag from its own namespace (keda): a bare Service name there resolves to nothing,
    so every bootstrap address names its namespace (<service>.<namespace>.svc), the Kafka's where it is in the
    build (dev)."""
    manifests = builds[path]
    kafka_namespaces = {k["metadata"]["namespace"] for k in of_kind(manifests, "Kafka")}
    for scaled in of_kind(manifests, "ScaledObject"):
        for trigger in (t for t in scaled["spec"]["triggers"] if t["type"] == "kafka"):
            for address in trigger["metadata"]["bootstrapServers"].split(","):
                host = address.rsplit(":", 1)[0]
                labels = host.split(".")
                assert labels[2:3] == ["svc"], (
                    f"{name_of(scaled)}: {address} does not resolve from KEDA's namespace (<service>.<namespace>.svc)")
                if kafka_namespaces:
                    assert labels[1] in kafka_namespaces, f"{name_of(scaled)}: {address} is not the Kafka's namespace"


@pytest.mark.parametrize("path", BUILDS)
def test_no_replica_count_leaves_consumers_idle(builds: dict[str, list[Manifest]], path: str) -> None:
    """Consumers of a group beyond the topic's partitions get no partition: replicas there only cost."""
    manifests = builds[path]
    for service, topics in CONSUMED.items():
        for scaler in scaled_by(manifests, service):
            most = scaler["spec"].get("maxReplicas", scaler["spec"].get("maxReplicaCount"))
            for topic in topics:
                consumers = most * consumers_per_pod(manifests, service, topic)
                assert consumers <= partitions(manifests, topic.value), (
                    f"{name_of(scaler)}: up to {consumers} consumers of {topic.value}, which has "
                    f"{partitions(manifests, topic.value)} partitions")


# --- topics -----------------------------------------------------------------------------------------------------


def topic_specs(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    return {t["spec"]["topicName"]: t for t in of_kind(manifests, "KafkaTopic")}


@pytest.mark.parametrize("path", BUILDS)
def test_every_topic_and_its_dead_letters(builds: dict[str, list[Manifest]], path: str) -> None:
    topics = topic_specs(builds[path])
    assert set(topics) == {t.value for t in Topic} | {dlq_topic(t.value) for t in Topic}
    for name, topic in topics.items():
        assert topic["spec"]["partitions"] == KafkaSettings().topic_partitions, name
        assert topic["metadata"]["labels"]["strimzi.io/cluster"], name
    compacted = {n for n, t in topics.items() if "compact" in t["spec"]["config"]["cleanup.policy"]}
    assert compacted == COMPACTED


def test_production_topics_survive_a_broker(builds: dict[str, list[Manifest]]) -> None:
    for name, topic in topic_specs(builds["overlays/prod"]).items():
        assert topic["spec"]["replicas"] == 3, name
        assert topic["spec"]["config"]["min.insync.replicas"] == 2, name


def test_dev_topics_fit_one_broker(builds: dict[str, list[Manifest]]) -> None:
    (pool,) = of_kind(builds["overlays/dev"], "KafkaNodePool")
    for name, topic in topic_specs(builds["overlays/dev"]).items():
        assert topic["spec"]["replicas"] <= pool["spec"]["replicas"], name
        assert topic["spec"]["config"]["min.insync.replicas"] <= topic["spec"]["replicas"], name


def test_replayed_topics_are_kept(builds: dict[str, list[Manifest]]) -> None:
    """The availability-service rebuild replays booking.events and catalog.events from the beginning."""
    topics = topic_specs(builds["overlays/prod"])
    for name in (Topic.BOOKING_EVENTS, Topic.CATALOG_EVENTS):
        assert topics[name.value]["spec"]["config"]["retention.ms"] == -1, name


# --- monitoring -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BUILDS)
def test_every_service_is_scraped(builds: dict[str, list[Manifest]], path: str) -> None:
    manifests = builds[path]
    services = of_kind(manifests, "Service")
    monitors = of_kind(manifests, "ServiceMonitor")
    for deployment in spacesync_deployments(manifests):
        (service,) = [s for s in services if selects({"matchLabels": s["spec"]["selector"]}, pod_labels(deployment))]
        assert [p["name"] for p in service["spec"]["ports"]] == ["http"], name_of(service)
        watching = [m for m in monitors if selects(m["spec"]["selector"], service["metadata"]["labels"])]
        assert len(watching) == 1, f"{name_of(service)}: {len(watching)} ServiceMonitors"
        (monitor,) = watching
        # The Prometheus job is the service's name, as the alert rules and the dashboard expect.
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
        assert service["metadata"]["labels"]["app.kubernetes.io/name"] == deployment["metadata"]["name"]
        assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]


# --- overlays ---------------------------------------------------------------------------------------------------


def test_prod_has_no_simulator_and_no_secret_values(builds: dict[str, list[Manifest]]) -> None:
    prod = builds["overlays/prod"]
    assert of_kind(prod, "Secret") == []
    assert not [m for m in prod if "simulator" in m["metadata"]["name"]]
    assert {m["metadata"].get("namespace") for m in prod if m["kind"] != "Namespace"} == {"spacesync"}


def test_dev_has_the_simulator_kafka_and_postgres(builds: dict[str, list[Manifest]]) -> None:
    dev = builds["overlays/dev"]
    one(dev, "Deployment", "exchange-simulator")
    one(dev, "Service", "exchange-simulator")
    one(dev, "StatefulSet", "postgres")
    (kafka,) = of_kind(dev, "Kafka")
    assert {t["metadata"]["labels"]["strimzi.io/cluster"] for t in of_kind(dev, "KafkaTopic")} == {
        kafka["metadata"]["name"]}
    assert config_map(dev)["KAFKA_BOOTSTRAP_SERVERS"].startswith(
        f"{kafka['metadata']['name']}-kafka-bootstrap.{kafka['metadata']['namespace']}.svc:")
    assert {m["metadata"].get("namespace") for m in dev if m["kind"] != "Namespace"} == {"spacesync-dev"}


def secret_refs(manifests: list[Manifest]) -> set[tuple[str, str]]:
    refs = set()
    for workload in [*of_kind(manifests, "Deployment"), *of_kind(manifests, "StatefulSet")]:
        for container in containers(workload):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    return refs


def test_dev_generates_every_secret_it_references(builds: dict[str, list[Manifest]]) -> None:
    dev = builds["overlays/dev"]
    secrets = {s["metadata"]["name"]: set(s["data"]) for s in of_kind(dev, "Secret")}
    for name, key in secret_refs(dev):
        assert key in secrets.get(name, set()), f"dev references Secret {name} key {key}, which it does not make"


def test_prod_secrets_are_documented(builds: dict[str, list[Manifest]]) -> None:
    readme = (K8S / "README.md").read_text()
    missing = [f"{name} {key}" for name, key in sorted(secret_refs(builds["overlays/prod"]))
               if name not in readme or key not in readme]
    assert not missing, f"deploy/k8s/README.md does not say how to create: {missing}"


def test_encryption_key_goes_to_the_services_that_decrypt(builds: dict[str, list[Manifest]]) -> None:
    prod = builds["overlays/prod"]
    for service, settings in SETTINGS.items():
        if service not in SERVICES:
            continue
        (container,) = containers(one(prod, "Deployment", service))
        has_key = "SPACESYNC_SECRET_KEYS" in {v["name"] for v in container["env"]}
        assert has_key == ("secret_keys" in settings.model_fields), service


# --- network policies -------------------------------------------------------------------------------------------


# Peers outside our manifests, as the README's prerequisites name them.
DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
INGRESS_CONTROLLER = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
KEDA_OPERATOR = Pod("keda", {"app": "keda-operator"})
EXCHANGE = External("203.0.113.25")  # any address outside the cluster on 443


def kafka_brokers(manifests: list[Manifest]) -> Pod:
    """Strimzi's broker pods of the cluster KAFKA_BOOTSTRAP_SERVERS names (<cluster>-kafka-bootstrap.<namespace>.svc),
    which must be the cluster the KafkaTopics name."""
    service, namespace = config_map(manifests)["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0].split(".")[:2]
    cluster = service.removesuffix("-kafka-bootstrap")
    assert {t["metadata"]["labels"]["strimzi.io/cluster"] for t in of_kind(manifests, "KafkaTopic")} == {cluster}
    return Pod(namespace, {"strimzi.io/cluster": cluster, "strimzi.io/kind": "Kafka",
                           "strimzi.io/name": f"{cluster}-kafka", "strimzi.io/component-type": "kafka"})


def database(manifests: list[Manifest], namespace: str) -> Pod | External:
    """Dev's Postgres pod; prod's database, an address the operator puts in allow-postgres-egress."""
    postgres = of_kind(manifests, "StatefulSet")
    if postgres:
        return Pod(namespace, pod_labels(postgres[0]))
    (peer,) = one(manifests, "NetworkPolicy", "allow-postgres-egress")["spec"]["egress"][0]["to"]
    return External(peer["ipBlock"]["cidr"].split("/")[0])


@pytest.mark.parametrize("path", OVERLAYS)
def test_network_policies(builds: dict[str, list[Manifest]], path: str) -> None:
    """Each flow the services need, evaluated with its peers (namespaces, pod labels, addresses) on both ends."""
    manifests = builds[path]
    policies = of_kind(manifests, "NetworkPolicy")
    deny = one(manifests, "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    namespace = deny["metadata"]["namespace"]
    pods = {d["metadata"]["name"]: Pod(namespace, pod_labels(d)) for d in spacesync_deployments(manifests)}
    brokers, postgres = kafka_brokers(manifests), database(manifests, namespace)
    for name, pod in pods.items():
        for protocol in ("UDP", "TCP"):
            assert connects(policies, pod, DNS, 53, protocol), f"{name}: no DNS over {protocol}"
        assert connects(policies, PROMETHEUS, pod, 8080), f"{name}: Prometheus cannot scrape it"
        assert connects(policies, INGRESS_CONTROLLER, pod, 8080) == (
            name in ("booking-service", "availability-service")), f"{name}: from the ingress controller"
        if name != "exchange-simulator":
            assert connects(policies, pod, brokers, 9092), f"{name}: cannot reach Kafka at {brokers}"
        assert connects(policies, pod, postgres, 5432) == (name in SERVICES), f"{name}: Postgres"
        talks_to_exchange = name in ("booking-service", "exchange-writer", "exchange-poller")
        assert connects(policies, pod, EXCHANGE, 443) == talks_to_exchange, f"{name}: Exchange"
        assert not connects(policies, pod, EXCHANGE, 8080), f"{name}: egress beyond what it needs"
    assert connects(policies, KEDA_OPERATOR, brokers, 9092), "KEDA cannot read the consumer lag"
    if path == "overlays/dev":
        for name in ("booking-service", "exchange-writer", "exchange-poller"):
            assert connects(policies, pods[name], pods["exchange-simulator"], 8080), f"{name}: no simulator"
        demo = Pod(namespace, pod_labels(one(manifests, "Job", "demo-data")))
        assert connects(policies, demo, DNS, 53, "UDP")
        for target in ("booking-service", "exchange-simulator"):
            assert connects(policies, demo, pods[target], 8080), f"demo-data cannot reach {target}"
        assert not connects(policies, demo, pods["exchange-writer"], 8080)
