//! The HTTP listener of the long-running commands (`schedule`, `exporter`):
//! `/healthz` for liveness probes and `/metrics` for Prometheus. HTTP/1.1 only, GET only, no request body read: nothing here can be made
//! to use more than a connection's buffers.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::metrics;

/// A `/metrics` page: rendered afresh on every scrape.
pub trait MetricsPage: Send + Sync + std::fmt::Debug {
    /// The page, in the OpenMetrics text format ([`metrics::CONTENT_TYPE`]).
    fn render(&self) -> String;
}

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct Probe {
    /// True while the command's loop runs (false once it stops).
    pub alive: Arc<AtomicBool>,
    /// The metrics to render.
    pub metrics: Arc<dyn MetricsPage>,
}

/// Serves `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, probe: Probe, shutdown: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "Accepting an HTTP connection failed.");
                    continue;
                }
            },
        };
        let probe = probe.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let probe = probe.clone();
                async move { Ok::<_, Infallible>(respond(&request, &probe)) }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = connection => if let Err(error) = result {
                    debug!(%error, %peer, "HTTP connection ended with an error.");
                },
            }
        });
    }
}

fn respond(request: &Request<Incoming>, probe: &Probe) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: &'static str| reply(status, "text/plain; charset=utf-8", body.into());
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.uri().path() {
        "/healthz" if probe.alive.load(Ordering::SeqCst) => text(StatusCode::OK, "ok\n"),
        "/healthz" => text(StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
        "/metrics" => reply(StatusCode::OK, metrics::CONTENT_TYPE, probe.metrics.render()),
        _ => text(StatusCode::NOT_FOUND, "not found: try /healthz or /metrics\n"),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}
