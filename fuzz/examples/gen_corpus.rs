//! Writes the seed corpus, `corpus/<target>/seed-*`, with the project's own
//! encoders: a few small valid inputs per target, so that each fuzzer
//! starts past the first checks. The keys are made up for the corpus and
//! protect nothing.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use openspeak_shared::pb::cluster::{
    self as pb, ControlMessage, DataplaneMessage, control_message, dataplane_message,
};
use openspeak_shared::ticket::{KEY_LEN, Ticket, TicketIssuer, TicketKey};
use openspeak_voice::datagram::{Forwarded, VoicePacket};
use openspeak_voice::exchange::{self, RejectCode};
use openspeak_voice::udp::{self, Control, Direction, SessionKey};
use prost::Message;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");

    let packet = |seq, ts, payload: &'static [u8]| VoicePacket {
        sequence: seq,
        timestamp: ts,
        payload: Bytes::from_static(payload),
    };
    let voice = packet(7, 140, b"\xfc\xff\xfe");
    let wrap = packet(u32::MAX, u32::MAX, b"x");
    let voice_bytes = voice.encode().unwrap().to_vec();
    let forwarded = Forwarded::build(42, &voice).unwrap().to_vec();
    write(&root, "voice_datagram", "voice", &voice_bytes);
    write(
        &root,
        "voice_datagram",
        "voice-wrap",
        &wrap.encode().unwrap(),
    );
    write(&root, "voice_datagram", "forwarded", &forwarded);

    // Sealed with the udp_packet target's SEED_KEY.
    let key = SessionKey::new(&[0x42; udp::KEY_LEN]);
    let sealed = |direction, session, counter, plaintext: &[u8]| {
        let mut out = Vec::new();
        udp::seal_into(&key, direction, session, counter, plaintext, &mut out);
        out
    };
    let control = |c: Control| {
        let mut out = Vec::new();
        c.encode(&mut out);
        out
    };
    let t = "udp_packet";
    write(
        &root,
        t,
        "ticket",
        &udp::encode_ticket(b"opaque ticket").unwrap(),
    );
    write(&root, t, "reject", &udp::encode_reject(RejectCode::Expired));
    write(
        &root,
        t,
        "sealed-voice",
        &sealed(Direction::ToDataplane, 7, 0, &voice_bytes),
    );
    write(
        &root,
        t,
        "sealed-forwarded",
        &sealed(Direction::ToClient, 7, 3, &forwarded),
    );
    write(
        &root,
        t,
        "sealed-ping",
        &sealed(Direction::ToDataplane, 7, 1, &control(Control::Ping(9))),
    );
    write(
        &root,
        t,
        "sealed-accepted",
        &sealed(Direction::ToClient, 7, 0, &control(Control::Accepted(7))),
    );
    write(&root, t, "ping", &control(Control::Ping(u64::MAX)));
    write(
        &root,
        t,
        "closed",
        &control(Control::Closed(RejectCode::Removed as u8)),
    );

    // Steps of 9 bytes: flag, then a little-endian u64.
    let steps = |list: &[(u8, u64)]| -> Vec<u8> {
        list.iter()
            .flat_map(|(flag, n)| std::iter::once(*flag).chain(n.to_le_bytes()))
            .collect()
    };
    let t = "replay_window";
    write(
        &root,
        t,
        "in-order",
        &steps(&[(0, 0), (0, 1), (0, 2), (0, 3)]),
    );
    write(
        &root,
        t,
        "late-and-replayed",
        &steps(&[(0, 200), (1, 127), (1, 128), (1, 127), (2, 1)]),
    );
    write(
        &root,
        t,
        "top",
        &steps(&[(3, 0), (3, 1), (3, 0), (0, u64::MAX)]),
    );

    let t = "ticket_exchange";
    write(
        &root,
        t,
        "request",
        &exchange::encode_request(b"opaque ticket").unwrap(),
    );
    write(&root, t, "accept", &exchange::encode_accept(258));
    write(
        &root,
        t,
        "reject-forged",
        &exchange::encode_reject(RejectCode::Forged),
    );
    write(
        &root,
        t,
        "reject-in-use",
        &exchange::encode_reject(RejectCode::InUse),
    );

    // Issued with the ticket_verify target's seed key; they expire in 2033,
    // after the target's fixed `now`.
    let issuer = TicketIssuer::new(TicketKey {
        id: 7,
        secret: [0x11; KEY_LEN],
    });
    let ticket = |session_id, channel: &str| Ticket {
        session_id,
        channel: channel.to_owned(),
        expires_at: UNIX_EPOCH + Duration::from_secs(2_000_000_000),
        session_key: [0x5a; KEY_LEN],
    };
    let t = "ticket_verify";
    for (name, session, channel) in [
        ("lobby", 42, "lobby"),
        ("utf8", 1, "lobby-ü"),
        ("no-channel", 9, ""),
    ] {
        let mut raw = vec![0u8];
        raw.extend(issuer.issue(&ticket(session, channel)).unwrap());
        write(&root, t, &format!("raw-{name}"), &raw);
    }
    // Mode 1: a plaintext the harness seals itself.
    let mut plain = vec![1u8];
    plain.extend_from_slice(&42u32.to_be_bytes());
    plain.extend_from_slice(&2_000_000_000u64.to_be_bytes());
    plain.extend_from_slice(&5u16.to_be_bytes());
    plain.extend_from_slice(b"lobby");
    plain.extend_from_slice(&[0x5a; KEY_LEN]);
    write(&root, t, "plaintext", &plain);

    let t = "cluster_messages";
    let control_msg = |kind| ControlMessage { kind: Some(kind) }.encode_to_vec();
    let key = pb::TicketKey {
        id: 7,
        secret: vec![0x11; KEY_LEN],
    };
    let member = pb::Member {
        session_id: 42,
        channel_id: "lobby".into(),
        muted: true,
        deafened: false,
    };
    write(
        &root,
        t,
        "snapshot",
        &control_msg(control_message::Kind::Snapshot(pb::Snapshot {
            keys: vec![key.clone()],
            members: vec![member.clone()],
            instance: "c0ffee".into(),
        })),
    );
    write(
        &root,
        t,
        "member-update",
        &control_msg(control_message::Kind::MemberUpdate(pb::MemberUpdate {
            member: Some(member),
        })),
    );
    write(
        &root,
        t,
        "member-removed",
        &control_msg(control_message::Kind::MemberRemoved(pb::MemberRemoved {
            session_id: 42,
        })),
    );
    write(
        &root,
        t,
        "key-added",
        &control_msg(control_message::Kind::TicketKeyAdded(pb::TicketKeyAdded {
            key: Some(key),
        })),
    );
    let dataplane_msg = |kind| DataplaneMessage { kind: Some(kind) }.encode_to_vec();
    write(
        &root,
        t,
        "register",
        &dataplane_msg(dataplane_message::Kind::Register(pb::Register {
            dataplane_id: "dp-1".into(),
            quic_endpoint: "127.0.0.1:4433".into(),
            udp_endpoint: "127.0.0.1:4434".into(),
            cert_sha256: "ab".repeat(32),
            capacity: 100,
            channels: vec!["lobby".into()],
        })),
    );
    write(
        &root,
        t,
        "speaking",
        &dataplane_msg(dataplane_message::Kind::Speaking(pb::Speaking {
            session_id: 42,
            speaking: true,
        })),
    );
    write(
        &root,
        t,
        "stats",
        &dataplane_msg(dataplane_message::Kind::Stats(pb::Stats {
            sessions: 1,
            forwarded_total: 10,
            dropped_total: 1,
            streams: vec![pb::StreamQuality {
                session_id: 42,
                received: 5,
                jitter_ms: 1.5,
                ..Default::default()
            }],
        })),
    );

    let t = "config_yaml";
    write(&root, t, "empty", b"# nothing set\n");
    write(
        &root,
        t,
        "server",
        b"server:\n  host: 127.0.0.1\n  port: 50051\nlogging:\n  level: info\n",
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/config.yaml");
    write(&root, t, "example", &std::fs::read(example).unwrap());
    write(
        &root,
        t,
        "channels",
        b"channels:\n  default: \" Lobby \"\nvoice:\n  max_broadcast_lag_ms: 200\n",
    );
}

fn write(root: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir: PathBuf = root.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}
