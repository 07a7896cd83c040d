//! The attached data planes and the placement of channels on them.
//!
//! A channel is placed on one data plane the first time one of its sessions
//! opens voice, on the data plane carrying the fewest placed sessions, and
//! stays there while that data plane is attached: every member of a
//! channel must reach the same router. When a data plane detaches, its
//! channels are unplaced and go elsewhere at their next `OpenVoice`.
//!
//! A `std::sync::Mutex` guards it, for the same reasons as the broker's:
//! every operation is short and never awaits. Lock order: the broker's lock
//! may be held while taking this one, never the other way round.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use openspeak_shared::pb::cluster::ControlMessage;
use tokio::{sync::mpsc, task::AbortHandle};
use tonic::Status;

use crate::ids::{ChannelId, SessionId};
use crate::metrics::PlaneSample;

/// Where clients reach a data plane, as it registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub quic: String,
    pub udp: String,
    /// SHA-256 of its QUIC certificate, 64 lowercase hex digits.
    pub cert_sha256: String,
}

/// One attached data plane.
#[derive(Debug)]
pub struct Dataplane {
    /// The id it registered with; a new registration under the same id
    /// replaces this one.
    pub id: String,
    pub endpoints: Endpoints,
    /// Sessions it is meant to carry; 0 = no limit.
    pub capacity: u32,
    /// Its last `Stats` report.
    pub report: DataplaneReport,
    /// Its outgoing stream, for messages that do not come from the feed.
    #[expect(dead_code, reason = "for TicketKeyAdded, once ticket keys rotate")]
    pub sender: mpsc::Sender<Result<ControlMessage, Status>>,
    /// The task feeding it deltas; aborted when it is replaced, which
    /// also ends its stream.
    pub feed: Option<AbortHandle>,
}

/// What a data plane last reported about itself (`Stats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataplaneReport {
    /// Voice sessions connected.
    pub sessions: u32,
    /// Datagrams sent to listeners since it started.
    pub forwarded_total: u64,
    /// Datagrams it dropped itself since it started.
    pub dropped_total: u64,
    /// Each session's stream quality on it.
    pub streams: Vec<(SessionId, StreamQuality)>,
}

/// One session's voice quality as its data plane counts it: as a speaker
/// (what arrived from it) and as a listener (what was sent to it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamQuality {
    pub received: u64,
    pub forwarded: u64,
    pub lost: u64,
    pub late: u64,
    pub duplicate: u64,
    pub stale: u64,
    pub reordered: u64,
    pub jitter_ms: f32,
    pub delivered: u64,
    pub dropped_lag: u64,
}

/// Names one attachment, so that the end of a replaced stream does not
/// detach its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attachment(u64);

#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    planes: HashMap<Attachment, Plane>,
    channels: HashMap<ChannelId, Attachment>,
    /// Sessions that opened voice, and where.
    sessions: HashMap<SessionId, Attachment>,
}

#[derive(Debug)]
struct Plane {
    dataplane: Dataplane,
    /// Sessions placed on it (entries of `Inner::sessions`).
    placed: usize,
}

impl Registry {
    /// Adds a data plane, replacing (and returning) one of the same id.
    pub fn attach(&self, dataplane: Dataplane) -> (Attachment, Option<Dataplane>) {
        let mut inner = self.lock();
        let old = inner
            .planes
            .iter()
            .find(|(_, p)| p.dataplane.id == dataplane.id)
            .map(|(a, _)| *a);
        let replaced = old.and_then(|a| inner.detach(a));
        inner.next += 1;
        let attachment = Attachment(inner.next);
        inner.planes.insert(
            attachment,
            Plane {
                dataplane,
                placed: 0,
            },
        );
        (attachment, replaced)
    }

    /// Sets the task feeding `attachment`, so that a replacement can stop it.
    pub fn set_feed(&self, attachment: Attachment, feed: AbortHandle) {
        if let Some(plane) = self.lock().planes.get_mut(&attachment) {
            plane.dataplane.feed = Some(feed);
        }
    }

    /// Removes a data plane and unplaces its channels; `None` if it was
    /// already gone (replaced).
    pub fn detach(&self, attachment: Attachment) -> Option<Dataplane> {
        self.lock().detach(attachment)
    }

    /// Detaches every data plane, ending their streams: what the control
    /// plane does when it stops, so that each data plane notices at once
    /// and attaches again to whatever serves next.
    pub fn detach_all(&self) {
        let mut inner = self.lock();
        let attached: Vec<Attachment> = inner.planes.keys().copied().collect();
        for attachment in attached {
            inner.detach(attachment);
        }
    }

