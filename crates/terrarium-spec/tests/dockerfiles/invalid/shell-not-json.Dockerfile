FROM ubuntu:22.04
SHELL /bin/bash -o pipefail -c
RUN echo hi
