//! The image config `import` writes: one layer, the host's platform, the
//! `--change` instructions applied, and one history entry.
//!
//! The config's bytes are the image: the id is their sha256, as in Docker, so
//! they are serialised once, here, and stored verbatim.

use oci_spec::image::{Arch, Config, History, ImageConfiguration, Os, RootFs};

use crate::image::{Change, Digest, Reference};

/// What the user asked `import` for, beyond the tarball itself.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Tag to give the image; `None` leaves it untagged (`<none>`).
    pub reference: Option<Reference>,
    /// `--change` instructions, applied in order.
    pub changes: Vec<Change>,
    /// `--message`: the history comment.
    pub message: Option<String>,
    /// Where the tarball came from (a path or `-`), for the default comment.
    pub source: String,
}

/// Builds the config for a one-layer image created at `created` (RFC 3339).
pub fn config(diff_id: &Digest, options: &ImportOptions, created: &str) -> ImageConfiguration {
    let mut run_config = Config::default();
    for change in &options.changes {
        change.apply(&mut run_config);
    }
    let mut rootfs = RootFs::default();
    rootfs.set_diff_ids(vec![diff_id.to_string()]);

    let comment = match &options.message {
        Some(m) => m.clone(),
        None => format!("Imported from {}", options.source),
    };
    let mut history = History::default();
    history.set_created(Some(created.to_string()));
    history.set_created_by(Some("import".to_string()));
    history.set_comment(Some(comment));

    let mut config = ImageConfiguration::default();
    config.set_created(Some(created.to_string()));
    config.set_architecture(host_arch());
    config.set_os(Os::Linux);
    config.set_config(Some(run_config));
    config.set_rootfs(rootfs);
    config.set_history(Some(vec![history]));
    config
}

/// The host CPU in Go's GOARCH spelling, which image configs use.
pub fn host_arch() -> Arch {
    Arch::from(match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_one_layer_changes_and_history() {
        let diff_id = Digest::of(b"layer");
        let options = ImportOptions {
            changes: vec![
                "CMD [\"/bin/sh\"]".parse().unwrap(),
                "ENV A=1".parse().unwrap(),
            ],
            source: "-".into(),
            ..Default::default()
        };
        let c = config(&diff_id, &options, "2026-01-01T00:00:00Z");
        assert_eq!(c.rootfs().diff_ids(), &vec![diff_id.to_string()]);
        assert_eq!(c.os(), &Os::Linux);
        assert_eq!(c.created().as_deref(), Some("2026-01-01T00:00:00Z"));
        let run = c.config().as_ref().unwrap();
        assert_eq!(run.cmd().as_deref(), Some(&["/bin/sh".to_string()][..]));
        assert_eq!(run.env().as_deref(), Some(&["A=1".to_string()][..]));
        let h = &c.history().as_ref().unwrap()[0];
        assert_eq!(h.comment().as_deref(), Some("Imported from -"));
        assert_eq!(h.created_by().as_deref(), Some("import"));
        if cfg!(target_arch = "x86_64") {
            assert_eq!(c.architecture(), &Arch::Amd64);
        }
    }
}
