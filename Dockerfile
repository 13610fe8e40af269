# syntax=docker/dockerfile:1
# Tasklog: one binary (`tasklog`) for every role; pick the role with the command,
# e.g. `tasklog migrate`, `tasklog command-api`, `tasklog query-api`, `tasklog projectors`.

# ---- build -------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src

# sqlx's query macros must not try to reach a database at build time.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never

COPY . .

# Cache mounts keep the registry and target dir between builds; the binary is
# copied out of the (mounted, therefore not persisted) target dir.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tasklog \
    && install -D -m 0755 target/release/tasklog /out/tasklog

# ---- runtime -----------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin tasklog

COPY --from=build /out/tasklog /usr/local/bin/tasklog
COPY migrations /usr/local/share/tasklog/migrations

WORKDIR /usr/local/share/tasklog
ENV RUST_LOG=info

USER tasklog
EXPOSE 8080 8081 8082
CMD ["tasklog", "--help"]