    /// How many data planes are attached.
    pub fn attached(&self) -> usize {
        self.lock().planes.len()
    }

    /// Each attached data plane's id and last report, for `/metrics`,
    /// ordered by id so that scrapes list them alike.
    pub fn samples(&self) -> Vec<PlaneSample> {
        let mut samples: Vec<PlaneSample> = self
            .lock()
            .planes
            .values()
            .map(|plane| PlaneSample {
                id: plane.dataplane.id.clone(),
                sessions: u64::from(plane.dataplane.report.sessions),
                forwarded: plane.dataplane.report.forwarded_total,
                cert_sha256: plane.dataplane.endpoints.cert_sha256.clone(),
            })
            .collect();
        samples.sort_by(|a, b| a.id.cmp(&b.id));
        samples
    }

    /// Places `session`'s voice in `channel`: on the data plane the channel
    /// is already on, or else on the least loaded one with room. `None`:
    /// no data plane can take it.
    pub fn place(&self, channel: &ChannelId, session: SessionId) -> Option<Endpoints> {
        let mut inner = self.lock();
        let attachment = match inner.channels.get(channel) {
            Some(&a) => a,
            None => {
                let a = inner
                    .planes
                    .iter()
                    .filter(|(_, p)| {
                        p.dataplane.capacity == 0 || p.placed < p.dataplane.capacity as usize
                    })
                    .min_by(|(a, x), (b, y)| x.placed.cmp(&y.placed).then(a.0.cmp(&b.0)))
                    .map(|(a, _)| *a)?;
                inner.channels.insert(channel.clone(), a);
                a
            }
        };
        if let Some(before) = inner.sessions.insert(session, attachment)
            && let Some(plane) = inner.planes.get_mut(&before)
        {
            plane.placed -= 1;
        }
        let plane = inner.planes.get_mut(&attachment)?;
        plane.placed += 1;
        Some(plane.dataplane.endpoints.clone())
    }

    /// Places each of `channels` that is not placed yet on `attachment`:
    /// a data plane that outlived a control-plane restart still routes
    /// them, and their new members must reach it. Returns how many it took.
    pub fn adopt_channels(
        &self,
        attachment: Attachment,
        channels: impl IntoIterator<Item = ChannelId>,
    ) -> usize {
        let mut inner = self.lock();
        if !inner.planes.contains_key(&attachment) {
            return 0;
        }
        let mut adopted = 0;
        for channel in channels {
            if let std::collections::hash_map::Entry::Vacant(slot) = inner.channels.entry(channel) {
                slot.insert(attachment);
                adopted += 1;
            }
        }
        adopted
    }

    /// True if `channel` is placed on `attachment`.
    pub fn is_placed_on(&self, channel: &ChannelId, attachment: Attachment) -> bool {
        self.lock().channels.get(channel) == Some(&attachment)
    }

    /// A session ended: it no longer counts towards its data plane's load.
    /// Returns its final stream quality, once: for the session that had
    /// voice, from the data plane's last report.
    pub fn forget_session(&self, session: SessionId) -> Option<StreamQuality> {
        let mut inner = self.lock();
        let plane = inner.sessions.remove(&session)?;
        let plane = inner.planes.get_mut(&plane)?;
        plane.placed -= 1;
        plane
            .dataplane
            .report
            .streams
            .iter()
            .find(|(s, _)| *s == session)
            .map(|(_, q)| *q)
    }

    /// A channel was deleted: it is placed afresh if it ever comes back.
    pub fn unplace_channel(&self, channel: &ChannelId) {
        self.lock().channels.remove(channel);
    }

    /// Forgets every session and channel that is not live: what a feed
    /// that fell behind does after its fresh snapshot, since the events it
    /// missed may have ended sessions or deleted channels it would have
    /// forgotten one at a time ([`Registry::forget_session`],
    /// [`Registry::unplace_channel`]). Left in place they would count
    /// against their data plane's capacity for good.
    pub fn retain_live(
        &self,
        session_live: impl Fn(SessionId) -> bool,
        channel_live: impl Fn(&ChannelId) -> bool,
    ) {
        let mut inner = self.lock();
        let Inner {
            planes,
            channels,
            sessions,
            ..
        } = &mut *inner;
        channels.retain(|c, _| channel_live(c));
        sessions.retain(|&s, a| {
            let live = session_live(s);
            if !live && let Some(plane) = planes.get_mut(a) {
                plane.placed -= 1;
            }
            live
        });
    }

