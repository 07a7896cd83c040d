//! `talk`: one client sends the Opus packets of an Ogg Opus file into a
//! channel at the pace they were recorded at, as a real client sends its
//! microphone, so that what listeners hear (or `record` writes) can be
//! compared with the file.
//!
//! The pacing is pure ([`schedule`]): packet i leaves at the start plus the
//! summed durations of the packets before it (from their TOC bytes, in
//! 48 kHz samples), with voice sequence i and that offset in milliseconds
//! as its timestamp. Offsets are computed from the start, not from the
//! previous send, so a late wake-up delays one packet and not all that
//! follow. The driver ([`run_talk`]) only sleeps until each offset.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use openspeak_voice::datagram::MAX_PAYLOAD;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::audio::flags::TalkArgs;
use crate::audio::opus_file::{SAMPLE_RATE, packet_samples, read_file};
use crate::audio::session::AudioSession;
use crate::common::error::TalkError;
use crate::common::task::interrupted;

/// How long to stay connected after the last frame has played out, so
/// that the QUIC driver sends the last datagrams before the close.
const SEND_TAIL: Duration = Duration::from_millis(100);

/// When and how one packet is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    /// The voice sequence number: the packet's index, wrapping.
    pub sequence: u32,
    /// The voice timestamp: `offset` in milliseconds, wrapping.
    pub timestamp_ms: u32,
    /// When to send it, from the first packet.
    pub offset: Duration,
}

/// The send schedule of `packets`, one slot each. A packet without a
/// duration (which a file read by `opus_file` never has) counts as none.
pub(crate) fn schedule(packets: &[Vec<u8>]) -> Vec<Slot> {
    let per_ms = u64::from(SAMPLE_RATE / 1000);
    let mut before: u64 = 0;
    packets
        .iter()
        .enumerate()
        .map(|(i, packet)| {
            let slot = Slot {
                // Both wrap, as docs/PROTOCOL.md says they do.
                sequence: i as u32,
                timestamp_ms: (before / per_ms) as u32,
                offset: samples_to_duration(before),
            };
            before += u64::from(packet_samples(packet).unwrap_or(0));
            slot
        })
        .collect()
}

/// `samples` at 48 kHz as a duration, to the microsecond below.
pub(crate) fn samples_to_duration(samples: u64) -> Duration {
    Duration::from_micros(samples * 1_000_000 / u64::from(SAMPLE_RATE))
}

/// What `talk` is about to do, once it is in voice.
#[derive(Debug, Clone)]
pub struct TalkStarted {
    /// Its session id: the `speaker` listeners see.
    pub session_id: u32,
    /// The channel's id.
    pub channel_id: String,
    /// The channel's name.
    pub channel_name: String,
    /// Packets the file holds.
    pub packets: usize,
    /// Their total duration.
    pub audio: Duration,
}

/// What `talk` did.
#[derive(Debug, Clone)]
pub struct TalkReport {
    /// The file sent.
    pub file: PathBuf,
    /// Its session id.
    pub session_id: u32,
    /// The channel's id.
    pub channel_id: String,
    /// Packets sent (all of the file's unless interrupted).
    pub packets_sent: usize,
    /// Packets in the file.
    pub packets_in_file: usize,
    /// The duration of the packets sent.
    pub audio: Duration,
    /// Wall time from the first packet to the last.
    pub elapsed: Duration,
    /// The most a packet left after its slot: how well the pace was kept.
    pub max_lateness: Duration,
    /// Ctrl-C stopped it early.
    pub interrupted: bool,
}

impl TalkReport {
    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "talk: sent {} of {} packets ({:.2} s of audio) in {:.2} s as session {} in channel {}; \
             latest packet {:.1} ms behind its slot{}",
            self.packets_sent,
            self.packets_in_file,
            self.audio.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            self.session_id,
            self.channel_id,
            self.max_lateness.as_secs_f64() * 1000.0,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            },
        )
    }
}

/// Runs `talk`: reads the file (before connecting, so that a bad file
/// costs no session), gets into voice in the channel, calls `on_start`,
/// sends every packet at its time, then closes voice and ends the session.
/// `interrupt` turning true stops the sending; what was sent is reported.
pub async fn run_talk(
    args: &TalkArgs,
    on_start: impl FnOnce(&TalkStarted),
    mut interrupt: watch::Receiver<bool>,
) -> Result<TalkReport, TalkError> {
    let stream = read_file(&args.file)?;
    if stream.packets.is_empty() {
        return Err(TalkError::Empty {
            path: args.file.clone(),
        });
    }
    if let Some((index, packet)) = stream
        .packets
        .iter()
        .enumerate()
        .find(|(_, p)| p.len() > MAX_PAYLOAD)
    {
        return Err(TalkError::PacketTooLong {
            path: args.file.clone(),
            index,
            len: packet.len(),
            max: MAX_PAYLOAD,
        });
    }
    let slots = schedule(&stream.packets);

    let mut audio = AudioSession::enter(&args.server, &args.name, &args.channel, false).await?;
    let session_id = audio.session.id();
    let channel_id = audio.channel.id.clone();
    on_start(&TalkStarted {
        session_id,
        channel_id: channel_id.clone(),
        channel_name: audio.channel.name.clone(),
        packets: stream.packets.len(),
        audio: samples_to_duration(stream.samples()),
    });
    let sent = send_all(&mut audio, &stream.packets, &slots, &mut interrupt).await;
    // Also after a failure: the data plane frees the slot at once and the
    // session ends, rather than after timeouts.
    audio.leave().await;
    let sent = sent?;
    let samples: u64 = stream.packets[..sent.packets]
        .iter()
        .map(|p| u64::from(packet_samples(p).unwrap_or(0)))
        .sum();
    Ok(TalkReport {
        file: args.file.clone(),
        session_id,
        channel_id,
        packets_sent: sent.packets,
        packets_in_file: stream.packets.len(),
        audio: samples_to_duration(samples),
        elapsed: sent.elapsed,
        max_lateness: sent.max_lateness,
        interrupted: sent.interrupted,
    })
}

