"""External command-line tools the deploy checks need (promtool, prometheus, kubectl/kustomize, go).

On a laptop without them the test is skipped with what to install; CI sets SPACESYNC_REQUIRE_TOOLS=1, so a
missing tool fails there instead of passing silently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[5]

INSTALL_HINTS = {
    "promtool": "apt-get install prometheus",
    "prometheus": "apt-get install prometheus",
    "kubectl": "install kubectl (its `kubectl kustomize` is used) or go (kustomize is built from the module proxy)",
    "go": "install Go 1.22 or newer",
}


def tools_required() -> bool:
    return os.environ.get("SPACESYNC_REQUIRE_TOOLS", "") not in ("", "0", "false")


def require_tool(name: str) -> str:
    """The tool's path; skips the calling test (fails it under SPACESYNC_REQUIRE_TOOLS=1) when it is missing."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not found: {INSTALL_HINTS.get(name, 'install it')}"
    if tools_required():
        pytest.fail(message + " (SPACESYNC_REQUIRE_TOOLS is set)", pytrace=False)
    pytest.skip(message)


def go_module(module: str, version: str) -> Path:
    """The unpacked source of a Go module (CRDs, JSON schemas it ships) from the Go module proxy, cached under
    .local/go; skips like require_tool when go is missing."""
    go = require_tool("go")
    cache = ROOT / ".local" / "go"
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOMODCACHE": str(cache / "mod"), "GOPATH": str(cache)}
    result = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"], cwd=cache,
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in info:
        raise RuntimeError(f"go mod download {module}@{version} failed: {info.get('Error') or result.stderr}")
    return Path(info["Dir"])
