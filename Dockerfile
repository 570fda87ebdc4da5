# syntax=docker/dockerfile:1
# Public Data Gateway image: built from uv.lock, runs as uid 10001 on a read-only root filesystem.
#
# Base image: the 3.11 slim Debian 12 (bookworm) tag, never :latest. For a reproducible production build,
# pin it by digest as well:   docker buildx imagetools inspect python:3.11-slim-bookworm
# and write the result as     FROM python:3.11-slim-bookworm@sha256:<digest>   in both stages below
# (docs/deploy.md, section "Build and push the image").

FROM python:3.11-slim-bookworm AS build

# uv comes from PyPI at a pinned version so the lock file is read by the same resolver everywhere.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/pdg/venv
RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /opt/pdg/app

# Dependencies first (their own layer: it changes only when the lock file does).
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

# Then the project itself. .dockerignore keeps tests, caches, local data and keys out.
COPY . .
RUN uv sync --frozen --no-dev \
    && python -m compileall -q /opt/pdg/app

FROM python:3.11-slim-bookworm AS runtime

# A fixed non-root uid/gid so Kubernetes runAsUser/fsGroup and volume ownership agree.
RUN groupadd --system --gid 10001 pdg \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin pdg \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/pdg /var/lib/pdg/data

# Code and virtualenv belong to root: the service can read them but never change them.
COPY --from=build /opt/pdg /opt/pdg

# The app writes only to PDG_DATA_DIR and /tmp, so the root filesystem can be mounted read-only.
# Keys are never baked in: PDG_KEYS_DIR is a mount (Kubernetes Secrets, or a read-only bind mount).
ENV PATH=/opt/pdg/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PDG_ENV=production \
    PDG_HOST=0.0.0.0 \
    PDG_PORT=8000 \
    PDG_DATA_DIR=/var/lib/pdg/data \
    PDG_KEYS_DIR=/etc/pdg/keys \
    PDG_POLICIES_DIR=/opt/pdg/app/policies

WORKDIR /opt/pdg/app
USER 10001:10001
EXPOSE 8000
VOLUME ["/var/lib/pdg/data"]

# Liveness with the interpreter already in the image (no curl): exit 0 only on HTTP 200 from /health.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PDG_PORT', '8000') + '/health', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["pdg"]
CMD ["serve"]
