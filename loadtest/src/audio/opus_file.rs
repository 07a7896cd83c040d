//! Ogg Opus files (RFC 7845) as streams of Opus packets: read the packets
//! of a file to send them, write received packets into a file that any
//! player or `opusdec` plays. No audio is decoded or encoded here; the Ogg
//! framing comes from the `ogg` crate, and what Opus needs on top of it
//! (the `OpusHead` and `OpusTags` headers, granule positions in 48 kHz
//! samples, each packet's duration from its TOC byte) is this module.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use ogg::reading::{OggReadError, PacketReader};
use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use thiserror::Error;

/// Opus always counts time in 48 kHz samples, whatever the input rate.
pub const SAMPLE_RATE: u32 = 48_000;

/// The longest Opus packet: 120 ms (RFC 6716, section 3.2.5).
const MAX_PACKET_SAMPLES: u32 = 5_760;

/// The encoder delay `opusenc` (libopus) declares; what a recording uses
/// when it cannot know the sender's.
pub const DEFAULT_PRE_SKIP: u16 = 312;

/// Why a file could not be read or written.
#[derive(Debug, Error)]
pub enum OpusFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not an Ogg file, or a damaged one ({reason})")]
    Ogg { path: PathBuf, reason: String },
    #[error("{path}: not an Ogg Opus file (its first packet is not OpusHead)")]
    NotOpus { path: PathBuf },
    #[error("{path}: {what}")]
    Unsupported { path: PathBuf, what: String },
    #[error("{path}: Opus packet {index} is malformed (its TOC byte does not give a duration)")]
    BadPacket { path: PathBuf, index: usize },
}

/// The identification header of an Ogg Opus stream (RFC 7845, 5.1), for
/// channel mapping family 0 (mono or stereo), the only one voice uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    /// 1 or 2.
    pub channels: u8,
    /// Samples (48 kHz) to discard from the start of the decoded audio.
    pub pre_skip: u16,
    /// The original input's sample rate, for information only.
    pub input_sample_rate: u32,
    /// Gain to apply on output, Q7.8 dB.
    pub output_gain: i16,
}

impl OpusHead {
    /// A mono header with libopus' usual delay.
    pub fn mono() -> Self {
        Self {
            channels: 1,
            pre_skip: DEFAULT_PRE_SKIP,
            input_sample_rate: SAMPLE_RATE,
            output_gain: 0,
        }
    }

    fn parse(packet: &[u8]) -> Option<Result<Self, String>> {
        let rest = packet.strip_prefix(b"OpusHead")?;
        let [
            version,
            channels,
            p0,
            p1,
            r0,
            r1,
            r2,
            r3,
            g0,
            g1,
            family,
            ..,
        ] = *rest
        else {
            return Some(Err("its OpusHead header is too short".into()));
        };
        if version >> 4 != 0 {
            return Some(Err(format!("Ogg Opus version {version} is not supported")));
        }
        if family != 0 || !(1..=2).contains(&channels) {
            return Some(Err(format!(
                "{channels} channels with mapping family {family}: only mono and stereo (family 0) are supported"
            )));
        }
        Some(Ok(Self {
            channels,
            pre_skip: u16::from_le_bytes([p0, p1]),
            input_sample_rate: u32::from_le_bytes([r0, r1, r2, r3]),
            output_gain: i16::from_le_bytes([g0, g1]),
        }))
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(19);
        out.extend_from_slice(b"OpusHead");
        out.push(1);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_le_bytes());
        out.extend_from_slice(&self.input_sample_rate.to_le_bytes());
        out.extend_from_slice(&self.output_gain.to_le_bytes());
        out.push(0);
        out
    }
}

/// How many 48 kHz samples an Opus packet decodes to, from its TOC byte
/// and frame count (RFC 6716, section 3.1); `None` for a packet that is
/// empty, malformed, or longer than 120 ms.
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = usize::from(toc >> 3);
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][config % 4],
        12..=15 => [480, 960][config % 2],
        _ => [120, 240, 480, 960][config % 4],
    };
    let frames = match toc & 0b11 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(packet.get(1)? & 0x3f),
    };
    let samples = frames * frame;
    (1..=MAX_PACKET_SAMPLES)
        .contains(&samples)
        .then_some(samples)
}

