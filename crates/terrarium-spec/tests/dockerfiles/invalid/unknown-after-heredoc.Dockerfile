# syntax=docker/dockerfile:1
FROM python:3.11-slim
RUN apt-get update \
    # a comment inside the continuation
    && apt-get install -y git \

    && rm -rf /var/lib/apt/lists/*
RUN <<EOF
pip install numpy
EXPOSE 1
EOF
EXPOSEE 8080
