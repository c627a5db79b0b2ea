FROM python:3.12-slim AS builder
ENV VIRTUAL_ENV=/opt/venv
RUN python -m venv $VIRTUAL_ENV
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# A test stage built on the previous one.
FROM builder AS test
COPY requirements-dev.txt .
RUN pip install --no-cache-dir -r requirements-dev.txt
COPY . /src
RUN pytest -q /src/tests

FROM python:3.12-slim
LABEL org.opencontainers.image.source="https://github.com/example/service" \
      org.opencontainers.image.description="Example service"
COPY --from=builder /opt/venv /opt/venv
COPY --from=test /src/app /app
ENV PATH="/opt/venv/bin:$PATH"
WORKDIR /app
ENTRYPOINT ["python", "-m", "app"]
