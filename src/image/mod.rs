//! Image references and digests as pure data.
//!
//! Everything here is parsed at the edge and cannot be wrong afterwards:
//! [`Reference`] is a name as Docker normalises it, [`Digest`] a sha256 content
//! address, [`Change`] one `--change` instruction for an image config,
//! [`OwnerRecord`] the owner an image records where it cannot chown. No I/O;
//! the store and the registry client take these types.

pub mod archive;
mod change;
mod digest;
mod owner;
mod reference;

pub use change::{Change, ChangeError};
pub use digest::{Digest, DigestError, Hasher, is_sha256_hex};
pub use owner::{OWNER_XATTR, OwnerRecord};
pub use reference::{DEFAULT_DOMAIN, DEFAULT_TAG, Reference, ReferenceError};
