ARG CUDA_VERSION=12.1.1
ARG UBUNTU_VERSION=22.04
FROM nvidia/cuda:${CUDA_VERSION}-cudnn8-runtime-ubuntu${UBUNTU_VERSION}

ARG DEBIAN_FRONTEND=noninteractive
ARG PYTORCH_VERSION=2.3.1

RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 \
        python3-pip \

        git \
        # an empty line and a comment inside the continuation
        libgl1 \
    && rm -rf /var/lib/apt/lists/*

RUN pip3 install --no-cache-dir \
        torch==${PYTORCH_VERSION} \
        torchvision \
        --index-url https://download.pytorch.org/whl/cu121

ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
CMD ["python3"]
