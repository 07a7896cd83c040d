//! The generated protobuf and gRPC code of `proto/openspeak/v1`.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("openspeak.v1");

/// The encoded `FileDescriptorSet` of every .proto file (well-known imports
/// included), for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("openspeak_descriptor");

/// The server side of `PresenceService` whose `Connect` streams
/// [`crate::Encoded`] events (same wire format as the generated one).
pub mod fanout {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/openspeak.v1.PresenceService.rs"));
}

/// The internal link between the control plane and its data planes
/// (`proto/openspeak/cluster/v1`). Not public API, and not served by
/// reflection.
pub mod cluster {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("openspeak.cluster.v1");
}
