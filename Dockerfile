# wgformer for GPU nodes (and CPU nodes, through Mesa's lavapipe).
#
#   docker build -t wgformer .
#   docker run --gpus all -p 8000:8000 -v /srv/models:/models:ro wgformer
#
# Stage 1 builds the release binary with the dependencies in a layer of their own (a
# dummy main is built first, so editing src/ does not rebuild the crates). Stage 2 is
# Debian slim with the Vulkan loader, Mesa's Vulkan drivers (the lavapipe fallback) and
# CA certificates; on NVIDIA the container toolkit mounts the driver and its Vulkan ICD
# when NVIDIA_DRIVER_CAPABILITIES includes `graphics` (CUDA images never ask for it).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# the dependency layer: the manifest with stand-in targets
RUN mkdir -p src benches tests/it \
 && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
 && echo 'fn main() {}' > benches/shaders.rs \
 && echo 'fn main() {}' > tests/it/main.rs \
 && cargo build --release --bin wgformer \
 && rm -rf src benches tests
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --bin wgformer

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 mesa-vulkan-drivers ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin wgformer \
 && mkdir -p /models
COPY --from=build /src/target/release/wgformer /usr/local/bin/wgformer
# NVIDIA: the Vulkan ICD comes with the `graphics` capability
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    WGFORMER_HOST=0.0.0.0 \
    WGFORMER_PORT=8000 \
    WGFORMER_MODELS_DIR=/models \
    WGFORMER_LOG_FORMAT=json \
    XDG_RUNTIME_DIR=/tmp
VOLUME ["/models"]
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
  CMD ["wgformer", "probe", "http://127.0.0.1:8000/api/v1/health/ready"]
ENTRYPOINT ["wgformer", "serve"]
