ARG REGISTRY=docker.io
ARG IMAGE="library/python"
ARG TAG
FROM ${REGISTRY}/${IMAGE}:${TAG:-3.11-slim} AS runtime
RUN python --version
