//! `record`: one client listens in a channel and writes the voice of one
//! speaker, packet for packet as the data plane forwarded it, into an Ogg
//! Opus file that any player or `opusdec` plays. With `talk` on the other
//! end it shows, by ear or byte for byte, what OpenSpeak did to a voice.
//!
//! The bookkeeping is pure ([`Recording`]): which speaker is recorded,
//! which payloads are Opus, the sequence gaps, and when the speaker went
//! quiet, from `now` given by the caller. The driver ([`run_record`])
//! receives, writes and decides when to stop: the speaker idle for
//! `--idle-ms` after its first packet, `--max-seconds` in voice, Ctrl-C, or
//! the connection or session gone. In every case the file is finished, so
//! it is a valid Ogg Opus file (with no audio if nothing came).

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::time::Duration;

use openspeak_client::Forwarded;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::audio::flags::RecordArgs;
use crate::audio::opus_file::{OpusHead, OpusWriter, packet_samples};
use crate::audio::session::AudioSession;
use crate::audio::talker::samples_to_duration;
use crate::common::error::RecordError;
use crate::common::task::{error_chain, interrupted};

/// The TOC byte's stereo flag (RFC 6716, section 3.1).
const TOC_STEREO: u8 = 0x04;

/// What to do with one forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The recorded speaker's Opus packet: write it.
    Write,
    /// Not a valid Opus packet (no duration from its TOC byte): skipped.
    NotOpus,
    /// Another speaker's packet: not this recording's.
    OtherSpeaker,
}

/// The counts a recording keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordTally {
    /// Packets written to the file.
    pub written: u64,
    /// Their total duration, 48 kHz samples.
    pub samples: u64,
    /// Sequence numbers skipped between the recorded speaker's packets:
    /// packets lost on the way (minus any that came late, see `late`).
    pub gaps: u64,
    /// The speaker's packets that came after one with a later sequence
    /// number (written where they arrived).
    pub late: u64,
    /// Payloads that were not Opus, skipped: the recorded speaker's, and
    /// anyone's before a speaker was chosen.
    pub not_opus: u64,
    /// Packets of other speakers, ignored.
    pub other_speakers: u64,
}

/// One speaker's stream as it arrives.
#[derive(Debug)]
pub(crate) struct Recording {
    /// The speaker recorded: `--speaker`, else the first one heard with an
    /// Opus packet; `None` until then.
    speaker: Option<u32>,
    /// The speaker's latest sequence number, for the gaps.
    last_sequence: Option<u32>,
    /// When the speaker's last packet came, for the idle rule.
    last_arrival: Option<Instant>,
    tally: RecordTally,
}

impl Recording {
    /// A recording of `speaker`, or of the first speaker heard.
    pub fn new(speaker: Option<u32>) -> Self {
        Self {
            speaker,
            last_sequence: None,
            last_arrival: None,
            tally: RecordTally::default(),
        }
    }

    /// Judges `packet`, which arrived at `now`, and counts it.
    pub fn handle(&mut self, now: Instant, packet: &Forwarded) -> Verdict {
        let samples = packet_samples(&packet.payload);
        match self.speaker {
            Some(speaker) if speaker != packet.speaker => {
                self.tally.other_speakers += 1;
                return Verdict::OtherSpeaker;
            }
            Some(_) => {}
            // A stream that is not Opus (a load test's probes, say) is not
            // "the first speaker": wait for one that is.
            None if samples.is_none() => {
                self.tally.not_opus += 1;
                return Verdict::NotOpus;
            }
            None => self.speaker = Some(packet.speaker),
        }
        self.last_arrival = Some(now);
        match self.last_sequence {
            None => self.last_sequence = Some(packet.sequence),
            Some(last) => {
                // Serial number arithmetic (docs/PROTOCOL.md): sequences wrap.
                let ahead = packet.sequence.wrapping_sub(last) as i32;
                if ahead > 0 {
                    self.tally.gaps += u64::from(ahead.unsigned_abs() - 1);
                    self.last_sequence = Some(packet.sequence);
                } else {
                    self.tally.late += 1;
                }
            }
        }
        let Some(samples) = samples else {
            self.tally.not_opus += 1;
            return Verdict::NotOpus;
        };
        self.tally.written += 1;
        self.tally.samples += u64::from(samples);
        Verdict::Write
    }

