# syntax=docker/dockerfile:1
# sam3-server, CPU image. Dockerfile.cuda is this file with other defaults for the arguments above
# the "shared stages" line; everything below it is identical in both (tests/deploy-files.test.ts).
#
#   docker build -t sam3-server:cpu .
#   docker run -p 8000:8000 -v "$PWD/models/demo:/models/sam3:ro" sam3-server:cpu
#
# Offline / air-gapped: put the torch wheel in a folder and hand it over as the `wheels` build
# context, and don't use an index:
#   docker buildx build --build-context wheels=/opt/wheels --build-arg TORCH_PIP_ARGS=--no-index .
# An HTTPS proxy with its own CA: --build-context certs=/usr/local/share/ca-certificates (*.crt; used
# only in the builder, never copied into the image).

# Base of the builder (compiler, cmake, python3 + pip to unpack the torch wheel) and of the runtime.
ARG BUILD_BASE=docker.io/library/debian:bookworm-slim
ARG RUNTIME_BASE=docker.io/library/debian:bookworm-slim
# Node.js comes from the official image (/usr/local/bin/node and npm): Debian bookworm's is 18.
ARG NODE_IMAGE=docker.io/library/node:20-bookworm-slim
# libtorch comes from the torch wheel; pip looks in the `wheels` context first, then these args.
ARG TORCH_VERSION=2.13.0
ARG TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
ARG SAM3_DEVICE=cpu

# ---- shared stages: identical in Dockerfile and Dockerfile.cuda below this line ----

# Empty unless replaced with --build-context wheels=DIR / certs=DIR.
FROM scratch AS wheels
FROM scratch AS certs
FROM ${NODE_IMAGE} AS node

