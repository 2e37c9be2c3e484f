# One image for every component: the API (`chroma serve`), workers (`chroma worker`),
# one-shot operations (`chroma op run KIND --local`) and the operator (`chroma-operator`).
# Dependencies come from the pinned constraints.txt, so builds are reproducible.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m pip install "uv==0.13.9"
WORKDIR /src
# `--python` names the target venv: uv ignores VIRTUAL_ENV here and would install
# into the build interpreter, leaving /opt/chroma empty (tests/unit/test_dockerfile.py).
# Dependencies first (their layer is reused while only our code changes), then our code.
COPY pyproject.toml constraints.txt ./
RUN python -m uv venv /opt/chroma \
 && python -m uv pip install --no-cache -c constraints.txt --python /opt/chroma/bin/python -r pyproject.toml
COPY README.md ./
COPY components ./components
COPY operator ./operator
RUN python -m uv pip install --no-cache -c constraints.txt --python /opt/chroma/bin/python --no-deps . \
 && /opt/chroma/bin/python -c "import chroma.cli.main, chroma_operator.main, scipy"

FROM python:3.11-slim
LABEL org.opencontainers.image.title="chroma-service" \
      org.opencontainers.image.description="Embeddings in, labelling queue out."
# Non-root, and nothing written outside the declared volumes: the root filesystem can be
# mounted read-only. /data holds embedded-mode data; /tmp is for scratch files.
RUN groupadd --system --gid 10001 chroma \
 && useradd --system --uid 10001 --gid chroma --home-dir /data --shell /usr/sbin/nologin chroma \
 && mkdir -p /data && chown chroma:chroma /data
COPY --from=build /opt/chroma /opt/chroma
ENV PATH=/opt/chroma/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHROMA_DATA_DIR=/data \
    CHROMA_HOST=0.0.0.0
VOLUME ["/data", "/tmp"]
USER 10001:10001
WORKDIR /data
EXPOSE 8000
# Docker's own check of the API. In Kubernetes the operator sets liveness /health and
# readiness /ready on API pods, and the chart probes the operator's /healthz on 8080.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)" || exit 1
ENTRYPOINT ["chroma"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
