"""HTTP pieces every service shares: RFC 9457 problem details, health and metrics routes, the server."""

from spacesync.common.http.auth import require_admin
from spacesync.common.http.health import HealthChecks, health_router
from spacesync.common.http.problems import FieldError, Problem, install_problem_handlers
from spacesync.common.http.server import serve

__all__ = ["FieldError", "HealthChecks", "Problem", "health_router", "install_problem_handlers", "require_admin",
           "serve"]
