# syntax=docker/dockerfile:1
# Gateway image. Build from the repository root (`make images` does, with podman; docs/deploy.md):
#   docker build -f docker/gateway.Dockerfile -t ferryman/gateway:0.1.0 .
# PYTHON_IMAGE and the optional secret ca_bundle as in scorer.Dockerfile. The gateway needs no
# models: only its part of the serving dependencies (docker/requirements.py: no ONNX runtime, no
# NumPy). Its config is mounted at run time (k8s: ConfigMap gateway-config at
# /etc/ferryman/gateway.yaml), keys come from Secrets.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
COPY docker/requirements.py docker/
RUN --mount=type=secret,id=ca_bundle --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    if [ -f /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && python3 docker/requirements.py gateway > /tmp/run.txt \
 && python3 -m venv /opt/build \
 && /opt/build/bin/pip install -q "setuptools>=68" wheel \
 && python3 -m venv --without-pip /opt/venv \
 && /opt/build/bin/pip --python /opt/venv/bin/python install -q -r /tmp/run.txt
COPY README.md ./
COPY ferryman ferryman
COPY gateway gateway
RUN /opt/build/bin/pip wheel -q --no-deps --no-build-isolation -w /tmp/wheel . \
 && /opt/build/bin/pip --python /opt/venv/bin/python install -q --no-deps /tmp/wheel/*.whl

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp PATH=/opt/venv/bin:$PATH
RUN groupadd --gid 10001 ferryman \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin ferryman
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
EXPOSE 50061 8080 9091
# Python is PID 1 here (no init): the gateway handles SIGTERM from its first line (ferryman.signals),
# drains (health NOT_SERVING, /readyz 503, in-flight requests finish within server.drain_s) and exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/venv/bin/ferryman", "health", "127.0.0.1:50061"]
ENTRYPOINT ["/opt/venv/bin/ferryman"]
CMD ["gateway", "--config", "/etc/ferryman/gateway.yaml"]
