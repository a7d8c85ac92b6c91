"""Builds of deploy/k8s and their schema checks (tests/deploy/test_k8s_manifests.py).

kustomize: `kubectl kustomize` when kubectl exists, else kustomize built once from the Go module proxy into
.local/bin. Schemas: built-in kinds with kubernetes-validate (strict: unknown fields are errors); the Prometheus
Operator's and KEDA's custom resources against the openAPIV3Schema of their CRDs (from their Go modules,
made strict the same way); Strimzi's with the validators @kubernetes-models/strimzi-kafka-operator generates
from Strimzi's CRDs (npm, tools/strimzi-validate). Go modules are cached under .local/cache (gitignored).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import yaml

from spacesync.testing.tools import require_tool

Manifest = dict[str, Any]

REPO = Path(__file__).resolve().parents[5]  # libs/testing/src/spacesync/testing/kube.py
K8S = REPO / "deploy" / "k8s"
CACHE = REPO / ".local" / "cache"
# v5.8.0 (its go.mod: Go 1.24); v5.8.3 asks for Go 1.27, newer than ours. kubectl 1.32 bundles v5.5.0.
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5@v5.8.0"
KUBERNETES_VERSION = "1.33.0"
# CRD YAMLs inside Go modules: module@version -> folder in its zip.
CRD_MODULES = {
    "github.com/prometheus-operator/prometheus-operator@v0.85.0": "example/prometheus-operator-crd/",
    "github.com/kedacore/keda/v2@v2.21.0": "config/crd/bases/",
}
CRD_GROUPS = {"monitoring.coreos.com", "keda.sh"}
# Strimzi publishes its CRDs on GitHub only; @kubernetes-models/strimzi-kafka-operator (npm, locked in
# tools/strimzi-validate) ships validators generated from strimzi-crds-0.49.0.yaml.
STRIMZI_GROUP = "kafka.strimzi.io"
STRIMZI_TOOL = REPO / "tools" / "strimzi-validate"


def name_of(manifest: Manifest) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def _run(command: list[str], *, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, env=env, input=stdin, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr.strip()}")
    return result.stdout


def _go() -> str | None:
    installed = Path("/usr/local/go/bin/go")  # the official tarball's place, often not on PATH
    return shutil.which("go") or (str(installed) if installed.exists() else None)


def _go_env() -> dict[str, str]:
    return {**os.environ, "GOMODCACHE": str(CACHE / "gomod"), "GOFLAGS": "-modcacherw", "GOTOOLCHAIN": "local"}


def _kustomize() -> list[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        return [kubectl, "kustomize"]
    built = REPO / ".local" / "bin" / "kustomize"
    go = _go()
    if not built.exists() and go is not None:
        _run([go, "install", KUSTOMIZE_MODULE], env={**_go_env(), "GOBIN": str(built.parent)})
    if built.exists():
        return [str(built), "build"]
    require_tool("kubectl")  # skips, or fails under SPACESYNC_REQUIRE_TOOLS
    raise AssertionError("unreachable: require_tool returned without kubectl")


def build(directory: Path) -> list[Manifest]:
    """The objects `kustomize build <directory>` makes."""
    output = _run([*_kustomize(), str(directory)])
    return [doc for doc in yaml.safe_load_all(output) if doc]


# --- built-in kinds --------------------------------------------------------------------------------------------


def builtin_errors(manifest: Manifest) -> list[str]:
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path) or "(top)"
        return [f"{name_of(manifest)}: {path}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{name_of(manifest)}: {error.message}"]
    return []


# --- CRDs from Go modules (Prometheus Operator, KEDA) -----------------------------------------------------------


class _CrdLoader(yaml.CSafeLoader):
    """YAML 1.1's `=` (value) tag appears as a plain string in CRDs (enum ["=", ...]): read it as one."""


def _plain_string(loader: yaml.CSafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_CrdLoader.add_constructor("tag:yaml.org,2002:value", _plain_string)


def _module_zip(module: str) -> Path:
    go = _go()
    if go is None:
        require_tool("go")
        raise AssertionError("unreachable: require_tool returned without go")
    info = json.loads(_run([go, "mod", "download", "-json", module], env=_go_env()))
    if info.get("Error"):
        raise AssertionError(f"go mod download {module}: {info['Error']}")
    return Path(info["Zip"])


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the strict openAPIV3Schema of every CRD version in CRD_MODULES."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for module, folder in CRD_MODULES.items():
        with zipfile.ZipFile(_module_zip(module)) as archive:
            prefix = f"{module}/{folder}"
            for member in archive.namelist():
                if not (member.startswith(prefix) and member.endswith(".yaml")):
                    continue
                for crd in yaml.load_all(archive.read(member), Loader=_CrdLoader):
                    if not crd or crd.get("kind") != "CustomResourceDefinition":
                        continue
                    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                    for version in crd["spec"]["versions"]:
                        schema = strict_schema(version["schema"]["openAPIV3Schema"])
                        schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 CRD schema as JSON Schema, with unknown fields refused as the API server's strict field
    validation does (objects listing properties, unless x-kubernetes-preserve-unknown-fields); nullable
    honoured."""
    strict = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        for value in node.values():
            visit(value)
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        if node.get("nullable") and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]

    visit(strict)
    # The API server checks metadata itself; the CRD schemas leave it an open object.
    strict.setdefault("properties", {}).pop("metadata", None)
    strict["properties"]["metadata"] = {"type": "object"}
    return strict


def crd_errors(manifest: Manifest) -> list[str]:
    schema = crd_schemas().get((manifest["apiVersion"], manifest["kind"]))
    if schema is None:
        return [f"{name_of(manifest)}: no CRD schema for {manifest['apiVersion']} {manifest['kind']}"]
    validator = jsonschema.Draft4Validator(schema)
    return [f"{name_of(manifest)}: {'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
            for error in validator.iter_errors(manifest)]


# --- Strimzi (npm-generated validators, run with node) ----------------------------------------------------------


def strimzi_errors(manifests: list[Manifest]) -> list[str]:
    """Errors of Strimzi resources (types, enums, required fields, ranges; these generated validators do not
    refuse unknown fields)."""
    if not manifests:
        return []
    node = require_tool("node")
    if not (STRIMZI_TOOL / "node_modules").exists():
        _run([require_tool("npm"), "ci", "--prefix", str(STRIMZI_TOOL), "--no-audit", "--no-fund", "--loglevel=error"])
    output = _run([node, str(STRIMZI_TOOL / "validate.mjs")], stdin=json.dumps(manifests))
    errors: list[str] = json.loads(output)
    return errors


def schema_errors(manifests: list[Manifest]) -> list[str]:
    """Every schema error of a build, each naming the object and the field."""
    errors: list[str] = []
    strimzi: list[Manifest] = []
    for manifest in manifests:
        group = manifest["apiVersion"].rpartition("/")[0]
        if group == STRIMZI_GROUP:
            strimzi.append(manifest)
        elif group in CRD_GROUPS:
            errors += crd_errors(manifest)
        else:
            errors += builtin_errors(manifest)
    return errors + strimzi_errors(strimzi)


def containers(manifest: Manifest) -> Iterator[Manifest]:
    """The containers of a workload's pod template."""
    yield from manifest.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
