//! Real audio end to end: a sentence that `espeak-ng` speaks and `opusenc`
//! encodes goes through `talk`, both planes (in process, on `127.0.0.1`)
//! and `record`, and comes out the same: the same Opus packets, byte for
//! byte and in order, and, decoded by `opusdec`, the same length. Also: a
//! bad file, a bad path, an unknown channel and Ctrl-C give clear errors
//! or a valid file, never a panic.
//!
//! The first test needs `espeak-ng` and `opus-tools` (Debian packages of
//! those names). Without them it says `SKIPPED` and passes on a
//! developer's machine, and fails under CI (`CI` set), where `.ci/run`
//! installs them.
//!
//! Every wait is bounded: the external programs by [`TOOL_TIMEOUT`], the
//! rest by `support::WAIT`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use openspeak_client::Client;
use openspeak_loadtest::{
    JoinVoiceError, OpusFileError, OpusHead, OpusWriter, RecordArgs, RecordError, RecordStop,
    ServerFlags, TalkArgs, TalkError, read_opus_file, run_record, run_talk,
};
use support::{System, no_interrupt, start_system, within};
use tokio::process::Command;
use tokio::sync::{oneshot, watch};

/// Bound on one run of an external program.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The programs the end-to-end test needs.
const TOOLS: [&str; 3] = ["espeak-ng", "opusenc", "opusdec"];

/// A few seconds of speech.
const SENTENCE: &str = "OpenSpeak carries this sentence from the talker, through the voice \
                        router, to the recorder, one packet at a time.";

/// One 20 ms frame, the most the two decodings may differ by: the
/// recording cannot know how much of the last frame the encoder padded.
const FRAME: Duration = Duration::from_millis(20);

/// Whether every program in [`TOOLS`] runs here. Under CI a missing one is
/// a failure (the pipeline must install it); elsewhere the test is skipped
/// with a line saying so.
async fn tools_installed() -> bool {
    let mut missing = Vec::new();
    for tool in TOOLS {
        let probe = Command::new(tool)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        // Only "cannot start it" means missing; a tool that starts but
        // misbehaves fails the test where it is used.
        if let Ok(Err(_)) = tokio::time::timeout(TOOL_TIMEOUT, probe).await {
            missing.push(tool);
        }
    }
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join(", ");
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing} not installed: .ci/run should have installed them \
         (apt-get install -y espeak-ng opus-tools)"
    );
    eprintln!(
        "SKIPPED: real audio end to end: {missing} not installed \
         (apt-get install espeak-ng opus-tools)"
    );
    false
}

/// Runs `program` with `args`, bounded, and panics with its output unless
/// it succeeds.
async fn run(program: &str, args: &[&str]) {
    let output = tokio::time::timeout(
        TOOL_TIMEOUT,
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{program} did not finish within {TOOL_TIMEOUT:?}"))
    .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .expect("the temporary directory's path is UTF-8")
}

/// The duration of the PCM in a WAV file: data size / (channels x bytes
/// per sample x rate), from its `fmt ` and `data` chunks.
fn wav_duration(path: &Path) -> Duration {
    let bytes = std::fs::read(path).expect("the WAV file reads");
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{} is not a WAV file",
        path.display()
    );
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let (mut format, mut at) = (None, 12);
    // One step per chunk, each at least 8 bytes: bounded by the file.
    while at + 8 <= bytes.len() {
        let (id, size) = (&bytes[at..at + 4], u32_at(at + 4) as usize);
        let body = at + 8;
        if id == b"fmt " {
            // channels, rate, and bits per sample.
            format = Some((u16_at(body + 2), u32_at(body + 4), u16_at(body + 14)));
        } else if id == b"data" {
            let (channels, rate, bits) = format.expect("`fmt ` comes before `data`");
            // A writer that could not seek back leaves the size unknown
            // (0 or all ones); the data then runs to the end of the file.
            let size = size.min(bytes.len() - body);
            let frame = u64::from(channels) * u64::from(bits / 8);
            return Duration::from_secs_f64(size as f64 / (frame as f64 * f64::from(rate)));
        }
        at = body + size + size % 2;
    }
    panic!("{} has no data chunk", path.display());
}

