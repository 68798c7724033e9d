# syntax=docker/dockerfile:1
# A fake LLM provider for `make image-smoke` (harness/fake_provider.py: the OpenAI and Anthropic
# APIs, fixed answers), never deployed. It is the gateway image plus one test module: the gateway
# image already holds everything the fake needs (starlette, uvicorn, uvloop), and the gateway image
# itself stays free of test code.
#   docker build -f docker/fake-provider.Dockerfile --build-arg GATEWAY_IMAGE=ferryman/gateway:0.1.0 .

ARG GATEWAY_IMAGE=ferryman/gateway:0.1.0
FROM ${GATEWAY_IMAGE}
COPY harness/__init__.py harness/fake_provider.py /app/harness/
EXPOSE 9000
HEALTHCHECK NONE
ENTRYPOINT ["/opt/venv/bin/python", "-m", "harness.fake_provider"]
CMD ["--host", "0.0.0.0", "--port", "9000", "--port-file", "/tmp/fake-provider.port"]
