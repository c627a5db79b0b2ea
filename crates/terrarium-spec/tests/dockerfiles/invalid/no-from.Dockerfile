# syntax=docker/dockerfile:1
# Only global build arguments: there is nothing to build.
ARG PYTHON_VERSION=3.11
ARG VARIANT=slim