/// An Ogg Opus file's header and audio packets, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusStream {
    pub head: OpusHead,
    pub packets: Vec<Vec<u8>>,
}

impl OpusStream {
    /// Total duration of the packets, in 48 kHz samples (before pre-skip).
    pub fn samples(&self) -> u64 {
        self.packets
            .iter()
            .map(|p| u64::from(packet_samples(p).unwrap_or(0)))
            .sum()
    }
}

/// Reads the first Opus stream of the Ogg file at `path`; every packet is
/// checked to have a duration, so a sender can pace it.
pub fn read_file(path: &Path) -> Result<OpusStream, OpusFileError> {
    let file = File::open(path).map_err(|source| OpusFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = PacketReader::new(BufReader::new(file));
    let ogg_error = |e: OggReadError| match e {
        OggReadError::ReadError(source) => OpusFileError::Io {
            path: path.to_owned(),
            source,
        },
        other => OpusFileError::Ogg {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    };
    let not_opus = || OpusFileError::NotOpus {
        path: path.to_owned(),
    };
    let first = reader
        .read_packet()
        .map_err(ogg_error)?
        .ok_or_else(not_opus)?;
    let head = OpusHead::parse(&first.data)
        .ok_or_else(not_opus)?
        .map_err(|what| OpusFileError::Unsupported {
            path: path.to_owned(),
            what,
        })?;
    let serial = first.stream_serial();
    let mut packets = Vec::new();
    let mut seen_tags = false;
    while let Some(packet) = reader.read_packet().map_err(ogg_error)? {
        if packet.stream_serial() != serial {
            continue;
        }
        if !seen_tags {
            // The comment header is the stream's second packet.
            seen_tags = true;
            continue;
        }
        if packet_samples(&packet.data).is_none() {
            return Err(OpusFileError::BadPacket {
                path: path.to_owned(),
                index: packets.len(),
            });
        }
        let last = packet.last_in_stream();
        packets.push(packet.data);
        if last {
            break;
        }
    }
    Ok(OpusStream { head, packets })
}

/// Writes Opus packets into an Ogg Opus file as they come, with the
/// granule positions a player needs to know the duration.
pub struct OpusWriter<W: Write> {
    writer: PacketWriter<'static, W>,
    serial: u32,
    /// Samples of the packets written so far: the granule position of the
    /// last one. It counts decoded samples, the pre-skip's among them
    /// (RFC 7845, section 4), so it starts at 0, as `opusenc`'s does; a
    /// player plays it minus the pre-skip.
    granule: u64,
    /// The packet not yet written, with how to end it and its granule: the
    /// last packet must carry the end-of-stream flag, which is only known
    /// at `finish`.
    pending: Option<(Vec<u8>, PacketWriteEndInfo, u64)>,
}

impl OpusWriter<BufWriter<File>> {
    /// Creates (or truncates) `path` and writes the headers.
    pub fn create(path: &Path, head: OpusHead) -> Result<Self, OpusFileError> {
        let file = File::create(path).map_err(|source| OpusFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        OpusWriter::new(BufWriter::new(file), head, rand::random()).map_err(|source| {
            OpusFileError::Io {
                path: path.to_owned(),
                source,
            }
        })
    }
}

impl<W: Write> OpusWriter<W> {
    /// Writes the two header pages to `out`, with stream serial `serial`.
    pub fn new(out: W, head: OpusHead, serial: u32) -> io::Result<Self> {
        let mut writer = PacketWriter::new(out);
        writer.write_packet(head.encode(), serial, PacketWriteEndInfo::EndPage, 0)?;
        let vendor = concat!("openspeak-loadtest ", env!("CARGO_PKG_VERSION"));
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes());
        Ok(Self {
            writer,
            serial,
            granule: 0,
            // The tags page is held back so that a stream with no audio
            // can still be ended on it.
            pending: Some((tags, PacketWriteEndInfo::EndPage, 0)),
        })
    }

    /// Appends one Opus packet. Packets without a valid TOC are refused
    /// (`InvalidInput`): their duration is unknown.
    pub fn push(&mut self, packet: &[u8]) -> io::Result<()> {
        let samples = packet_samples(packet)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an Opus packet"))?;
        self.flush_pending(None)?;
        self.granule += u64::from(samples);
        self.pending = Some((
            packet.to_vec(),
            PacketWriteEndInfo::NormalPacket,
            self.granule,
        ));
        Ok(())
    }

    /// Ends the stream and returns the writer, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_pending(Some(PacketWriteEndInfo::EndStream))?;
        let mut out = self.writer.into_inner();
        out.flush()?;
        Ok(out)
    }

    fn flush_pending(&mut self, end: Option<PacketWriteEndInfo>) -> io::Result<()> {
        if let Some((data, info, granule)) = self.pending.take() {
            self.writer.write_packet(
                Cow::Owned(data),
                self.serial,
                end.unwrap_or(info),
                granule,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_bytes_give_durations() {
        // config 1 (SILK NB 20 ms), one frame.
        assert_eq!(packet_samples(&[1 << 3]), Some(960));
        // config 31 (CELT FB 20 ms), two frames (code 1).
        assert_eq!(packet_samples(&[31 << 3 | 1, 0]), Some(1920));
        // config 16 (CELT NB 2.5 ms), code 3 with 6 frames.
        assert_eq!(packet_samples(&[16 << 3 | 3, 6]), Some(720));
        // config 13 (hybrid SWB 20 ms).
        assert_eq!(packet_samples(&[13 << 3]), Some(960));
        // Code 3 without its count byte, zero frames, over 120 ms, empty.
        assert_eq!(packet_samples(&[31 << 3 | 3]), None);
        assert_eq!(packet_samples(&[31 << 3 | 3, 0]), None);
        assert_eq!(packet_samples(&[3 << 3 | 3, 3]), None);
        assert_eq!(packet_samples(&[]), None);
    }

    #[test]
    fn a_written_stream_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.opus");
        let packets: Vec<Vec<u8>> = (0..300u32)
            .map(|i| {
                let mut p = vec![31 << 3];
                p.extend((0..(i % 90 + 1)).map(|b| (b + i) as u8));
                p
            })
            .collect();
        let head = OpusHead {
            channels: 2,
            pre_skip: 100,
            input_sample_rate: 16_000,
            output_gain: -3,
        };
        let mut writer = OpusWriter::create(&path, head).unwrap();
        for p in &packets {
            writer.push(p).unwrap();
        }
        writer.finish().unwrap();
        let stream = read_file(&path).unwrap();
        assert_eq!(stream.head, head);
        assert_eq!(stream.packets, packets);
        assert_eq!(stream.samples(), 300 * 960);

        // The last granule position counts every decoded sample, the
        // pre-skip's among them, as `opusenc` writes it (RFC 7845, 4):
        // players then play it minus the pre-skip, not more.
        let mut reader = PacketReader::new(BufReader::new(File::open(&path).unwrap()));
        let mut last = None;
        while let Some(packet) = reader.read_packet().unwrap() {
            last = Some(packet.absgp_page());
        }
        assert_eq!(last, Some(300 * 960));
    }

    #[test]
    fn an_empty_stream_is_still_a_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.opus");
        OpusWriter::create(&path, OpusHead::mono())
            .unwrap()
            .finish()
            .unwrap();
        let stream = read_file(&path).unwrap();
        assert_eq!(stream.head, OpusHead::mono());
        assert!(stream.packets.is_empty());
    }

    #[test]
    fn other_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("x.txt");
        std::fs::write(&text, b"hello, not ogg at all").unwrap();
        let e = read_file(&text).unwrap_err();
        assert!(matches!(e, OpusFileError::Ogg { .. }), "{e}");
        let missing = dir.path().join("missing.opus");
        assert!(matches!(
            read_file(&missing).unwrap_err(),
            OpusFileError::Io { .. }
        ));
        let mut writer = OpusWriter::new(Vec::new(), OpusHead::mono(), 1).unwrap();
        assert_eq!(
            writer.push(&[]).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
