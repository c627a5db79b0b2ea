ARG BASE=python:3.11
RUN echo "no stage yet"
FROM ${BASE}
