//! streamproc's compiled engine core: the per-event parts of the engine that moved out of
//! Python (`streamproc.engine` drives them through the `streamproc_core` module).

pub mod dedup;
pub mod plain;

#[cfg(feature = "python")]
mod python;