    /// When the recording is over for want of packets: `idle` after the
    /// speaker's last one; `None` before its first.
    pub fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        self.last_arrival.map(|t| t + idle)
    }

    /// The speaker recorded, once heard.
    pub fn speaker(&self) -> Option<u32> {
        self.last_arrival.and(self.speaker)
    }

    /// The counts so far.
    pub fn tally(&self) -> RecordTally {
        self.tally
    }
}

/// Why a recording stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordStop {
    /// The speaker was silent for `--idle-ms`.
    Idle,
    /// `--max-seconds` ran out.
    MaxDuration,
    /// Ctrl-C.
    Interrupted,
    /// The voice connection ended; why.
    VoiceLost(String),
    /// The server ended the session; why.
    SessionEnded(String),
}

/// Where `record` listens, once it is in voice.
#[derive(Debug, Clone)]
pub struct RecordStarted {
    /// Its own session id.
    pub session_id: u32,
    /// The channel's id.
    pub channel_id: String,
    /// The channel's name.
    pub channel_name: String,
}

/// What `record` did.
#[derive(Debug, Clone)]
pub struct RecordReport {
    /// The file written.
    pub out: PathBuf,
    /// The channel's id.
    pub channel_id: String,
    /// The speaker recorded; `None` if it (or, without `--speaker`,
    /// anyone) never spoke.
    pub speaker: Option<u32>,
    /// The counts.
    pub tally: RecordTally,
    /// The duration of the packets written.
    pub audio: Duration,
    /// Why it stopped.
    pub stop: RecordStop,
}

impl RecordReport {
    /// One line for people.
    pub fn summary(&self) -> String {
        let t = &self.tally;
        let stop = match &self.stop {
            RecordStop::Idle => "the speaker went quiet".to_owned(),
            RecordStop::MaxDuration => "--max-seconds ran out".to_owned(),
            RecordStop::Interrupted => "interrupted".to_owned(),
            RecordStop::VoiceLost(why) => format!("the voice connection was lost: {why}"),
            RecordStop::SessionEnded(why) => format!("the session ended: {why}"),
        };
        let Some(speaker) = self.speaker else {
            return format!(
                "record: nobody spoke; {} has no audio; stopped: {stop}",
                self.out.display()
            );
        };
        format!(
            "record: wrote {} packets ({:.2} s of audio) of speaker {speaker} to {}; {} lost \
             (sequence gaps), {} late, {} not Opus, {} from other speakers; stopped: {stop}",
            t.written,
            self.audio.as_secs_f64(),
            self.out.display(),
            t.gaps,
            t.late,
            t.not_opus,
            t.other_speakers,
        )
    }
}

