//! The generated protobuf and gRPC code of `proto/openspeak/v1`.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("openspeak.v1");

/// The encoded `FileDescriptorSet` of every .proto file (well-known imports
/// included), for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("openspeak_descriptor");
