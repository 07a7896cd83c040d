//! Compiles `proto/` into Rust with protox (pure Rust, no system `protoc`)
//! and writes the file descriptor set that server reflection serves (the
//! public API only; the internal cluster link is compiled but not served).

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "openspeak/v1/admin.proto",
        "openspeak/v1/auth.proto",
        "openspeak/v1/channel.proto",
        "openspeak/v1/presence.proto",
        "openspeak/v1/voice.proto",
    ];
    println!("cargo:rerun-if-changed=../proto");

    // protox puts the well-known imports (google/protobuf/*) in the set too,
    // which reflection needs so that grpcurl can resolve `Timestamp`.
    let fds = protox::compile(files, ["../proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("openspeak_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        // The generated `XClient::connect(dst)` constructor would clash with
        // the client method of the `PresenceService.Connect` RPC; clients
        // build a `Channel` and call `XClient::new(channel)` instead.
        .build_transport(false)
        .compile_fds(fds)?;

    // The internal link is compiled apart so that reflection, which serves
    // the set above, shows only the public API.
    let cluster = protox::compile(["openspeak/cluster/v1/cluster.proto"], ["../proto"])?;
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(cluster)?;

    fanout_presence_server();
    Ok(())
}

/// A second server for `PresenceService`, identical on the wire, whose
/// `Connect` streams `crate::Encoded` events: the control plane encodes
/// each event once and hands the same bytes to every session, instead of
/// cloning and encoding it once per session.
fn fanout_presence_server() {
    use tonic_build::manual::{Builder, Method, Service};

    let unary = |name: &str, route: &str, input: &str, output: &str| {
        Method::builder()
            .name(name)
            .route_name(route)
            .input_type(format!("crate::pb::{input}"))
            .output_type(format!("crate::pb::{output}"))
            .codec_path("tonic_prost::ProstCodec")
            .build()
    };
    let service = Service::builder()
        .name("PresenceService")
        .package("openspeak.v1")
        .method(
            Method::builder()
                .name("connect")
                .route_name("Connect")
                .input_type("crate::pb::ConnectRequest")
                .output_type("crate::Encoded")
                .codec_path("tonic_prost::ProstCodec")
                .server_streaming()
                .build(),
        )
        .method(unary(
            "update_presence",
            "UpdatePresence",
            "UpdatePresenceRequest",
            "UserPresence",
        ))
        .method(unary(
            "list_online",
            "ListOnline",
            "ListOnlineRequest",
            "ListOnlineResponse",
        ))
        .method(unary(
            "list_channel_members",
            "ListChannelMembers",
            "ListChannelMembersRequest",
            "ListChannelMembersResponse",
        ))
        .build();
    Builder::new()
        .build_client(false)
        .build_transport(false)
        .compile(&[service]);
}
