//! Compiles `proto/` into Rust with protox (pure Rust, no system `protoc`)
//! and writes the file descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
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
    Ok(())
}
