# Weir broker image: `docker compose up` builds it (see docs/containers.md).
# Stage 1 builds the release binary; stage 2 is a slim runtime with only the binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY vendor vendor
COPY config config
COPY src src
RUN cargo build --release --locked --bin weir

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data weir \
    && mkdir -p /data \
    && chown weir /data
COPY --from=build /src/target/release/weir /usr/local/bin/weir
USER weir
VOLUME /data
# 9092: Kafka clients; 9644: /metrics, /health, /ready.
EXPOSE 9092 9644
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=12 \
    CMD ["weir", "healthcheck", "--metrics-listen", "127.0.0.1:9644"]
ENTRYPOINT ["weir"]
# Listens on every interface; advertise an address clients can reach with
# --advertised-listener or a config file (docker-compose.yml does both listeners).
CMD ["--listen", "0.0.0.0:9092", "--data-dir", "/data", "--metrics-listen", "0.0.0.0:9644"]
