# syntax=docker/dockerfile:1
# gpu-rental-tracker: one long-lived container, `tracker run`, metrics on :9108.
#
#   docker build -t gpu-rental-tracker:0.1.0 .
#   docker run --read-only --tmpfs /tmp -v tracker-data:/data -p 9108:9108 gpu-rental-tracker:0.1.0
#
# Stage 1 builds the wheels (the project's and every dependency's); stage 2 installs them into a
# slim Python with Debian's Chromium and nothing else of the build. The image writes only to /data
# (the SQLite database) and /tmp (Chromium's throw-away profiles), so it runs with a read-only root
# filesystem. tests/e2e/test_image_entrypoint.py runs this file's ENTRYPOINT/CMD/ENV/HEALTHCHECK
# outside Docker under the same constraints.

ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY scrapers ./scrapers
COPY tracker ./tracker
# The extras the image supports: PostgreSQL (scale-out) and the report's PNG chart.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[postgres,charts]"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="gpu-rental-tracker" \
      org.opencontainers.image.description="Hourly GPU rental prices in China: stored changes, Prometheus metrics, Slack alerts" \
      org.opencontainers.image.licenses="Apache-2.0"

# chromium: the Hengyuan store is read by driving a real browser (Playwright cannot download its
# own build in most deployments; Debian's is used through browser_path).
# fonts-noto-cjk: the weekly report's PNG chart and HTML screenshot have Chinese labels.
# Versions follow the pinned base image's Debian release, so security updates are picked up on
# rebuild rather than pinned away.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it and a volume can be chowned.
RUN groupadd --system --gid 10001 tracker \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin tracker \
 && mkdir -p /data \
 && chown 10001:10001 /data

# Only the wheels built above, never the index: the image holds exactly the tested dependency set.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRACKER_DATABASE_URL=sqlite:////data/tracker.db \
    TRACKER_LISTEN_HOST=0.0.0.0 \
    TRACKER_LISTEN_PORT=9108 \
    TRACKER_LOG_FORMAT=json \
    TRACKER_PROVIDERS__HENGYUAN__BROWSER_PATH=/usr/bin/chromium \
    MPLCONFIGDIR=/tmp/matplotlib

VOLUME ["/data"]
EXPOSE 9108
USER 10001:10001

# No curl in a slim image: Python asks /healthz (the process is alive and serving).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('TRACKER_LISTEN_PORT', '9108'); sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % port, timeout=4).status == 200 else 1)"]

ENTRYPOINT ["tracker"]
CMD ["run"]
