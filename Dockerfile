# syntax=docker/dockerfile:1
# DMS in a container: a build stage that compiles the `dms` binary (its default plugins are
# compiled to wasm32-wasip2 by the build and embedded in it), and a small runtime stage that
# runs it as a non-root user. docker-compose.yml runs it with PostgreSQL and Redis.

FROM rust:1.95-slim-bookworm AS build
# The default plugins are WebAssembly components, built inside `cargo build`.
RUN rustup target add wasm32-wasip2
WORKDIR /src
# The whole workspace: cargo needs every member's manifest (tests/guests included) to
# resolve the lock file, and the plugins' sources to embed them.
COPY . .
# Cache mounts keep the registry and the compiled dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p dms --bin dms \
    && install -D -m 0755 target/release/dms /out/dms

FROM debian:bookworm-slim AS runtime
# ca-certificates: webhooks to https:// receivers verify their certificates.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 dms \
    && useradd --system --uid 10001 --gid dms --home-dir /var/lib/dms --shell /usr/sbin/nologin dms \
    && install -d -o dms -g dms -m 0700 /var/lib/dms
COPY --from=build /out/dms /usr/local/bin/dms
USER dms
WORKDIR /var/lib/dms
# Listen on every interface inside the container; data (SQLite, generated secrets, the
# plugin compile cache) under the volume.
ENV DMS_HOST=0.0.0.0 \
    DMS_PORT=3000 \
    DMS_DATA_DIR=/var/lib/dms
VOLUME ["/var/lib/dms"]
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["dms", "healthcheck", "http://127.0.0.1:3000/health"]
ENTRYPOINT ["dms"]
CMD ["serve"]