FROM ${BUILD_BASE} AS builder
ARG TORCH_VERSION
ARG TORCH_PIP_ARGS
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake python3 python3-pip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=certs,target=/tmp/certs \
    find /tmp/certs -maxdepth 1 -name '*.crt' -exec cp {} /usr/local/share/ca-certificates/ \; \
 && update-ca-certificates
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
# npm reads the system CA bundle (with any extra certs); postinstall's setup is done step by step here.
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    SAM3_SKIP_SETUP=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libtorch: the torch wheel unpacked into /opt/torch (the addon links it with an RPATH there),
# without its Python requirements (the server never imports torch); then only the native libraries
# it loads: for a CUDA wheel the nvidia-* packages its metadata names (cuBLAS, cuDNN, NCCL, ...,
# scripts/torch_runtime_requirements.py), nothing for a CPU wheel. Offline, the `wheels` folder
# needs only these wheels, not triton or sympy.
# Only the shared libraries go to the runtime: torch/lib without the Python binding and the test
# libraries, and the nvidia/* libraries that libtorch_cuda.so finds relative to itself
# ($ORIGIN/../../nvidia/*/lib), without their headers and static libraries.
COPY scripts/torch_runtime_requirements.py /usr/local/lib/sam3/
# shellcheck disable=SC2086
RUN --mount=type=bind,from=wheels,target=/wheels \
    python3 -m pip install --no-cache-dir --no-deps --target /opt/torch --find-links /wheels ${TORCH_PIP_ARGS} "torch==${TORCH_VERSION}" \
 && python3 /usr/local/lib/sam3/torch_runtime_requirements.py /opt/torch > /opt/torch-native-requirements.txt \
 && if [ -s /opt/torch-native-requirements.txt ]; then \
      python3 -m pip install --no-cache-dir --target /opt/torch --find-links /wheels ${TORCH_PIP_ARGS} -r /opt/torch-native-requirements.txt; \
    fi \
 && mkdir -p /opt/torch-runtime/torch \
 && cp -a /opt/torch/torch/lib /opt/torch-runtime/torch/ \
 && rm -rf /opt/torch-runtime/torch/lib/libtorch_python.so /opt/torch-runtime/torch/lib/*test*.so \
           /opt/torch-runtime/torch/lib/libbackend_with_compiler.so /opt/torch-runtime/torch/lib/libaoti_custom_ops.so \
 && if [ -d /opt/torch/nvidia ]; then \
      cp -a /opt/torch/nvidia /opt/torch-runtime/ \
      && find /opt/torch-runtime/nvidia -type d -name include -prune -exec rm -rf {} + \
      && find /opt/torch-runtime/nvidia -type f -name '*.a' -exec rm -f {} +; \
    fi

WORKDIR /src
# Layers ordered by how often they change: dependencies, then the addon, then the TypeScript.
COPY package.json package-lock.json ./
# postinstall (scripts/setup.mjs) does nothing with SAM3_SKIP_SETUP=1; the packages' own install
# scripts must run (ffmpeg's set the execute bit, which a non-root server could not set later).
COPY scripts/setup.mjs scripts/
RUN npm ci --no-audit --no-fund
COPY CMakeLists.txt ./
COPY native native
COPY scripts/build-native.mjs scripts/
COPY scripts/lib scripts/lib
RUN LIBTORCH=/opt/torch/torch SAM3_BUILD_JOBS="$(nproc)" node scripts/build-native.mjs \
 && strip --strip-unneeded build/Release/sam3.node
COPY tsconfig.json ./
COPY src src
# The bundled ffmpeg/ffprobe must be executable by the runtime's user (some ship as 0744).
RUN node node_modules/typescript/bin/tsc -p . \
 && npm prune --omit=dev --no-audit --no-fund \
 && find node_modules/@ffmpeg-installer node_modules/@ffprobe-installer -type f \( -name ffmpeg -o -name ffprobe \) -exec chmod 0755 {} +

FROM ${RUNTIME_BASE} AS runtime
ARG SAM3_DEVICE
ARG TORCH_VERSION
ARG DEBIAN_FRONTEND=noninteractive
LABEL org.opencontainers.image.title="sam3-server" \
      org.opencontainers.image.description="SAM 3 inference server (HTTP + WebSocket) on libtorch" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/sam3-server/sam3-server" \
      org.opencontainers.image.version="0.1.0" \
      io.sam3.device="${SAM3_DEVICE}" \
      io.sam3.torch-version="${TORCH_VERSION}"
RUN apt-get update \
 && apt-get install -y --no-install-recommends libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sam3 \
 && useradd --system --uid 10001 --gid sam3 --home-dir /data --no-create-home --shell /usr/sbin/nologin sam3 \
 && mkdir -p /data /models \
 && chown sam3:sam3 /data
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=builder /opt/torch-runtime /opt/torch
WORKDIR /app
COPY --from=builder /src/package.json ./
COPY --from=builder /src/node_modules node_modules
COPY --from=builder /src/dist dist
COPY --from=builder /src/build/Release/sam3.node build/Release/sam3.node
# Every setting is an environment variable (.env.example lists them); these are the image's paths.
# The image serves model bundles: mount one at /models/sam3 (or set SAM3_CHECKPOINT). It has no
# Python, so it cannot export a Hugging Face checkpoint itself (README: "Run in a container").
# The device is the image's own: the CUDA image started without a GPU (no --gpus) exits saying so
# instead of serving on the CPU at a fraction of the speed; IMAGE_MODEL_DEVICE=auto lets it fall
# back, DEVICES=cuda:0,cuda:1 uses several GPUs.
ENV NODE_ENV=production \
    IMAGE_MODEL_DEVICE=${SAM3_DEVICE} \
    SAM3_CHECKPOINT=/models/sam3 \
    SAM3_EXPORT_DIR=/data/bundles \
    MEDIA_ROOT=/data/media \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8000
USER sam3
VOLUME ["/data"]
EXPOSE 8000
# /health is 200 once the model is loaded and while serving (503 while loading or draining).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.SERVER_PORT||8000)+'/health/ready').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# The server is PID 1 and handles SIGTERM itself: /health/ready turns 503, it serves on for
# SHUTDOWN_DELAY_MS (default 0), then answers new requests 503 while what is in flight finishes
# (SHUTDOWN_TIMEOUT_MS), frees native memory and exits 0. It reaps its own ffmpeg children.
STOPSIGNAL SIGTERM
CMD ["node", "dist/server/main.js"]
