# One image pattern for every service: `docker build --build-arg SERVICE=booking-service .`
# (SERVICE: booking-service, exchange-writer, exchange-poller, availability-service, exchange-simulator).
# Slim, non-root, installed by uv from the lock file (no dev dependencies, no build tools in the final image).
# Both stages use the same pinned base: the venv's python links to the base image's interpreter. Production
# builds should pin by digest too (python:3.11.14-slim-trixie@sha256:...).
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ghcr.io/astral-sh/uv:0.13.8 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /bin/uv
# Bytecode compiled at build time (the final image's files are read-only for the non-root user); copy, not
# hard-link, out of the cache mount; never download an interpreter: use the base image's.
ENV UV_PROJECT_ENVIRONMENT=/app/.venv UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
ARG SERVICE=booking-service
# --frozen: exactly the lock (fails rather than resolving anew); --no-editable: the venv holds the code, so
# /src is not needed at run time.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "spacesync-${SERVICE}" \
    && ln -s "/app/.venv/bin/spacesync-${SERVICE}" /app/.venv/bin/spacesync-service

FROM ${PYTHON_IMAGE}
ARG SERVICE=booking-service
LABEL org.opencontainers.image.title="spacesync-${SERVICE}" \
      org.opencontainers.image.description="Spacesync ${SERVICE}" \
      org.opencontainers.image.vendor="Spacesync"
# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can check it, and fsGroup/volumes can match it.
RUN groupadd --system --gid 10001 spacesync \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent spacesync \
    && install -d -o 10001 -g 10001 /var/lib/spacesync
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 SPACESYNC_HTTP_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
EXPOSE 8080
# No HEALTHCHECK: Kubernetes ignores it (the Deployments have probes) and docker-compose.yml declares each
# service's own (/readyz; the simulator has no Kafka or Postgres to be ready for).
# Exec form: the service is PID 1 and gets SIGTERM itself (graceful drain). `command:` may run another module
# of the same image (python -m ...).
CMD ["spacesync-service"]
