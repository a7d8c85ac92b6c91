"""External command-line tools the deploy checks need (promtool, prometheus, kubectl/kustomize, go).

On a laptop without them the test is skipped with what to install; CI sets SPACESYNC_REQUIRE_TOOLS=1, so a
missing tool fails there instead of passing silently.
"""

from __future__ import annotations

import os
import shutil

import pytest

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
