# syntax=docker/dockerfile:1
# The plant-gateway image: procedge[edge] only (LiteRT, numpy, paho-mqtt, pydantic, protobuf, ...;
# no TensorFlow, no grpc), at the tested versions (constraints.txt). Every wheel it needs exists
# for amd64 and arm64:
#   docker build -t procedge-gateway .
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/procedge-gateway .
# Run it with deploy/compose.yaml, or mount a config at /config/gateway.yaml and the bundles
# it names; the outbox and alarm states live in /var/lib/procedge (a volume).

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/procedge
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY edge_runtime ./edge_runtime
COPY training ./training
COPY converters ./converters
COPY evaluation ./evaluation
COPY procedge ./procedge
RUN /opt/procedge/bin/pip install --no-cache-dir -c constraints.txt ".[edge]" \
 && /opt/procedge/bin/python -c "import importlib.util as u, edge_runtime.daemon, edge_runtime.sparkplug.codec; assert not u.find_spec('grpc')"

FROM python:3.11-slim
RUN groupadd --system --gid 10001 procedge \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/procedge --create-home procedge
COPY --from=builder /opt/procedge /opt/procedge
ENV PATH=/opt/procedge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PROCEDGE_METRICS_PORT=9464
USER 10001:10001
WORKDIR /var/lib/procedge
VOLUME ["/var/lib/procedge"]
# /healthz (200: connected, subscribed, threads alive) on the config's metrics_port, which the
# daemon serves on 127.0.0.1 inside the container; set PROCEDGE_METRICS_PORT if it differs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['PROCEDGE_METRICS_PORT'], timeout=4)"]
# SIGTERM (docker stop): the daemon drains its outbox (bounded) and says offline; give it
# `--stop-timeout 45` / compose `stop_grace_period: 45s`.
ENTRYPOINT ["procedge", "run", "--config", "/config/gateway.yaml"]
