FROM --platform=linux/amd64 ubuntu:22.04 AS base
RUN apt-get update && apt-get install -y --no-install-recommends curl

FROM base AS dev
RUN apt-get install -y --no-install-recommends vim

FROM base
COPY --from=dev /usr/bin/vim /usr/bin/vim
