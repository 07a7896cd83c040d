//! `talk` and `record`: real audio end to end. One client streams the Opus
//! packets of an Ogg Opus file into a channel at their recorded pace;
//! another writes what one speaker says into an Ogg Opus file, so a person
//! can hear what went through and a test can compare it byte for byte.

pub mod flags;
pub mod opus_file;
pub mod recorder;
pub mod session;
pub mod talker;
