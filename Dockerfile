# syntax=docker/dockerfile:1
# ingest-backup as a distroless, non-root container image.
#
#   docker build -t ingest-backup .
#   docker run --rm -e MONGO_URI=mongodb://host:27017 -e S3_BUCKET=... ingest-backup backup
#
# Build stage: the release profile of Cargo.toml, with Cargo.lock as committed. The
# toolchain is pinned (>= the crate's rust-version 1.88; the one the tests run with).
FROM rust:1.95.0-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml names benches/pipeline.rs; cargo wants every declared target present.
COPY benches ./benches
# Symbols stripped from the image's binary only (54 to 41 MB): the tests' builds keep
# them for readable backtraces.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ingest-backup \
    && install -D -m 0755 target/release/ingest-backup /out/ingest-backup \
    && install -d -m 0700 -o 65532 -g 65532 /out/var/spool/ingest-backup

# Run stage: glibc and libgcc (the binary is dynamically linked against them, TLS is
# rustls: no OpenSSL), CA certificates in /etc/ssl/certs (read by the AWS SDK's
# native roots), tzdata, no shell, no package manager. User 65532 (nonroot) as the
# Helm chart's runAsUser; numeric so that Kubernetes can check runAsNonRoot.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/ingest-backup /usr/local/bin/ingest-backup
# The spool directory (INGEST_BACKUP_SPOOL_DIR), owned by the runtime user and private
# to it (0700), so that a volume mounted there (docker-compose.yml) starts out writable
# for it alone. COPY of a directory copies its contents into a target created 0755, so
# the parent is copied: /var/spool exists in the base image, and the spool directory
# inside it keeps the mode the build stage gave it.
COPY --from=builder --chown=65532:65532 /out/var/spool/ /var/spool/
ENV INGEST_BACKUP_SPOOL_DIR=/var/spool/ingest-backup
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ingest-backup"]
CMD ["--help"]
