#!/usr/bin/env bash
# Fetch, once, the peer tools the tests compare against, into a cache outside the checkout.
# Prints the environment variables the tests read, for `eval`.
set -euo pipefail

cache="${TERRARIUM_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/terrarium-test-tools}"
mkdir -p "$cache"

# Microsoft's Azure ML SDK v1, to check that our aml-v1 directories load in it.
aml="$cache/aml-sdk"
if ! "$aml/bin/python" -c "import azureml.core" >/dev/null 2>&1; then
    rm -rf "$aml"
    python3 -m venv "$aml" >&2
    "$aml/bin/pip" install --quiet --disable-pip-version-check "azureml-core==1.61.0.post4" >&2
fi

# uv, at the version Terrarium pins, so that tests never download it.
uv_version=0.9.30
uv="$cache/uv-$uv_version"
if ! "$uv/bin/uv" --version 2>/dev/null | grep -q "$uv_version"; then
    rm -rf "$uv"
    python3 -m venv "$uv" >&2
    "$uv/bin/pip" install --quiet --disable-pip-version-check "uv==$uv_version" >&2
fi

# schemathesis, to fuzz the server's API from its own OpenAPI document.
st_version=4.32.5
st="$cache/schemathesis-$st_version"
if ! "$st/bin/schemathesis" --version 2>/dev/null | grep -q "$st_version"; then
    rm -rf "$st"
    python3 -m venv "$st" >&2
    "$st/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$st_version" >&2
fi

# Microsoft's Azure ML inference server, to check that deployments answer as it does.
srv="$cache/azmlinfsrv-1.5.1"
if ! "$srv/bin/python" -c "import azureml_inference_server_http" >/dev/null 2>&1; then
    rm -rf "$srv"
    python3 -m venv "$srv" >&2
    "$srv/bin/pip" install --quiet --disable-pip-version-check "azureml-inference-server-http==1.5.1" >&2
fi

# Debian's Chromium and ChromeDriver, for the web UI's browser tests.
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
    echo "installing chromium and chromium-driver from Debian" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
fi

# Debian's docker-registry (the tests start their own, on 127.0.0.1 with their own config),
# skopeo and umoci, to push, inspect and unpack the images Terrarium builds, and buildah, to
# build the Dockerfiles it writes.
if ! command -v skopeo >/dev/null || ! command -v umoci >/dev/null || ! command -v docker-registry >/dev/null || ! command -v buildah >/dev/null; then
    echo "installing docker-registry, skopeo, umoci and buildah from Debian" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry skopeo umoci buildah >&2
    # The package starts a registry with authentication on :5000; the tests run their own.
    (systemctl disable --now docker-registry || service docker-registry stop || pkill -x docker-registry) >/dev/null 2>&1 || true
fi

# A Debian base image with Python (bookworm, minbase + python3), made once with debootstrap and
# umoci as an OCI layout, for images of pip-only environments and runc.
base="$cache/base-bookworm-python"
if [ ! -f "$base/index.json" ]; then
    if ! command -v debootstrap >/dev/null; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
    fi
    rm -rf "$base" "$base.tmp"
    mkdir -p "$base.tmp"
    debootstrap --variant=minbase --include=python3 bookworm "$base.tmp/rootfs" http://deb.debian.org/debian >&2
    umoci init --layout "$base.tmp/layout" >&2
    umoci new --image "$base.tmp/layout:bookworm" >&2
    umoci insert --image "$base.tmp/layout:bookworm" "$base.tmp/rootfs" / >&2
    umoci config --image "$base.tmp/layout:bookworm" --config.cmd /usr/bin/python3 \
        --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" >&2
    umoci gc --layout "$base.tmp/layout" >&2
    mv "$base.tmp/layout" "$base"
    rm -rf "$base.tmp"
fi
if ! command -v runc >/dev/null; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc >&2
fi

# Debian's R with httr2, jsonlite and testthat, for the R client's tests (r/run-tests.sh).
if ! Rscript -e 'for (p in c("httr2", "jsonlite", "testthat")) if (!requireNamespace(p, quietly = TRUE)) quit(status = 1)' >/dev/null 2>&1; then
    echo "installing r-base-core, r-cran-httr2, r-cran-jsonlite and r-cran-testthat from Debian" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends r-base-core r-cran-httr2 r-cran-jsonlite r-cran-testthat >&2
fi

# pyspark (and py4j) as wheels, built once from PyPI (pyspark ships as an sdist), for the
# Spark target's tests; they run with the machine's Java 17.
spark_wheels="$cache/spark-wheels-4.0.1"
if [ ! -d "$spark_wheels" ]; then
    echo "building pyspark 4.0.1 wheels from PyPI into $spark_wheels" >&2
    rm -rf "$spark_wheels.tmp"
    python3 -m pip wheel --quiet --disable-pip-version-check -w "$spark_wheels.tmp" "pyspark==4.0.1" >&2
    mv "$spark_wheels.tmp" "$spark_wheels"
fi
if ! command -v java >/dev/null; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >&2
fi

# kubernetes-models (npm): validators built from Kubernetes' OpenAPI schema, to check the Jobs
# Terrarium submits, independently of the client that builds them.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >&2
fi
kube_models="$cache/kubernetes-models-5.1.0"
if [ ! -f "$kube_models/node_modules/kubernetes-models/batch/v1/Job.js" ]; then
    rm -rf "$kube_models.tmp"
    mkdir -p "$kube_models.tmp"
    npm install --silent --no-audit --no-fund --prefix "$kube_models.tmp" kubernetes-models@5.1.0 >&2
    rm -rf "$kube_models"
    mv "$kube_models.tmp" "$kube_models"
fi

echo "export TERRARIUM_TEST_BASE_IMAGE=oci:$base:bookworm"
echo "export TERRARIUM_TEST_KUBE_MODELS=$kube_models/node_modules"
echo "export TERRARIUM_TEST_AML_PYTHON=$aml/bin/python"
echo "export TERRARIUM_TEST_SCHEMATHESIS=$st/bin/schemathesis"
echo "export TERRARIUM_UV=$uv/bin/uv"
echo "export TERRARIUM_TEST_AZMLINFSRV=$srv/bin/azmlinfsrv"
echo "export TERRARIUM_TEST_SPARK_WHEELS=$spark_wheels"
