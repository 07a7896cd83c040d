//! Gives every RPC a span with a request id, the token id and the session id.
//!
//! The id comes from the request's `x-request-id` metadata when it is a
//! sane one (so a client can follow its call through our logs), or is
//! generated; either way it goes back in the response metadata. Handlers
//! fill in `token_id` and `session_id` once they know them.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderValue, Request, Response};
use openspeak_shared::metadata;
use rand::RngCore;
use tower::{Layer, Service};
use tracing::{Instrument, debug, field};

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let id = request
            .headers()
            .get(metadata::REQUEST_ID)
            .filter(|v| acceptable(v))
            .cloned()
            .unwrap_or_else(generate);
        let span = tracing::info_span!(
            "rpc",
            method = request.uri().path(),
            request_id = id.to_str().unwrap_or_default(),
            token_id = field::Empty,
            session_id = field::Empty,
        );
        let started = Instant::now();
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let mut response = future.await?;
                response.headers_mut().insert(metadata::REQUEST_ID, id);
                debug!(
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "rpc answered"
                );
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// Short printable ASCII only: the id ends up in logs.
fn acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
}

fn generate() -> HeaderValue {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    HeaderValue::from_str(&hex::encode(bytes)).expect("hex is a valid header value")
}