fn talk_args(system: &System, file: &Path, channel: &str) -> TalkArgs {
    TalkArgs {
        server: ServerFlags::new(&system.addr.to_string(), &system.admin_token),
        file: file.to_owned(),
        channel: channel.to_owned(),
        name: "talker".into(),
    }
}

fn record_args(system: &System, out: &Path, channel: &str) -> RecordArgs {
    RecordArgs {
        server: ServerFlags::new(&system.addr.to_string(), &system.admin_token),
        channel: channel.to_owned(),
        create: false,
        out: out.to_owned(),
        speaker: None,
        idle_ms: 1500,
        max_seconds: 60,
        name: "listener".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoken_sentence_comes_out_of_the_data_plane_unchanged() {
    if !tools_installed().await {
        return;
    }
    within(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = |name: &str| dir.path().join(name);
        let (wav, speech, heard) = (file("speech.wav"), file("speech.opus"), file("heard.opus"));
        run("espeak-ng", &["-w", path_str(&wav), SENTENCE]).await;
        run(
            "opusenc",
            &[
                "--quiet",
                "--framesize",
                "20",
                path_str(&wav),
                path_str(&speech),
            ],
        )
        .await;

        let system = start_system().await;
        let admin = Client::connect(&format!("http://{}", system.addr), &system.admin_token)
            .await
            .expect("the admin connects");
        let channel = admin
            .create_channel("Radio check")
            .await
            .expect("the channel is created");

        // The recorder finds the channel by name, the talker by id.
        let (in_voice, recording) = oneshot::channel();
        let record = record_args(&system, &heard, "Radio check");
        let recorder = tokio::spawn(async move {
            run_record(
                &record,
                |_| {
                    let _ = in_voice.send(());
                },
                no_interrupt(),
            )
            .await
        });
        recording.await.expect("record gets into voice");

        let started = Instant::now();
        let talk = run_talk(
            &talk_args(&system, &speech, &channel.id),
            |_| {},
            no_interrupt(),
        )
        .await
        .expect("talk sends the file");
        let talk_time = started.elapsed();
        let record = recorder
            .await
            .expect("the record task did not panic")
            .expect("record writes the file");

        let sent = read_opus_file(&speech).expect("the sent file reads");
        let got = read_opus_file(&heard).expect("the recording is a valid Ogg Opus file");
        let summary = format!("{}\n{}", talk.summary(), record.summary());
        eprintln!("{summary}");

        // Sent at its own pace: no faster than the audio lasts.
        assert_eq!(talk.packets_sent, sent.packets.len(), "{summary}");
        assert!(!talk.interrupted);
        assert!(
            talk.audio > Duration::from_secs(2),
            "a few seconds: {summary}"
        );
        assert!(talk_time + FRAME >= talk.audio, "{talk_time:?}: {summary}");

        // (a) A clean loopback: the very packets, in order.
        assert_eq!(record.stop, RecordStop::Idle, "{summary}");
        assert_eq!(record.speaker, Some(talk.session_id), "{summary}");
        let tally = record.tally;
        assert_eq!(
            (tally.gaps, tally.late, tally.not_opus, tally.other_speakers),
            (0, 0, 0, 0),
            "{summary}"
        );
        // The first difference says what went wrong: a packet missing at
        // the start or the end, or changed bytes.
        let differs = sent
            .packets
            .iter()
            .zip(&got.packets)
            .position(|(a, b)| a != b)
            .or((got.packets.len() != sent.packets.len())
                .then(|| got.packets.len().min(sent.packets.len())));
        assert_eq!(
            differs,
            None,
            "recorded {} of {} packets; the first difference is at that index\n{summary}",
            got.packets.len(),
            sent.packets.len()
        );
        assert_eq!(tally.written as usize, sent.packets.len(), "{summary}");
        assert_eq!(got.head.channels, sent.head.channels);

        // (b) Both decode, to the same length within one frame.
        let (sent_wav, heard_wav) = (file("sent.wav"), file("heard.wav"));
        run(
            "opusdec",
            &["--quiet", path_str(&speech), path_str(&sent_wav)],
        )
        .await;
        run(
            "opusdec",
            &["--quiet", path_str(&heard), path_str(&heard_wav)],
        )
        .await;
        let (a, b) = (wav_duration(&sent_wav), wav_duration(&heard_wav));
        eprintln!("decoded: sent {a:?}, recorded {b:?}");
        assert!(a > Duration::from_secs(2), "{a:?}");
        assert!(a.abs_diff(b) <= FRAME, "sent {a:?}, recorded {b:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_paths_and_channels_are_clear_errors_and_ctrl_c_leaves_a_valid_file() {
    within(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = |name: &str| dir.path().join(name);

        // Files are checked before any connection, so nothing needs to
        // listen at this address.
        let talk_to = |path: PathBuf| TalkArgs {
            server: ServerFlags::new("127.0.0.1:9", "t"),
            file: path,
            channel: "Lobby".into(),
            name: "talker".into(),
        };
        let missing = run_talk(&talk_to(file("missing.opus")), |_| {}, no_interrupt()).await;
        assert!(
            matches!(missing, Err(TalkError::File(OpusFileError::Io { .. }))),
            "{missing:?}"
        );
        std::fs::write(file("notes.txt"), "not audio").expect("a text file");
        let text = run_talk(&talk_to(file("notes.txt")), |_| {}, no_interrupt()).await;
        match text {
            Err(e @ TalkError::File(OpusFileError::Ogg { .. })) => {
                assert!(e.to_string().contains("not an Ogg file"), "{e}");
            }
            other => panic!("{other:?}"),
        }

        let system = start_system().await;
        let mut record = record_args(&system, &file("no/such/dir/heard.opus"), "Lobby");
        match run_record(&record, |_| {}, no_interrupt()).await {
            Err(RecordError::Write { .. }) => {}
            other => panic!("{other:?}"),
        }

        // A channel nobody made: named in the error, and the file is
        // still a valid one.
        record.channel = "Nowhere".into();
        record.out = file("nobody.opus");
        match run_record(&record, |_| {}, no_interrupt()).await {
            Err(RecordError::JoinVoice(JoinVoiceError::NoSuchChannel { given, .. })) => {
                assert_eq!(given, "Nowhere");
            }
            other => panic!("{other:?}"),
        }
        let empty = read_opus_file(&file("nobody.opus")).expect("a valid Ogg Opus file");
        assert!(empty.packets.is_empty());

        // A real file, to a channel nobody made.
        let tone = file("tone.opus");
        let mut writer = OpusWriter::create(&tone, OpusHead::mono()).expect("the file is made");
        for _ in 0..10 {
            writer.push(&[31 << 3, 0xAA, 0x55]).expect("a 20 ms frame");
        }
        writer.finish().expect("the file is finished");
        match run_talk(
            &talk_args(&system, &tone, "Nowhere"),
            |_| {},
            no_interrupt(),
        )
        .await
        {
            Err(e @ TalkError::JoinVoice(JoinVoiceError::NoSuchChannel { .. })) => {
                assert!(e.to_string().contains("`Lobby`"), "names the channels: {e}");
            }
            other => panic!("{other:?}"),
        }

        // --create makes the channel; Ctrl-C before anyone speaks still
        // leaves a valid (empty) file.
        record.out = file("quiet.opus");
        record.channel = "Made by record".into();
        record.create = true;
        let (ctrl_c, interrupt) = watch::channel(false);
        let (in_voice, recording) = oneshot::channel();
        let recorder = tokio::spawn(async move {
            run_record(
                &record,
                |s| {
                    let _ = in_voice.send(s.clone());
                },
                interrupt,
            )
            .await
        });
        let started = recording.await.expect("record gets into voice");
        assert_eq!(started.channel_name, "Made by record");
        ctrl_c.send(true).expect("the recorder listens");
        let report = recorder
            .await
            .expect("the record task did not panic")
            .expect("record finishes");
        assert_eq!(report.stop, RecordStop::Interrupted);
        assert_eq!((report.speaker, report.tally.written), (None, 0));
        let quiet = read_opus_file(&file("quiet.opus")).expect("a valid Ogg Opus file");
        assert!(quiet.packets.is_empty());
    })
    .await;
}
