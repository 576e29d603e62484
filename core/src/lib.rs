//! streamproc's compiled engine core: the per-event parts of the engine that moved out of
//! Python (`streamproc.engine` drives them through the `streamproc_core` module).

pub mod changes;
pub mod dedup;
pub mod plain;
pub mod viewer;

#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod viewer_path;
