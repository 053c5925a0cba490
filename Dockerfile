# The one tokenlabs image the Helm chart runs (servers, simulated workers, the Envoy bootstrap render):
#   docker build -t tokenlabs:0.1.0 .
# The repository is installed in place (-e) so that envoy/bootstrap.yaml.j2 stays beside the package, where
# `tokenlabs envoy render` looks for it. The torch engine (the `engine` extra) is left out: it adds ≈1 GB.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tokenlabs/ tokenlabs/
COPY authz/ authz/
COPY extproc/ extproc/
COPY epp/ epp/
COPY engine/ engine/
COPY envoy/ envoy/
COPY tokenlabs.yaml ./
RUN pip install --no-cache-dir -e . && useradd --uid 10001 --no-create-home tokenlabs
USER 10001
ENTRYPOINT ["tokenlabs"]
