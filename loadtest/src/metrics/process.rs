//! CPU time and peak memory of a process: the server's (`--server-pid`),
//! read from Linux's `/proc`, and the load generator's own, from
//! `getrusage`.
//!
//! These numbers are extras next to the run's own measurements, so nothing
//! here fails the run: a reader returns a [`ProcessStatsError`], and
//! [`UsageProbe`] turns it into a missing (null) number and a warning. The
//! parsing is pure, fixed text in and numbers out, and tested on its own.

use std::fmt::Write as _;
use std::io;
use std::time::Duration;

/// Reading a process's statistics failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessStatsError {
    /// The file is missing (the process is gone, or this is not Linux) or
    /// not readable.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The file does not have the expected field.
    #[error("unexpected contents in {path}")]
    Parse {
        /// The file.
        path: String,
    },
    /// `sysconf(_SC_CLK_TCK)` gave no usable rate, so ticks cannot become
    /// seconds.
    #[error("the clock tick rate is unknown")]
    ClockTicks,
    /// `getrusage` failed, or this platform has none.
    #[error("cannot read this process's CPU time")]
    OwnUsage(#[source] io::Error),
}

/// CPU time (user plus system) that process `pid` has used so far, from
/// `/proc/<pid>/stat`. Its resolution is one clock tick (10 ms at the usual
/// 100 Hz).
pub fn cpu_time(pid: u32) -> Result<Duration, ProcessStatsError> {
    let path = format!("/proc/{pid}/stat");
    let text = read(&path)?;
    let ticks = parse_stat_ticks(&text).ok_or(ProcessStatsError::Parse { path })?;
    let hz = clock_ticks_per_second().ok_or(ProcessStatsError::ClockTicks)?;
    Ok(ticks_to_duration(ticks, hz))
}

/// The most resident memory process `pid` has held in its life so far
/// (`VmHWM` in `/proc/<pid>/status`), in kB.
pub fn peak_rss_kb(pid: u32) -> Result<u64, ProcessStatsError> {
    let path = format!("/proc/{pid}/status");
    let text = read(&path)?;
    parse_vm_hwm_kb(&text).ok_or(ProcessStatsError::Parse { path })
}

/// CPU time (user plus system) this process has used so far.
#[cfg(unix)]
pub fn own_cpu_time() -> Result<Duration, ProcessStatsError> {
    rusage_cpu(libc::RUSAGE_SELF).map_err(ProcessStatsError::OwnUsage)
}

/// CPU time (user plus system) that `who` has used so far: this process
/// (`RUSAGE_SELF`) or, on Linux, the calling thread (`RUSAGE_THREAD`).
#[cfg(unix)]
pub fn rusage_cpu(who: libc::c_int) -> io::Result<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes only into the `rusage` we hand it, which is
    // of the right type and lives across the call.
    let rc = unsafe { libc::getrusage(who, usage.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed is a valid `rusage` (plain integers), and getrusage
    // succeeded, so it is filled in.
    let usage = unsafe { usage.assume_init() };
    Ok(timeval(usage.ru_utime) + timeval(usage.ru_stime))
}

/// CPU time this process has used so far: unknown off Unix.
#[cfg(not(unix))]
pub fn own_cpu_time() -> Result<Duration, ProcessStatsError> {
    Err(ProcessStatsError::OwnUsage(
        io::ErrorKind::Unsupported.into(),
    ))
}

/// CPU samples taken at the start of the measured window, to be subtracted
/// at its end.
#[derive(Debug)]
pub struct UsageProbe {
    /// The server process, when `--server-pid` was given.
    server_pid: Option<u32>,
    /// The server's CPU time at the start (absent when unreadable).
    server_start: Option<Duration>,
    /// This process's CPU time at the start (absent when unreadable).
    own_start: Option<Duration>,
}

/// What [`UsageProbe::finish`] measured over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    /// The load generator's CPU time in the window.
    pub own_cpu: Option<Duration>,
    /// The server's, when `--server-pid` was given.
    pub server: Option<ServerUsage>,
}

/// The server process over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerUsage {
    /// The process.
    pub pid: u32,
    /// CPU time it used in the window.
    pub cpu: Option<Duration>,
    /// Its peak resident memory at the end, kB (over its whole life, not
    /// only the window).
    pub peak_rss_kb: Option<u64>,
}

impl UsageProbe {
    /// Starts the window. Whatever cannot be read is noted in `warnings`
    /// and on stderr.
    pub fn start(server_pid: Option<u32>, warnings: &mut Vec<String>) -> Self {
        let server_start =
            server_pid.and_then(|pid| warn_on_err(cpu_time(pid), "server CPU", warnings));
        let own_start = warn_on_err(own_cpu_time(), "load generator CPU", warnings);
        UsageProbe {
            server_pid,
            server_start,
            own_start,
        }
    }

    /// Ends the window. Whatever cannot be read is noted in `warnings` and
    /// on stderr.
    pub fn finish(self, warnings: &mut Vec<String>) -> Usage {
        let own_end = self
            .own_start
            .and_then(|_| warn_on_err(own_cpu_time(), "load generator CPU", warnings));
        let server = self.server_pid.map(|pid| {
            // Without a start there is no window, so the end is not read.
            let end = self
                .server_start
                .and_then(|_| warn_on_err(cpu_time(pid), "server CPU", warnings));
            ServerUsage {
                pid,
                cpu: since(self.server_start, end),
                peak_rss_kb: warn_on_err(peak_rss_kb(pid), "server peak RSS", warnings),
            }
        });
        Usage {
            own_cpu: since(self.own_start, own_end),
            server,
        }
    }
}

