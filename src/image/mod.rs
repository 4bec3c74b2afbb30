//! Image references and digests as pure data.
