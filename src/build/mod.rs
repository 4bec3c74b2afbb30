//! `build`: Dockerfiles to images, rootless, with a layer cache.
//!
//! Dockerfile text → instructions ([`dockerfile`], pure) → a [`builder`]
//! that walks the stages: each RUN is a container made with
//! [`crate::container`] whose changes become a layer, each COPY/ADD a layer
//! tar made straight from the context ([`context`], which also applies
//! `.dockerignore`) or from another stage, and every other instruction an
//! edit of the image config. Steps are cached by parent, instruction text
//! and source content ([`cache`]).

pub mod builder;
pub mod cache;
pub mod context;
pub mod copy;
pub mod dockerfile;

pub use builder::{BuildOptions, build};
