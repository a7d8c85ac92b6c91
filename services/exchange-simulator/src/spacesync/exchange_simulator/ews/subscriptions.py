"""EWS operations: placeholder until implemented."""

from __future__ import annotations

from typing import Any

HANDLERS: dict[str, Any] = {}