/// Runs `record`: creates `--out` (before connecting, so that a bad path
/// costs no session), gets into voice in the channel, calls `ready`, and
/// writes the speaker's packets until a stop; then finishes the file,
/// closes voice and ends the session.
pub async fn run_record(
    args: &RecordArgs,
    ready: impl FnOnce(&RecordStarted),
    mut interrupt: watch::Receiver<bool>,
) -> Result<RecordReport, RecordError> {
    let write_error = |source| RecordError::Write {
        path: args.out.clone(),
        source,
    };
    let file = File::create(&args.out).map_err(write_error)?;
    let entered = AudioSession::enter(&args.server, &args.name, &args.channel, args.create).await;
    let mut audio = match entered {
        Ok(audio) => audio,
        Err(e) => {
            // Even so, no half-made file: an empty stream is a valid one.
            // The join's error is the one to report.
            let _ = Output::new(file).finish();
            return Err(e.into());
        }
    };
    let channel_id = audio.channel.id.clone();
    ready(&RecordStarted {
        session_id: audio.session.id(),
        channel_id: channel_id.clone(),
        channel_name: audio.channel.name.clone(),
    });
    let mut out = Output::new(file);
    let mut recording = Recording::new(args.speaker);
    let stop = listen(args, &mut audio, &mut recording, &mut out, &mut interrupt).await;
    audio.leave().await;
    // After a write error too: what was written stays a playable file if
    // the disk lets it.
    let finished = out.finish();
    let stop = stop.map_err(write_error)?;
    finished.map_err(write_error)?;
    let tally = recording.tally();
    Ok(RecordReport {
        out: args.out.clone(),
        channel_id,
        speaker: recording.speaker(),
        audio: samples_to_duration(tally.samples),
        tally,
        stop,
    })
}

/// The output file: its headers wait for the first packet, whose TOC byte
/// says mono or stereo.
struct Output {
    /// The file, until the headers are written into it.
    file: Option<BufWriter<File>>,
    /// The stream, from the first packet on.
    writer: Option<OpusWriter<BufWriter<File>>>,
}

impl Output {
    fn new(file: File) -> Self {
        Self {
            file: Some(BufWriter::new(file)),
            writer: None,
        }
    }

    fn push(&mut self, packet: &[u8]) -> io::Result<()> {
        let writer = match self.writer.take() {
            Some(writer) => writer,
            None => {
                // Only a failed header write, which ended the recording,
                // leaves neither.
                let file = self
                    .file
                    .take()
                    .ok_or_else(|| io::Error::other("the file is closed"))?;
                let stereo = packet.first().is_some_and(|toc| toc & TOC_STEREO != 0);
                let head = OpusHead {
                    channels: if stereo { 2 } else { 1 },
                    ..OpusHead::mono()
                };
                OpusWriter::new(file, head, rand::random())?
            }
        };
        self.writer.insert(writer).push(packet)
    }

    /// Ends the stream; a file that got no packet gets a mono header and
    /// no audio, still a valid file.
    fn finish(self) -> io::Result<()> {
        match (self.writer, self.file) {
            (Some(writer), _) => writer.finish().map(drop),
            (None, Some(file)) => OpusWriter::new(file, OpusHead::mono(), rand::random())?
                .finish()
                .map(drop),
            (None, None) => Ok(()),
        }
    }
}

