//! The plain-UDP `ReplayWindow`, driven by counters an attacker picks,
//! against a plain model: a counter is taken at most once, is refused when
//! `SIZE` or more behind the highest taken, and `take` says "newest" exactly
//! when the counter is above every earlier one.
//!
//! The input is a list of 9-byte steps: a u64 counter (its meaning relative
//! to the highest so far is chosen by the step's flag byte, so that the
//! fuzzer reaches the window's edges and the top of the u64 range) and
//! whether to `take` it after a successful `check`.

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use openspeak_voice::udp::ReplayWindow;

fuzz_target!(|data: &[u8]| {
    let mut window = ReplayWindow::default();
    let mut taken: HashSet<u64> = HashSet::new();
    let mut highest: Option<u64> = None;

    for step in data.chunks_exact(9) {
        let flag = step[0];
        let raw = u64::from_le_bytes(step[1..9].try_into().expect("8 bytes"));
        let base = highest.unwrap_or(0);
        let counter = match flag % 4 {
            // Absolute.
            0 => raw,
            // Just behind the highest: around the window's edge.
            1 => base.saturating_sub(raw % 300),
            // Just ahead of the highest.
            2 => base.saturating_add(raw % 300),
            // Near the end of the u64 range.
            _ => u64::MAX - (raw % 300),
        };
        let expected = !taken.contains(&counter)
            && highest.is_none_or(|h| counter > h || h - counter < ReplayWindow::SIZE);
        assert_eq!(
            window.check(counter),
            expected,
            "check({counter}) after {highest:?}"
        );
        if expected && flag & 0x80 == 0 {
            let newest = window.take(counter);
            assert_eq!(newest, highest.is_none_or(|h| counter > h));
            assert!(!window.check(counter), "{counter} taken twice");
            taken.insert(counter);
            highest = Some(highest.map_or(counter, |h| h.max(counter)));
        }
    }
});
