# streamdream: a CPU image by default; `--build-arg GPU=1` adds TensorFlow's CUDA libraries
# (run it with the NVIDIA container toolkit: docker run --gpus all ...).
#   docker build -t streamdream .
#   docker build --build-arg GPU=1 -t streamdream:gpu .
#   docker run --rm -p 127.0.0.1:9108:9108 -p 127.0.0.1:8080:8080 streamdream
FROM python:3.11-slim-bookworm

ARG GPU=0
ARG TENSORFLOW_VERSION=2.21.0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MALLOC_ARENA_MAX=2

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin dreamer
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streamdream ./streamdream
COPY configs ./configs
RUN pip install --no-cache-dir . \
    && if [ "$GPU" = "1" ]; then pip install --no-cache-dir "tensorflow[and-cuda]==${TENSORFLOW_VERSION}"; fi

USER 10001
# convert the offline model's weights once, inside the image, so the first start is fast
RUN python -c "from streamdream.models.lite0 import load_efficientnet_lite0; load_efficientnet_lite0()"

EXPOSE 8080 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["streamdream"]
CMD ["serve", "--config", "/app/configs/installation.yaml"]
