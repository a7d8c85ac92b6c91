"""Bearer-token check for the admin API (shared by every service with an admin API)."""

from spacesync.common.http.auth import require_admin

__all__ = ["require_admin"]
