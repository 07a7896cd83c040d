//! A fixed pool of HTTP/2 connections that the clients share.
//!
//! Each tonic `Channel` built by `Endpoint::connect` is one TCP connection
//! multiplexing many streams, so thousands of sessions need only tens of
//! connections. Client `i` always uses connection `i % len`, which keeps the
//! number of event streams per connection even.

use std::time::Duration;

use futures::future::try_join_all;
use tokio::time::{Instant, timeout_at};
use tonic::transport::Channel;

use crate::common::error::ConnectError;
use crate::common::flags::ServerFlags;

/// The shared connections.
#[derive(Debug, Clone)]
pub struct Pool {
    /// One entry per TCP connection.
    channels: Vec<Channel>,
}

impl Pool {
    /// Opens `size` connections to the control plane, over TLS when the
    /// flags say so, all at once, before `deadline`. Any failure fails the
    /// whole pool: a load test against a half-reachable server would
    /// measure the wrong thing.
    pub async fn connect(
        server: &ServerFlags,
        size: u32,
        deadline: Instant,
    ) -> Result<Pool, ConnectError> {
        let addr = server.addr.as_str();
        let endpoint = server
            .endpoint()?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            // Idle event streams must not look dead to middleboxes or the server.
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let dials = (0..size).map(|_| {
            let endpoint = endpoint.clone();
            async move {
                endpoint
                    .connect()
                    .await
                    .map_err(|source| ConnectError::Unreachable {
                        addr: addr.to_owned(),
                        source,
                    })
            }
        });
        let channels = timeout_at(deadline, try_join_all(dials))
            .await
            .map_err(|_| ConnectError::TimedOut {
                addr: addr.to_owned(),
            })??;
        Ok(Pool { channels })
    }

    /// The connection for client `index`.
    pub fn for_client(&self, index: usize) -> Channel {
        self.channels[index % self.channels.len()].clone()
    }

    /// Any connection, for the admin calls.
    pub fn any(&self) -> Channel {
        self.channels[0].clone()
    }

    /// Number of connections.
    pub fn len(&self) -> usize {
        self.channels.len()
    }
}
