# syntax=docker/dockerfile:1.7
# kvs-infer for ECS GPU instances (g4dn, T4). Two stages:
#   build:   compiles the release binary and assembles the runtime root filesystem with
#            scripts/assemble-rootfs.sh (the same script tests/deploy/check_rootfs.sh checks):
#            the binary, ONNX Runtime GPU, the CUDA 13 / cuDNN 9 user-space libraries from
#            NVIDIA's PyPI wheels, the models, the default config, and the system libraries all
#            of these need.
#   runtime: FROM scratch + that folder. No shell, no package manager, no build tools, no caches.
# The NVIDIA driver (libcuda, >= 580 for CUDA 13) comes from the host through the NVIDIA
# container runtime (ECS GPU-optimised AMI).
#
# Build:  docker build -t kvs-infer .
# Run:    docker run --gpus all -p 8080:8080 kvs-infer      (the sample camera, local sinks)

# Rust 1.92 on Debian 12, pinned by digest (a tag can move; Dependabot proposes new digests).
FROM rust:1.92-slim-bookworm@sha256:f1f73538ebe623fd3673a35aff3df358ae1084c64c55646516e5b17b321b6c9b AS build
# FFmpeg's libraries and headers (Debian 12: FFmpeg 5.1) for the decoder, and clang for the
# bindings; the runtime stage gets the libraries (and what they link) from assemble-rootfs.sh.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip ca-certificates make gcc g++ \
      pkg-config clang libclang-dev libavcodec-dev libavformat-dev libavutil-dev libswscale-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# cargo-auditable embeds the dependency list in the binary (a .dep-v0 section), so Trivy and
# `cargo audit bin` see the crates inside the scratch image; assemble-rootfs.sh adds the dpkg
# records of the Debian libraries it copies, and the GPU wheels' list.
RUN cargo install cargo-auditable --locked --version 0.7.2 \
 && cargo auditable build --release --locked -p kvs-infer \
 && scripts/assemble-rootfs.sh /rootfs --binary target/release/kvs-infer --variant gpu

FROM scratch
COPY --from=build /rootfs/ /
# Debian's FFmpeg 5.1 is built with --enable-gpl: the libav* libraries in this image are GPL-2.0+
# (the service's own code is Apache-2.0). README "Licences" says more.
LABEL org.opencontainers.image.licenses="Apache-2.0 AND GPL-2.0-or-later" \
      org.opencontainers.image.description="kvs-infer: ONNX detection and OCR on Kinesis Video Streams; includes FFmpeg 5.1 (Debian, GPL build)"
ENV CONFIG_FILE=/etc/kvs-infer/config.yaml \
    HTTP_PORT=8080 \
    LOG_FORMAT=json \
    ORT_DYLIB_PATH=/opt/kvs-infer/lib/libonnxruntime.so.1.31.1 \
    LD_LIBRARY_PATH=/opt/kvs-infer/lib \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video
USER 10001:10001
EXPOSE 8080
VOLUME ["/var/lib/kvs-infer"]
# The same check ECS runs (ecs/templates/task-definition.json; timings in docs/health.md).
HEALTHCHECK --interval=5s --timeout=3s --retries=3 --start-period=60s \
  CMD ["/usr/local/bin/kvs-infer", "healthcheck", "--timeout", "2s"]
ENTRYPOINT ["/usr/local/bin/kvs-infer"]
CMD ["serve"]
