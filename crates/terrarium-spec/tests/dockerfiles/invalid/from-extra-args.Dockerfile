FROM python:3.11-slim AS build extra
RUN echo hi
