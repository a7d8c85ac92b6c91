# One image pattern for every service: `docker build --build-arg SERVICE=booking-service .`
# Slim, non-root, installed by uv from the lock file (no dev dependencies).
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir "uv==0.13.8"
ENV UV_PROJECT_ENVIRONMENT=/app/.venv UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
ARG SERVICE=booking-service
RUN uv sync --frozen --no-dev --no-editable --package "spacesync-${SERVICE}"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home spacesync
COPY --from=build /app/.venv /app/.venv
ARG SERVICE=booking-service
ENV PATH=/app/.venv/bin:$PATH SPACESYNC_HTTP_HOST=0.0.0.0 SPACESYNC_SERVICE=${SERVICE}
USER 10001
EXPOSE 8080
# spacesync-booking-service, spacesync-exchange-writer, ...: each package installs its console script.
CMD ["sh", "-c", "exec spacesync-${SPACESYNC_SERVICE}"]
