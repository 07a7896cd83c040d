//! What every RPC goes through around its handler: a tower layer.
//!
//! **Request ids.** Every RPC runs in a span with a request id, the token id
//! and the session id. The id comes from the request's `x-request-id`
//! metadata when it is a sane one (so a client can follow its call through
//! our logs), or is generated; either way it goes back in the response
//! metadata. Handlers fill in `token_id` and `session_id` once they know
//! them.
//!
//! **Error details.** Our handlers build every status with a
//! `google.rpc.ErrorInfo`. A few errors never reach them: a request over
//! `server.max_message_bytes` or one that does not decode is refused by
//! tonic's codec, a method that does not exist by its router. Those come
//! back as trailers-only responses with a bare `grpc-status`; on the
//! OpenSpeak services this layer rewrites them into the status a client of
//! the contract expects: malformed or oversized input is `INVALID_ARGUMENT`
//! with `INVALID_REQUEST`.
//!
//! **Undecodable requests.** tonic reports a request body that is not the
//! method's protobuf message (and a broken gRPC frame around it) as a bare
//! `INTERNAL` whose message is the decoder's own text. On our services no
//! handler ever returns a bare status (each builds its `ErrorInfo`), so a
//! bare `INTERNAL` in the response headers can only come from tonic reading
//! the request: it is the client's malformed input, and becomes
//! `INVALID_REQUEST` with a fixed message. The decoder's text goes to the
//! log at debug level only: it names internals no client needs.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderValue, Request, Response};
use openspeak_shared::{Reason, metadata};
use rand::RngCore;
use tonic::{Code, Status};
use tower::{Layer, Service};
use tracing::{Instrument, debug, field};

use crate::limits;

/// Paths of the services whose errors must carry OpenSpeak details.
const OUR_SERVICES: &str = "/openspeak.";

/// What a client that sent an undecodable request is told.
const UNDECODABLE: &str =
    "the request could not be read: it is not a well-formed message of the method's request type";

#[derive(Debug, Clone, Copy, Default)]
pub struct EdgeLayer;

impl<S> Layer<S> for EdgeLayer {
    type Service = EdgeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EdgeService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct EdgeService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<Request<B>> for EdgeService<S>
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
        let ours = request.uri().path().starts_with(OUR_SERVICES);
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
                if ours {
                    add_details(response.headers_mut());
                }
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

/// Rewrites a bare error status in `headers` (a trailers-only response).
fn add_details(headers: &mut http::HeaderMap) {
    if headers.contains_key("grpc-status-details-bin") {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let replacement = match status.code() {
        Code::Ok => return,
        Code::InvalidArgument | Code::OutOfRange | Code::Unimplemented => {
            Reason::InvalidRequest.status(status.message().to_owned())
        }
        Code::ResourceExhausted => Reason::RateLimited.status(status.message().to_owned()),
        // See the module header: tonic could not read the request.
        Code::Internal => {
            debug!(detail = status.message(), "undecodable request");
            Reason::InvalidRequest.status(UNDECODABLE)
        }
        // Anything else tonic raises on its own is ours to explain; its
        // text is tonic's, but bounded all the same.
        _ => Reason::InternalError.status(format!(
            "request failed: {}",
            limits::Echo(status.message())
        )),
    };
    headers.remove("grpc-status");
    headers.remove("grpc-message");
    // Cannot fail for statuses we build: the message is ASCII-escaped and
    // the details are base64.
    let _ = replacement.add_header(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `status` as a trailers-only response carries it, after
    /// [`add_details`], read back.
    fn with_details(status: Status) -> Status {
        let mut headers = http::HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        add_details(&mut headers);
        Status::from_header_map(&headers).unwrap()
    }

    #[test]
    fn a_bare_out_of_range_becomes_invalid_request() {
        let status = with_details(Status::out_of_range("decoded message length too large"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "decoded message length too large");
        assert_eq!(Reason::of(&status), Some(Reason::InvalidRequest));
    }

    #[test]
    fn a_bare_internal_is_an_undecodable_request_without_the_decoder_text() {
        let status = with_details(Status::internal(
            "failed to decode Protobuf message: buffer underflow",
        ));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), UNDECODABLE);
        assert_eq!(Reason::of(&status), Some(Reason::InvalidRequest));
    }

    #[test]
    fn statuses_with_details_and_successes_are_left_alone() {
        let mut headers = http::HeaderMap::new();
        Reason::ChannelFull
            .status("full")
            .add_header(&mut headers)
            .unwrap();
        let before = headers.clone();
        add_details(&mut headers);
        assert_eq!(headers, before);

        let mut ok = http::HeaderMap::new();
        ok.insert("grpc-status", "0".parse().unwrap());
        add_details(&mut ok);
        assert_eq!(ok.len(), 1);
    }
}