/// What the send loop did.
struct Sent {
    packets: usize,
    elapsed: Duration,
    max_lateness: Duration,
    interrupted: bool,
}

/// Sends each packet at its slot, reading the session's events meanwhile
/// (a session that ends stops the talk). Bounded by the file's length.
async fn send_all(
    audio: &mut AudioSession,
    packets: &[Vec<u8>],
    slots: &[Slot],
    interrupt: &mut watch::Receiver<bool>,
) -> Result<Sent, TalkError> {
    let start = Instant::now();
    let mut sent = Sent {
        packets: 0,
        elapsed: Duration::ZERO,
        max_lateness: Duration::ZERO,
        interrupted: false,
    };
    for (index, (slot, packet)) in slots.iter().zip(packets).enumerate() {
        let at = start + slot.offset;
        // Events until the slot; each turn ends by the slot's time at the
        // latest, so this waits no longer than the file lasts.
        loop {
            tokio::select! {
                biased;
                () = interrupted(interrupt) => {
                    sent.interrupted = true;
                    return Ok(sent);
                }
                () = sleep_until(at) => break,
                event = audio.session.next_event() => {
                    // Presence and speaking events need no answer here.
                    event.map_err(TalkError::SessionEnded)?;
                }
            }
        }
        sent.max_lateness = sent
            .max_lateness
            .max(Instant::now().saturating_duration_since(at));
        audio
            .voice
            .send(
                slot.sequence,
                slot.timestamp_ms,
                Bytes::copy_from_slice(packet),
            )
            .map_err(|source| TalkError::Send { index, source })?;
        sent.packets += 1;
        sent.elapsed = start.elapsed();
    }
    // Closing a QUIC connection discards the datagrams still queued in it,
    // and the last ones may be: so talk to the end of the last frame, as a
    // person does, and a little longer for the connection's driver to send
    // them. Bounded, and Ctrl-C cuts it short.
    let end = start + slots.last().map_or(Duration::ZERO, |s| s.offset) + last_duration(packets);
    tokio::select! {
        () = interrupted(interrupt) => {}
        () = sleep_until(end + SEND_TAIL) => {}
    }
    Ok(sent)
}

/// How long the last packet lasts.
fn last_duration(packets: &[Vec<u8>]) -> Duration {
    let samples = packets.last().and_then(|p| packet_samples(p)).unwrap_or(0);
    samples_to_duration(u64::from(samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CELT fullband packet of one frame: config 28 is 2.5 ms, 29 is
    /// 5 ms, 30 is 10 ms, 31 is 20 ms.
    fn celt(config: u8) -> Vec<u8> {
        vec![config << 3, 0xAA]
    }

    #[test]
    fn packets_leave_at_the_summed_durations_of_those_before() {
        let packets = vec![celt(31), celt(31), celt(30), celt(28), celt(31)];
        let slots = schedule(&packets);
        let offsets: Vec<u128> = slots.iter().map(|s| s.offset.as_micros()).collect();
        assert_eq!(offsets, [0, 20_000, 40_000, 50_000, 52_500]);
        let stamps: Vec<u32> = slots.iter().map(|s| s.timestamp_ms).collect();
        assert_eq!(stamps, [0, 20, 40, 50, 52]);
        let sequences: Vec<u32> = slots.iter().map(|s| s.sequence).collect();
        assert_eq!(sequences, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_two_frame_packet_lasts_twice_as_long() {
        // Code 1: two 20 ms frames of equal size.
        let double = vec![31 << 3 | 1, 0, 0];
        let slots = schedule(&[double, celt(31)]);
        assert_eq!(slots[1].offset, Duration::from_millis(40));
    }

    #[test]
    fn timestamps_wrap_like_u32() {
        // 2^32 ms of audio lies beyond any file, so check the arithmetic.
        let samples: u64 = (1u64 << 32) * 48 + 48 * 7;
        assert_eq!((samples / 48) as u32, 7);
        assert_eq!(samples_to_duration(48_000), Duration::from_secs(1));
        assert_eq!(samples_to_duration(120), Duration::from_micros(2_500));
    }
}
