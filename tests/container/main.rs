//! The deployment in a real container runtime: the image `scripts/test-container.sh`
//! builds from the Dockerfile, run the way the chart's pods run it (read-only root,
//! uid 65532, no capabilities, the chart's memory limit, a tmpfs spool), the chart's
//! pod templates played with `podman kube play`, and the compose stack brought up with
//! podman-compose. Every server the containers reach (SecantusDB, MinIO) runs on the
//! host's loopback, so the containers use the host's network.
//!
//! `INGEST_TEST_IMAGE` names the image and `INGEST_TEST_CONTAINER_ENGINE` the engine
//! (podman, or docker for the image tests); `scripts/test-container.sh build` builds
//! the image and prints both. Without them every test here is skipped (a failure
//! under `CI=true`).
//!
//! Peers: podman (or Docker), SecantusDB (replica set), MinIO, helm.

#[path = "../common/mod.rs"]
mod common;

#[path = "../common/s3_fault_proxy.rs"]
mod s3_fault_proxy;

mod compose;
mod engine;
mod image;
mod pods;
