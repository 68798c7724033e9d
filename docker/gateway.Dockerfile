# syntax=docker/dockerfile:1
# Gateway image. Build from the repository root:
#   docker build -f docker/gateway.Dockerfile -t ferryman/gateway:0.1.0 .
# The gateway needs no models: only the serving dependencies. Its config is mounted at run
# time (k8s: ConfigMap gateway-config at /etc/ferryman/gateway.yaml), keys come from Secrets.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ferryman ferryman
COPY gateway gateway
RUN python -m venv /opt/venv && /opt/venv/bin/pip install .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp PATH=/opt/venv/bin:$PATH
RUN groupadd --gid 10001 ferryman && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin ferryman
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
EXPOSE 50061 8080 9091
ENTRYPOINT ["/opt/venv/bin/ferryman"]
CMD ["gateway", "--config", "/etc/ferryman/gateway.yaml"]
