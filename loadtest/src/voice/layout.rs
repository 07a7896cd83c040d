//! Who is where in a voice run: which channel each client joins, which
//! clients speak, which ones churn. Pure arithmetic on client indices, so
//! that the drivers and the tally agree without sharing state.
//!
//! Client `i` joins channel `i % C` (as in the `sessions` scenario), so its
//! rank in the channel is `i / C`; the first `speakers` ranks of each
//! channel speak, and with churn the others come and go.

/// The shape of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Clients in the run.
    pub clients: u32,
    /// Channels they are spread over (`1..=clients`).
    pub channels: u32,
    /// Speakers per channel (`1..=clients / channels`).
    pub speakers: u32,
    /// Whether the listeners that do not speak leave and rejoin.
    pub churn: bool,
}

impl Layout {
    /// The channel client `i` joins (an index into the run's channels).
    pub fn channel_of(&self, i: u32) -> u32 {
        i % self.channels
    }

    /// Whether client `i` speaks.
    pub fn is_speaker(&self, i: u32) -> bool {
        i / self.channels < self.speakers
    }

    /// Whether client `i` leaves and rejoins during the run.
    pub fn churns(&self, i: u32) -> bool {
        self.churn && !self.is_speaker(i)
    }

    /// The speakers of channel `c`, in rank order.
    pub fn speakers_of(&self, c: u32) -> impl Iterator<Item = u32> + use<> {
        let (channels, clients) = (self.channels, self.clients);
        (0..self.speakers)
            .map(move |k| c + k * channels)
            .filter(move |&i| i < clients)
    }

    /// The rank of speaker `i` in its channel, when `i` is a speaker.
    pub fn speaker_rank(&self, i: u32) -> Option<u32> {
        (i < self.clients && self.is_speaker(i)).then_some(i / self.channels)
    }

    /// How many clients join channel `c`.
    pub fn members_of(&self, c: u32) -> u32 {
        self.clients / self.channels + u32::from(c < self.clients % self.channels)
    }

    /// The fewest members any channel has.
    pub fn min_members(&self) -> u32 {
        self.clients / self.channels
    }

    /// Deliveries each packet of a speaker calls for when every client is
    /// in voice: every other member of its channel.
    pub fn fanout_of(&self, speaker: u32) -> u32 {
        self.members_of(self.channel_of(speaker)).saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_dealt_over_channels_and_ranks() {
        let l = Layout {
            clients: 11,
            channels: 3,
            speakers: 2,
            churn: true,
        };
        assert_eq!(
            (0..11).map(|i| l.channel_of(i)).collect::<Vec<_>>(),
            [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1]
        );
        assert_eq!(l.speakers_of(0).collect::<Vec<_>>(), [0, 3]);
        assert_eq!(l.speakers_of(2).collect::<Vec<_>>(), [2, 5]);
        assert!(l.is_speaker(5) && !l.is_speaker(6));
        assert!(l.churns(6) && !l.churns(5));
        assert_eq!(
            (0..3).map(|c| l.members_of(c)).collect::<Vec<_>>(),
            [4, 4, 3]
        );
        assert_eq!(l.min_members(), 3);
        assert_eq!(l.fanout_of(0), 3);
        assert_eq!(l.fanout_of(2), 2);
        assert_eq!(l.speaker_rank(3), Some(1));
        assert_eq!(l.speaker_rank(6), None);
        assert_eq!(l.speaker_rank(99), None);
    }

    #[test]
    fn without_churn_nobody_churns() {
        let l = Layout {
            clients: 4,
            channels: 1,
            speakers: 1,
            churn: false,
        };
        assert!((0..4).all(|i| !l.churns(i)));
    }
}
