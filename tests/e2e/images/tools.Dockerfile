# The e2e tools image (tests only): moto's S3 server and the Qdrant stand-in
# (tests/qdrant_standin), so the backing services of the e2e tier run as Pods without any
# registry. Independent of our code (only constraints.txt pins and tests/qdrant_standin),
# so it stays cached while the project changes. Built by scripts/build-e2e-images.sh from
# a small context: constraints.txt and tests/{__init__.py,qdrant_standin}.
#   moto:      python -m moto.server -H 0.0.0.0 -p 5000
#   stand-in:  the default command, on Qdrant's port 6333
FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY constraints.txt /opt/e2e/constraints.txt
RUN python -m pip install --quiet "uv==0.13.9" \
 && python -m uv venv /opt/e2e/venv \
 && python -m uv pip install --no-cache -c /opt/e2e/constraints.txt \
      --python /opt/e2e/venv/bin/python "moto[server]" qdrant-client fastapi "uvicorn[standard]" \
 && /opt/e2e/venv/bin/python -c "import moto.server, flask_cors, qdrant_client, fastapi, uvicorn" \
 && groupadd --system --gid 10001 e2e \
 && useradd --system --uid 10001 --gid e2e --home-dir /tmp --shell /usr/sbin/nologin e2e
COPY tests /opt/e2e/tests
ENV PATH=/opt/e2e/venv/bin:$PATH \
    PYTHONPATH=/opt/e2e \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 5000 6333
ENTRYPOINT ["python", "-m", "tests.qdrant_standin", "--host", "0.0.0.0", "--port", "6333"]
CMD []