    /// Keeps `report` as `attachment`'s latest.
    pub fn note_stats(&self, attachment: Attachment, report: DataplaneReport) {
        if let Some(plane) = self.lock().planes.get_mut(&attachment) {
            plane.dataplane.report = report;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn detach(&mut self, attachment: Attachment) -> Option<Dataplane> {
        let plane = self.planes.remove(&attachment)?;
        self.channels.retain(|_, a| *a != attachment);
        self.sessions.retain(|_, a| *a != attachment);
        if let Some(feed) = &plane.dataplane.feed {
            feed.abort();
        }
        Some(plane.dataplane)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(id: &str, capacity: u32) -> Dataplane {
        Dataplane {
            id: id.into(),
            endpoints: Endpoints {
                quic: format!("{id}:1"),
                udp: format!("{id}:2"),
                cert_sha256: "0".repeat(64),
            },
            capacity,
            report: DataplaneReport::default(),
            sender: mpsc::channel(1).0,
            feed: None,
        }
    }

    fn ch(id: &str) -> ChannelId {
        ChannelId(id.into())
    }

    #[test]
    fn channels_stay_put_and_new_ones_go_to_the_least_loaded() {
        let r = Registry::default();
        assert_eq!(r.place(&ch("a"), SessionId(1)), None);
        let (a, _) = r.attach(plane("a", 0));
        let (_b, _) = r.attach(plane("b", 0));
        assert_eq!(r.place(&ch("x"), SessionId(1)).unwrap().quic, "a:1");
        assert_eq!(r.place(&ch("x"), SessionId(2)).unwrap().quic, "a:1");
        assert_eq!(r.place(&ch("y"), SessionId(3)).unwrap().quic, "b:1");
        assert!(r.is_placed_on(&ch("x"), a));
        // Detaching unplaces: x moves to b.
        assert!(r.detach(a).is_some());
        assert_eq!(r.place(&ch("x"), SessionId(1)).unwrap().quic, "b:1");
        assert!(r.detach(a).is_none());
    }

    #[test]
    fn a_full_data_plane_takes_no_new_channel_and_a_same_id_replaces() {
        let r = Registry::default();
        r.attach(plane("a", 1));
        assert!(r.place(&ch("x"), SessionId(1)).is_some());
        assert_eq!(r.place(&ch("y"), SessionId(2)), None);
        r.forget_session(SessionId(1));
        assert!(r.place(&ch("y"), SessionId(2)).is_some());
        let (_, replaced) = r.attach(plane("a", 1));
        assert_eq!(replaced.map(|d| d.id).as_deref(), Some("a"));
        assert_eq!(r.attached(), 1);
    }

    #[test]
    fn reported_channels_are_adopted_unless_placed_elsewhere() {
        let r = Registry::default();
        let (a, _) = r.attach(plane("a", 0));
        let (b, _) = r.attach(plane("b", 0));
        assert_eq!(r.place(&ch("x"), SessionId(1)).unwrap().quic, "a:1");
        assert_eq!(r.adopt_channels(b, [ch("x"), ch("y")]), 1);
        assert!(r.is_placed_on(&ch("x"), a), "a placed channel stays put");
        assert!(r.is_placed_on(&ch("y"), b));
        assert_eq!(r.place(&ch("y"), SessionId(2)).unwrap().quic, "b:1");
        assert!(r.detach(b).is_some());
        assert_eq!(
            r.adopt_channels(b, [ch("z")]),
            0,
            "a detached plane adopts nothing"
        );
    }

    #[test]
    fn retaining_the_live_frees_what_ended_unseen() {
        let r = Registry::default();
        let (a, _) = r.attach(plane("a", 2));
        assert!(r.place(&ch("x"), SessionId(1)).is_some());
        assert!(r.place(&ch("y"), SessionId(2)).is_some());
        assert_eq!(r.place(&ch("z"), SessionId(3)), None, "a is full");
        // Session 2 ended and channel y was deleted while the feed was
        // behind: neither was forgotten one at a time.
        r.retain_live(|s| s != SessionId(2), |c| *c != ch("y"));
        assert!(!r.is_placed_on(&ch("y"), a));
        assert!(r.is_placed_on(&ch("x"), a));
        assert_eq!(
            r.forget_session(SessionId(2)),
            None,
            "session 2 is forgotten already"
        );
        assert!(
            r.place(&ch("z"), SessionId(3)).is_some(),
            "its place is free"
        );
        assert_eq!(r.place(&ch("w"), SessionId(4)), None, "and only its");
    }
}
