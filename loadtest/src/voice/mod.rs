//! The `voice` scenario: clients in channels get into voice through
//! `OpenVoice` and the data plane, speakers send probe packets through a
//! simulated network, and every listener measures delivery, loss, order and
//! one-way delay.
//!
//! Pure: `probe` (what a payload carries), `impairment` (the simulated
//! network, seeded), `delay_line` and `link`
//! (one direction of it for one client), `talk_pattern` (talk
//! spurts), `delivery` (per-listener tallies and the totals), `layout` (who
//! is in which channel and speaks), `plan` (the settled settings), `report`,
//! `timeline` (the `--timeline` rows, their latency histogram and the soak
//! verdict), `speaker` (one speaker's timing and uplink, in fake time).
//! Drivers:
//! `member` (one client), `run` (the phases), `counters` (the
//! progress line's numbers), `flags` (flags and presets).

pub mod conn;
pub mod counters;
pub mod delay_line;
pub mod delivery;
pub mod flags;
pub mod impairment;
pub mod layout;
pub mod link;
pub mod member;
pub mod plan;
pub mod probe;
pub mod report;
pub mod run;
pub mod speaker;
pub mod talk_pattern;
pub mod timeline;
