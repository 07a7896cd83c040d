//! Measurements of the server process: the data plane's own counters from
//! its Prometheus `/metrics` text, and CPU time and memory from `/proc` and
//! `getrusage`.

pub mod process;
pub mod scrape;
pub mod text;
