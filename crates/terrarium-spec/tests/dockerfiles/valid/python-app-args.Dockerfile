# A Python service whose base image comes from global build arguments.
ARG PYTHON_VERSION=3.11
ARG VARIANT=slim
FROM python:${PYTHON_VERSION}-${VARIANT}

ARG DEBIAN_FRONTEND=noninteractive
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update \
    # build tools for wheels without binaries
    && apt-get install -y --no-install-recommends \
        build-essential \
        # libpq for psycopg
        libpq-dev \
        git \
    # keep the image small
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install --upgrade pip && pip install -r requirements.txt
COPY . .

EXPOSE 8000
USER nobody
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "app.wsgi:application"]
