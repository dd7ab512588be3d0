# syntax=docker/dockerfile:1
# elasticsan-snapshotter: the operator, the CSI controller and the emulator in a slim, non-root image.
#
#   docker build -t elasticsan-snapshotter:dev .
#
# Stage 1 generates the CSI stubs and installs the package into /opt/venv, with the Go
# toolchain and pip's build dependencies; stage 2 copies only that virtual environment.
# The install steps live in hack/install_image.sh, which a test runs outside Docker.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS go

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/usr/local/go/bin:$PATH \
    GOFLAGS=-modcacherw
# Go fetches the pinned csi.proto through the module cache, verified against the checksum database.
COPY --from=go /usr/local/go /usr/local/go
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hack/install_image.sh hack/generate_csi_stubs.py hack/generate_freeze_stubs.py hack/build_binaries.py hack/versions.env ./hack/
COPY operator ./operator
RUN sh hack/install_image.sh /src /opt/venv \
 && /opt/venv/bin/elasticsan-snapshotter --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="elasticsan-snapshotter" \
      org.opencontainers.image.description="Kubernetes snapshots, restores and exports for Azure Elastic SAN volumes" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 snapshotter \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin snapshotter
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["elasticsan-snapshotter"]
CMD ["operator"]
