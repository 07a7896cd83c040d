//! The control plane's half of the internal link to the data planes.
//!
//! A data plane dials `cluster.listen`, authenticates with
//! `cluster.secret`, and keeps one `ClusterService.Attach` stream open:
//! it registers, gets a snapshot (ticket keys and every session's channel,
//! mute and deafen) and then member deltas taken from the broker's feed,
//! and reports speaking and stats. [`Registry`] knows the attached data
//! planes and which channel is placed on which; [`MemberView`] turns core
//! events into deltas; [`ClusterApi`] is the gRPC edge that ties them to
//! the broker.

mod guard;
mod link;
mod member_view;
mod registry;

pub use self::{
    guard::AttachGuard,
    link::ClusterApi,
    member_view::MemberView,
    registry::{Attachment, Dataplane, DataplaneReport, Endpoints, Registry, StreamQuality},
};