/// Receives and writes until a stop; bounded by `--max-seconds`.
async fn listen(
    args: &RecordArgs,
    audio: &mut AudioSession,
    recording: &mut Recording,
    out: &mut Output,
    interrupt: &mut watch::Receiver<bool>,
) -> io::Result<RecordStop> {
    let deadline = Instant::now() + args.max_duration();
    loop {
        let idle_at = recording.idle_deadline(args.idle());
        let (until, reason) = match idle_at {
            Some(at) if at < deadline => (at, RecordStop::Idle),
            _ => (deadline, RecordStop::MaxDuration),
        };
        tokio::select! {
            biased;
            () = interrupted(interrupt) => return Ok(RecordStop::Interrupted),
            () = sleep_until(until) => return Ok(reason),
            packet = audio.voice.recv() => match packet {
                Ok(packet) => {
                    if recording.handle(Instant::now(), &packet) == Verdict::Write {
                        out.push(&packet.payload)?;
                    }
                }
                Err(e) => return Ok(RecordStop::VoiceLost(error_chain(&e))),
            },
            event = audio.session.next_event() => {
                // Presence and speaking events need no answer here.
                if let Err(e) = event {
                    return Ok(RecordStop::SessionEnded(error_chain(&e)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn packet(speaker: u32, sequence: u32, payload: &[u8]) -> Forwarded {
        Forwarded {
            speaker,
            sequence,
            timestamp: sequence.wrapping_mul(20),
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// A 20 ms CELT fullband mono frame.
    const OPUS: &[u8] = &[31 << 3, 1, 2, 3];
    /// Not Opus: code 3 with a frame count of 0.
    const PROBE: &[u8] = &[0xB3, 0];

    #[test]
    fn the_first_speaker_with_opus_is_recorded_and_others_ignored() {
        let t0 = Instant::now();
        let mut r = Recording::new(None);
        assert_eq!(r.idle_deadline(Duration::from_secs(1)), None);
        assert_eq!(r.handle(t0, &packet(9, 0, PROBE)), Verdict::NotOpus);
        assert_eq!(r.speaker(), None, "a stream that is not Opus is not chosen");
        assert_eq!(r.handle(t0, &packet(4, 100, OPUS)), Verdict::Write);
        assert_eq!(r.speaker(), Some(4));
        assert_eq!(r.handle(t0, &packet(9, 1, OPUS)), Verdict::OtherSpeaker);
        assert_eq!(r.handle(t0, &packet(4, 101, PROBE)), Verdict::NotOpus);
        let t = r.tally();
        assert_eq!(
            (t.written, t.samples, t.not_opus, t.other_speakers),
            (1, 960, 2, 1)
        );
    }

    #[test]
    fn a_chosen_speaker_is_the_only_one_recorded() {
        let t0 = Instant::now();
        let mut r = Recording::new(Some(7));
        assert_eq!(r.handle(t0, &packet(3, 0, OPUS)), Verdict::OtherSpeaker);
        assert_eq!(r.idle_deadline(Duration::from_secs(1)), None);
        assert_eq!(r.speaker(), None, "not heard yet");
        assert_eq!(r.handle(t0, &packet(7, 0, OPUS)), Verdict::Write);
        assert_eq!(r.speaker(), Some(7));
    }

    #[test]
    fn gaps_and_late_packets_are_counted_across_the_wrap() {
        let t0 = Instant::now();
        let mut r = Recording::new(None);
        for sequence in [u32::MAX - 1, u32::MAX, 2, 1, 3, 3] {
            assert_eq!(r.handle(t0, &packet(5, sequence, OPUS)), Verdict::Write);
        }
        let t = r.tally();
        // MAX-1, MAX, (0 and 1 missing) 2, then 1 late, 3, 3 again.
        assert_eq!((t.written, t.gaps, t.late), (6, 2, 2));
    }

    #[test]
    fn the_idle_deadline_follows_the_speaker_s_last_packet() {
        let t0 = Instant::now();
        let idle = Duration::from_millis(1500);
        let mut r = Recording::new(None);
        r.handle(t0, &packet(5, 0, OPUS));
        assert_eq!(r.idle_deadline(idle), Some(t0 + idle));
        let t1 = t0 + Duration::from_millis(20);
        r.handle(t1, &packet(8, 0, OPUS));
        assert_eq!(
            r.idle_deadline(idle),
            Some(t0 + idle),
            "others do not count"
        );
        r.handle(t1, &packet(5, 1, OPUS));
        assert_eq!(r.idle_deadline(idle), Some(t1 + idle));
    }

    #[test]
    fn the_output_is_a_valid_file_with_or_without_packets() {
        let dir = tempfile::tempdir().unwrap();
        for (name, packets) in [
            ("none.opus", vec![]),
            ("stereo.opus", vec![[31 << 3 | 4, 9]]),
        ] {
            let path = dir.path().join(name);
            let mut out = Output::new(File::create(&path).unwrap());
            for p in &packets {
                out.push(p).unwrap();
            }
            out.finish().unwrap();
            let stream = crate::audio::opus_file::read_file(&path).unwrap();
            assert_eq!(stream.head.channels, if packets.is_empty() { 1 } else { 2 });
            assert_eq!(stream.packets.len(), packets.len());
        }
    }
}
