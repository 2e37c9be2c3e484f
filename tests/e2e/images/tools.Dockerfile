# The e2e tools image (tests only): the project image plus moto's S3 server and the
# Qdrant stand-in (tests/qdrant_standin), so the backing services of the e2e tier run
# as Pods without any registry. Built by scripts/local-cluster.sh (and the kind/existing
# fixtures) from a small context: constraints.txt and tests/{__init__.py,qdrant_standin}.
#   moto:      python -m moto.server -H 0.0.0.0 -p 5000
#   stand-in:  the default command, on Qdrant's port 6333
ARG BASE=chroma-service:e2e
FROM ${BASE}
USER 0:0
COPY constraints.txt /opt/e2e/constraints.txt
# The base image's own pip (the venv has none); pinned like everything else.
RUN PATH=/usr/local/bin:/usr/bin:/bin python3 -m pip install --quiet "uv==0.13.9" \
 && PATH=/usr/local/bin:/usr/bin:/bin python3 -m uv pip install --no-cache \
      -c /opt/e2e/constraints.txt --python /opt/chroma/bin/python "moto[server]" \
 && /opt/chroma/bin/python -c "import moto.server, flask_cors"
COPY tests /opt/e2e/tests
ENV PYTHONPATH=/opt/e2e
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["python", "-m", "tests.qdrant_standin", "--host", "0.0.0.0", "--port", "6333"]
CMD []
