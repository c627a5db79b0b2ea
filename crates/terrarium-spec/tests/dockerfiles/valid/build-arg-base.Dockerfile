# The base image is given with --build-arg at build time; there is no default to expand.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG BASE_IMAGE
LABEL base.image=${BASE_IMAGE}
RUN python -m pip install --no-cache-dir mlflow