/// `end - start`, when both are known.
fn since(start: Option<Duration>, end: Option<Duration>) -> Option<Duration> {
    Some(end?.saturating_sub(start?))
}

/// The value, or `None` with a warning (pushed and printed) naming `what`.
fn warn_on_err<T>(
    result: Result<T, ProcessStatsError>,
    what: &str,
    warnings: &mut Vec<String>,
) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let mut note = format!("{what} not measured: {e}");
            if let Some(source) = std::error::Error::source(&e) {
                let _ = write!(note, ": {source}");
            }
            eprintln!("warning: {note}");
            warnings.push(note);
            None
        }
    }
}

fn read(path: &str) -> Result<String, ProcessStatsError> {
    std::fs::read_to_string(path).map_err(|source| ProcessStatsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// `utime + stime` in clock ticks, from the text of `/proc/<pid>/stat`.
///
/// The second field is the command name in parentheses, and it may itself
/// hold spaces and parentheses, so the fields are counted from the last
/// `)`: after it come `state` (field 3), ..., `utime` (14), `stime` (15).
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// `VmHWM` in kB, from the text of `/proc/<pid>/status`. Kernel threads
/// have no such line.
pub fn parse_vm_hwm_kb(status: &str) -> Option<u64> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim();
    value.strip_suffix("kB")?.trim_end().parse().ok()
}

fn ticks_to_duration(ticks: u64, hz: u64) -> Duration {
    let nanos = (ticks % hz) * 1_000_000_000 / hz;
    Duration::new(ticks / hz, nanos as u32)
}

/// The kernel's clock tick rate, the unit of `/proc/<pid>/stat` times.
#[cfg(unix)]
fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf reads a system constant and touches none of our
    // memory.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&hz| hz > 0)
}

#[cfg(not(unix))]
fn clock_ticks_per_second() -> Option<u64> {
    None
}

#[cfg(unix)]
fn timeval(t: libc::timeval) -> Duration {
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let micros = u32::try_from(t.tv_usec).unwrap_or(0).min(999_999);
    Duration::new(secs, micros * 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line of /proc/<pid>/stat, utime 1234 and stime 567.
    const STAT: &str = "4242 (openspeak-cont) S 1 4242 4242 0 -1 4194560 2750 0 0 0 \
                        1234 567 0 0 20 0 9 0 123456 1000000 2000 18446744073709551615";

    #[test]
    fn stat_times_are_fields_fourteen_and_fifteen() {
        assert_eq!(parse_stat_ticks(STAT), Some(1234 + 567));
    }

    #[test]
    fn stat_command_names_may_hold_spaces_and_parentheses() {
        let odd = STAT.replace("(openspeak-cont)", "(a) b (c) ) d)");
        assert_eq!(parse_stat_ticks(&odd), Some(1234 + 567));
        let spaced = STAT.replace("(openspeak-cont)", "(x 1 2 3 4 5 6 7 8 9 10 11 12)");
        assert_eq!(parse_stat_ticks(&spaced), Some(1234 + 567));
    }

    #[test]
    fn bad_stat_text_is_none_not_a_panic() {
        assert_eq!(parse_stat_ticks(""), None);
        assert_eq!(parse_stat_ticks("4242 (x) S 1 2 3"), None);
        assert_eq!(
            parse_stat_ticks("4242 x S 1 2 3 4 5 6 7 8 9 10 11 12"),
            None
        );
        let negative = STAT.replace(" 1234 ", " -1 ");
        assert_eq!(parse_stat_ticks(&negative), None);
    }

    #[test]
    fn vm_hwm_is_read_in_kilobytes() {
        let status = "Name:\topenspeak-cont\nVmPeak:\t  999999 kB\n\
                      VmHWM:\t   81236 kB\nVmRSS:\t   70000 kB\n";
        assert_eq!(parse_vm_hwm_kb(status), Some(81_236));
        // Kernel threads have no memory lines.
        assert_eq!(parse_vm_hwm_kb("Name:\tkthreadd\nState:\tS\n"), None);
        assert_eq!(parse_vm_hwm_kb("VmHWM:\t 12 MB\n"), None);
        assert_eq!(parse_vm_hwm_kb("VmHWM:\n"), None);
    }

    #[test]
    fn ticks_become_exact_durations() {
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2_500));
        assert_eq!(ticks_to_duration(1, 1_000), Duration::from_millis(1));
        assert_eq!(ticks_to_duration(0, 100), Duration::ZERO);
    }

    #[test]
    fn a_window_without_both_ends_is_unknown() {
        let s = Some(Duration::from_secs(1));
        assert_eq!(
            since(s, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(since(None, s), None);
        assert_eq!(since(s, None), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_read_through_proc() {
        let pid = std::process::id();
        let cpu = cpu_time(pid).expect("/proc/self/stat is readable");
        let own = own_cpu_time().expect("getrusage works");
        // The two clocks differ in resolution (ticks against µs), not in kind.
        assert!(
            cpu <= own + Duration::from_millis(100),
            "{cpu:?} vs {own:?}"
        );
        assert!(peak_rss_kb(pid).expect("/proc/self/status is readable") > 0);
    }

    #[test]
    fn a_process_that_is_gone_gives_null_fields_and_warnings() {
        // Above any pid_max Linux allows, so never a live process.
        let gone = u32::MAX;
        assert!(matches!(
            cpu_time(gone),
            Err(ProcessStatsError::Read { .. })
        ));
        let mut warnings = Vec::new();
        let usage = UsageProbe::start(Some(gone), &mut warnings).finish(&mut warnings);
        let server = usage.server.expect("asked for");
        assert_eq!(
            (server.pid, server.cpu, server.peak_rss_kb),
            (gone, None, None)
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("/proc/4294967295/stat"),
            "{warnings:?}"
        );
    }
}
