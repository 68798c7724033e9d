# syntax=docker/dockerfile:1
# Scorer image. Build from the repository root:
#   docker build -f docker/scorer.Dockerfile -t ferryman/scorer:0.1.0 .
#
# Stage "build" installs torch (the `train` extra) only to export the ONNX encoder and rebuild
# router graphs from their committed deltas (`ferryman build all`), and separately a serving
# virtualenv without torch. The runtime stage copies that virtualenv, the ONNX encoder and the
# completed routers/: artifacts travel in an image layer, so a pod starts with no network fetch,
# a restart can never see different weights than the image digest says, and a rollback is an
# image rollback (see docs/deploy.md).

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Optional: a CPU-only wheel index for torch (PyPI's default torch wheel is the CUDA build).
ARG TORCH_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ferryman ferryman
COPY scorer scorer
COPY gateway gateway
COPY lab lab
COPY routers routers
# Build-only environment (torch): exports the encoder and rebuilds router graphs.
RUN python -m venv /opt/train \
 && /opt/train/bin/pip install torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
 && /opt/train/bin/pip install '.[train]'
RUN HF_HUB_OFFLINE=1 /opt/train/bin/ferryman build all --encoder-dir /out/encoder --routers-dir /src/routers
# Serving environment: the project's runtime dependencies only (no torch).
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install . \
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
