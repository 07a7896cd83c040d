//! The flags of `talk` and `record`, the two real-audio subcommands, as
//! clap parses them.
//!
//! Like the scenarios' flags they live in the library, so that tests build
//! the values without a command line and `main.rs` stays a parser.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::common::flags::ServerFlags;

/// `openspeak-loadtest talk`: one client streams an Ogg Opus file into a
/// channel at the file's own pace.
#[derive(Debug, Clone, Args)]
pub struct TalkArgs {
    #[command(flatten)]
    pub server: ServerFlags,

    /// The Ogg Opus file to send (`opusenc --framesize 20` makes one).
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,

    /// The channel to talk in: its id, or else its exact name.
    #[arg(long, value_name = "ID_OR_NAME", value_parser = parse_channel)]
    pub channel: String,

    /// The session's display name.
    #[arg(long, value_name = "NAME", default_value = "talker", value_parser = parse_name)]
    pub name: String,
}

/// `openspeak-loadtest record`: one client writes what one speaker says in
/// a channel into an Ogg Opus file.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub server: ServerFlags,

    /// The channel to listen in: its id, or else its exact name.
    #[arg(long, value_name = "ID_OR_NAME", value_parser = parse_channel)]
    pub channel: String,

    /// Create a channel of that name when none has this id or name (needs
    /// an admin token).
    #[arg(long)]
    pub create: bool,

    /// Where to write the recording (Ogg Opus); replaced if it exists.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Record this session's voice [default: the first speaker heard].
    #[arg(long, value_name = "SESSION_ID",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub speaker: Option<u32>,

    /// Stop when the speaker has been silent this long, after its first
    /// packet.
    #[arg(long, value_name = "MS", default_value_t = 1500,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub idle_ms: u64,

    /// Stop after this long in voice, whatever happens.
    #[arg(long, value_name = "SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub max_seconds: u64,

    /// The session's display name.
    #[arg(long, value_name = "NAME", default_value = "listener", value_parser = parse_name)]
    pub name: String,
}

impl RecordArgs {
    /// `--idle-ms` as a duration.
    pub fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms)
    }

    /// `--max-seconds` as a duration.
    pub fn max_duration(&self) -> Duration {
        Duration::from_secs(self.max_seconds)
    }
}

fn parse_channel(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("give a channel id or name".into());
    }
    // Names are matched exactly, spaces included.
    Ok(s.to_owned())
}

fn parse_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 64 {
        return Err("1 to 64 characters".into());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::flags::assert_refused;
    use clap::Parser;

    #[derive(Debug, Parser)]
    enum Cli {
        Talk(TalkArgs),
        Record(RecordArgs),
    }

    fn parse(argv: &[&str]) -> Result<Cli, clap::Error> {
        let mut full = vec!["x"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full)
    }

    #[test]
    fn talk_takes_a_file_a_channel_and_defaults_the_name() {
        let Ok(Cli::Talk(a)) = parse(&[
            "talk",
            "--addr",
            "http://127.0.0.1:50051",
            "--token",
            "t0k",
            "--file",
            "speech.opus",
            "--channel",
            "Radio check",
        ]) else {
            panic!("talk parses");
        };
        assert_eq!(a.server.addr, "127.0.0.1:50051");
        assert_eq!(a.server.uri(), "http://127.0.0.1:50051");
        assert_eq!(a.channel, "Radio check");
        assert_eq!(a.name, "talker");
        assert_eq!(a.file, PathBuf::from("speech.opus"));
    }

    #[test]
    fn record_has_defaults_and_refuses_nonsense() {
        let base = [
            "record",
            "--addr",
            "127.0.0.1:1",
            "--token",
            "t",
            "--channel",
            "c",
            "--out",
            "o.opus",
        ];
        let Ok(Cli::Record(a)) = parse(&base) else {
            panic!("record parses");
        };
        assert_eq!(
            (a.idle(), a.max_duration()),
            (Duration::from_millis(1500), Duration::from_secs(600))
        );
        assert_eq!(
            (a.speaker, a.create, a.name.as_str()),
            (None, false, "listener")
        );
        assert_refused(
            parse,
            &base,
            &[
                &["--speaker", "0"],
                &["--speaker", "someone"],
                &["--idle-ms", "0"],
                &["--max-seconds", "0"],
                &["--name", "  "],
            ],
        );
        assert!(
            parse(&[
                "record",
                "--addr",
                "127.0.0.1:1",
                "--token",
                "t",
                "--out",
                "o"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "talk",
                "--addr",
                "127.0.0.1:1",
                "--token",
                "t",
                "--file",
                "f",
                "--channel",
                " "
            ])
            .is_err()
        );
    }
}
