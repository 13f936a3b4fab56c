# syntax=docker/dockerfile:1
# streamdream as an installation daemon in a container: CPU by default (TensorFlow's CPU-only
# wheel); `--build-arg GPU=1` installs TensorFlow with its CUDA libraries instead (run that one
# with the NVIDIA container toolkit). docs/installations.md, "Docker", has the full commands; in short:
#   docker build -t streamdream .
#   docker run -d --read-only -p 127.0.0.1:9108:9108 -p 127.0.0.1:8090:8090 \
#     -v streamdream-data:/data --env-file streamdream.env streamdream   (STREAMDREAM_CONTROL_TOKEN=...)
# Without a registry, scripts/make-base-image.sh makes an equivalent base from Debian's mirror:
#   podman build --isolation=chroot --format docker --build-arg BASE=localhost/streamdream-base:bookworm ...
# Any base with Debian's or python.org's python3 (3.10+, venv included) works: only `python3 -m
# venv` and the venv's own paths are used.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG GPU=0
ARG TENSORFLOW_VERSION=2.21.0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MALLOC_ARENA_MAX=2 \
    VIRTUAL_ENV=/opt/streamdream/venv \
    PATH=/opt/streamdream/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    STREAMDREAM_CACHE_DIR=/opt/streamdream/cache

# One declared volume, /data, for everything written at run time (recordings, Keras downloads);
# the image itself stays read-only to its user.
RUN groupadd --system --gid 10001 dreamer \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin dreamer \
    && install -d -o 10001 -g 10001 -m 0750 /data /data/recordings \
    && python3 -m venv "$VIRTUAL_ENV"

# Layers from the rarest change to the most frequent: TensorFlow (hundreds of MB), then the other
# dependencies (from pyproject.toml), then streamdream's own source.
COPY scripts/container-pip.sh /opt/streamdream/bin/pip-install
RUN --mount=type=secret,id=pip_conf,required=false --mount=type=secret,id=pip_cert,required=false \
    if [ "$GPU" = "1" ]; then tf="tensorflow[and-cuda]==${TENSORFLOW_VERSION}"; \
    else tf="tensorflow-cpu==${TENSORFLOW_VERSION}"; fi \
    && /opt/streamdream/bin/pip-install install "$tf" \
    # TensorFlow's C++ headers (287 MB) serve only to compile custom ops, never at run time
    && rm -rf "$VIRTUAL_ENV"/lib/python3*/site-packages/tensorflow/include

COPY pyproject.toml /tmp/streamdream/
# tensorflow-cpu is not named "tensorflow", so that requirement is left out here and the
# package below is installed with --no-deps (pip would otherwise add the 545 MB full wheel);
# the build-system requirements come too, as the package is built without network below.
RUN --mount=type=secret,id=pip_conf,required=false --mount=type=secret,id=pip_cert,required=false \
    python3 -c "import tomllib; p = tomllib.load(open('/tmp/streamdream/pyproject.toml', 'rb')); deps = p['project']['dependencies'] + p['build-system']['requires']; print('\n'.join(d for d in deps if not d.startswith('tensorflow')))" \
      > /tmp/streamdream/requirements.txt \
    && /opt/streamdream/bin/pip-install install -r /tmp/streamdream/requirements.txt \
    && "$VIRTUAL_ENV/bin/python" -c "import tensorflow, keras, cv2, av"

COPY README.md /tmp/streamdream/
COPY streamdream /tmp/streamdream/streamdream
RUN "$VIRTUAL_ENV/bin/pip" install --no-deps --no-build-isolation /tmp/streamdream \
    && rm -rf /tmp/streamdream \
    # the offline model's weights, converted once here (hash-checked) into a folder that the
    # runtime user reads and cannot change; the first start then loads them directly
    && mkdir -p "$STREAMDREAM_CACHE_DIR" \
    && "$VIRTUAL_ENV/bin/python" -c "from streamdream.models.efficientnet_lite import VARIANTS, load_efficientnet_lite; [load_efficientnet_lite(n) for n in VARIANTS]" \
    && chmod -R a+rX,go-w "$STREAMDREAM_CACHE_DIR"

COPY configs /app/configs
# The run time's home and Keras' downloads (models other than the offline one) on the volume.
ENV HOME=/data \
    KERAS_HOME=/data/keras
COPY scripts/container-entrypoint.sh /opt/streamdream/bin/entrypoint
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# 9108: /metrics, /healthz, /api/* (metrics.port); 8090: the browser preview.
EXPOSE 9108 8090
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["/opt/streamdream/venv/bin/python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["/opt/streamdream/bin/entrypoint"]
CMD ["serve", "--config", "/app/configs/container.yaml"]
