# syntax=docker/dockerfile:1.7
# Environment demo:3 (sha256:0000), written by terrarium.
FROM mambaorg/micromamba:2.0.5
COPY <<'TERRARIUM_ENV' /tmp/terrarium-environment.yml
name: terrarium
channels:
  - conda-forge
dependencies:
  - python=3.11
  - numpy
TERRARIUM_ENV
RUN micromamba create -y -p /opt/terrarium/env -f /tmp/terrarium-environment.yml \
    && micromamba clean -a -y
ENV PATH=/opt/terrarium/env/bin:$PATH
