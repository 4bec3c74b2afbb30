//! Images made on top of another image: `commit` and each step of `build`.
//!
//! A new image is its parent's config with, optionally, one more layer (a
//! tar stream: a container's changes, or files a build copied in), a new run
//! config and one more history entry. The layer is unpacked into scratch
//! without the lock; moving it into place and writing the config, the meta
//! and the tag happen under the lock, in the store's usual order.

use std::io::Read;

use anyhow::Context;
use oci_spec::image::{Config, History, ImageConfiguration, Os, RootFs};

use super::index::Meta;
use super::scratch::Scratch;
use super::{Image, Store, StoreError, layer, tag_key, write_new};
use crate::image::{Digest, Reference};

/// What a commit adds to its parent.
#[derive(Debug, Clone, Default)]
pub struct NewImage<'a> {
    /// The image built on; `None` starts from nothing (`FROM scratch`).
    pub parent: Option<&'a Image>,
    /// The new image's run config (Env, Cmd, ...), whole.
    pub config: Config,
    /// The history line: what made the layer.
    pub created_by: String,
    pub comment: Option<String>,
    pub author: Option<String>,
    /// RFC 3339.
    pub created: String,
    /// Tag to give the image.
    pub reference: Option<&'a Reference>,
    /// A build step's image (see [`Store::set_intermediate`]); only a new
    /// image takes the mark, an existing one keeps its own.
    pub intermediate: bool,
}

impl Store {
    /// Makes the image `new` describes, with the layer read from `layer` (a
    /// plain, gzip or zstd tar) or none (a config-only step: the history
    /// entry is marked `empty_layer`).
    pub fn commit(
        &self,
        layer: Option<&mut dyn Read>,
        new: &NewImage<'_>,
    ) -> Result<Image, StoreError> {
        let staged = match layer {
            Some(input) => {
                let scratch = Scratch::create(&self.tmp, "commit").with_context(|| {
                    format!("cannot create a scratch folder in {}", self.tmp.display())
                })?;
                let unpacked =
                    layer::unpack(input, scratch.path()).context("cannot unpack the new layer")?;
                Some((scratch, unpacked))
            }
            None => None,
        };
        let config = config(new, staged.as_ref().map(|(_, u)| &u.diff_id));
        let mut value = serde_json::to_value(&config).context("cannot encode the image config")?;
        docker_fields(&mut value);
        let bytes = serde_json::to_vec(&value).context("cannot encode the image config")?;
        let id = Digest::of(&bytes);

        let _lock = self.lock()?;
        let mut size = new.parent.map_or(0, |p| p.size);
        if let Some((scratch, unpacked)) = &staged {
            let dir = self.layer_dir(&unpacked.diff_id);
            if !dir.exists() {
                layer::move_into_place(scratch.path(), &dir)
                    .with_context(|| format!("cannot move the layer into {}", dir.display()))?;
            }
            size += unpacked.size;
        }
        write_new(&self.blob(id.hex()), &bytes)?;
        let meta = self.meta(id.hex());
        if !meta.exists() {
            Meta {
                size,
                intermediate: new.intermediate,
            }
            .save(&meta)
            .with_context(|| format!("cannot write {}", meta.display()))?;
        }
        let mut tags = self.tags()?;
        if let Some(reference) = new.reference {
            tags.set(&tag_key(reference)?, id.hex());
            self.save_tags(&tags)?;
        }
        self.load(id.hex(), &tags)
    }

    /// Sets `reference` to name the image `id` (a full id), as the last
    /// step of a build.
    pub fn tag_id(&self, id: &str, reference: &Reference) -> Result<(), StoreError> {
        let key = tag_key(reference)?;
        let _lock = self.lock()?;
        let mut tags = self.tags()?;
        if !self.meta(id).exists() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        tags.set(&key, id);
        self.save_tags(&tags)
    }

    /// Marks the image `id` (a full id) as a build step's or not: a build
    /// clears the mark on its result, which may have been a step before.
    pub fn set_intermediate(&self, id: &str, intermediate: bool) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let path = self.meta(id);
        let mut meta =
            Meta::load(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.intermediate != intermediate {
            meta.intermediate = intermediate;
            meta.save(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// The parsed config of an image, by full id.
    pub fn image_by_id(&self, id: &str) -> Option<Image> {
        let _lock = self.lock_shared().ok()?;
        let tags = self.tags().ok()?;
        self.meta(id).exists().then(|| self.load(id, &tags).ok())?
    }
}

/// The parent's config plus the new layer, run config and history entry.
fn config(new: &NewImage<'_>, diff_id: Option<&Digest>) -> ImageConfiguration {
    let mut config = match new.parent {
        Some(p) => p.config.clone(),
        None => {
            let mut c = ImageConfiguration::default();
            c.set_architecture(super::host_arch());
            c.set_os(Os::Linux);
            c.set_rootfs(RootFs::default());
            c
        }
    };
    let mut rootfs = config.rootfs().clone();
    if let Some(d) = diff_id {
        let mut ids = rootfs.diff_ids().clone();
        ids.push(d.to_string());
        rootfs.set_diff_ids(ids);
    }
    config.set_rootfs(rootfs);
    let mut history = History::default();
    history.set_created(Some(new.created.clone()));
    history.set_created_by(Some(new.created_by.clone()));
    history.set_comment(new.comment.clone());
    history.set_author(new.author.clone());
    if diff_id.is_none() {
        history.set_empty_layer(Some(true));
    }
    let mut all = config.history().clone().unwrap_or_default();
    all.push(history);
    config.set_history(Some(all));
    config.set_created(Some(new.created.clone()));
    if new.author.is_some() {
        config.set_author(new.author.clone());
    }
    config.set_config(Some(new.config.clone()));
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::{add_file, tarball};

    #[test]
    fn commit_adds_a_layer_and_history_on_top_of_the_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = crate::paths::Dirs {
            data: tmp.path().join("data"),
            runtime: tmp.path().join("run"),
        };
        let store = Store::open(&dirs).unwrap();
        let base_tar = tarball(|b| add_file(b, "bin/sh", b"sh", 0o755));
        let base = store
            .import(&base_tar[..], &Default::default())
            .unwrap()
            .image;
        let layer = tarball(|b| add_file(b, "etc/motd", b"hi", 0o644));
        let reference: Reference = "snap:1".parse().unwrap();
        let new = NewImage {
            parent: Some(&base),
            created_by: "/bin/sh -c echo hi".into(),
            created: "2026-01-01T00:00:00Z".into(),
            reference: Some(&reference),
            ..Default::default()
        };
        let image = store.commit(Some(&mut &layer[..]), &new).unwrap();
        assert_eq!(image.layers.len(), 2);
        assert!(image.layers[1].join("etc/motd").is_file());
        assert_eq!(image.repo_tags, ["snap:1"]);
        let history = image.config.history().clone().unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(
            history[1].created_by().as_deref(),
            Some("/bin/sh -c echo hi")
        );
        // A config-only step: same layers, one more (empty) history entry.
        let meta_only = store
            .commit(
                None,
                &NewImage {
                    reference: None,
                    ..new.clone()
                },
            )
            .unwrap();
        assert_eq!(meta_only.layers.len(), 1);
        assert_eq!(
            meta_only.config.history().clone().unwrap()[1].empty_layer(),
            Some(true)
        );
    }
}

/// Docker's config has `Shell`, `OnBuild` and `Healthcheck`, which the OCI
/// config type lacks; burrow's builder keeps them as `org.burrow.*` labels.
/// Written here in Docker's form as well, so Docker and Podman see an
/// image's HEALTHCHECK, ONBUILD and SHELL (readers of the OCI format ignore
/// the extra keys).
fn docker_fields(config: &mut serde_json::Value) {
    let Some(cfg) = config.get_mut("config").and_then(|c| c.as_object_mut()) else {
        return;
    };
    let label = |name: &str| -> Option<serde_json::Value> {
        let text = cfg.get("Labels")?.get(name)?.as_str()?;
        serde_json::from_str(text).ok()
    };
    let shell = label("org.burrow.shell").filter(|v| v.is_array());
    let onbuild = label("org.burrow.onbuild").filter(|v| v.is_array());
    let health = label("org.burrow.healthcheck").and_then(healthcheck);
    if let Some(v) = shell {
        cfg.insert("Shell".into(), v);
    }
    if let Some(v) = onbuild {
        cfg.insert("OnBuild".into(), v);
    }
    if let Some(v) = health {
        cfg.insert("Healthcheck".into(), v);
    }
}

/// `{"Test": [...], "interval": "30s", "retries": "3", ...}` as the builder
/// records it, in Docker's shape: durations in nanoseconds, retries a number.
fn healthcheck(recorded: serde_json::Value) -> Option<serde_json::Value> {
    let obj = recorded.as_object()?;
    let mut out = serde_json::Map::new();
    out.insert("Test".into(), obj.get("Test")?.clone());
    for (key, value) in obj {
        let text = value.as_str().unwrap_or_default();
        let (name, v) = match key.as_str() {
            "interval" => ("Interval", go_duration(text)?.into()),
            "timeout" => ("Timeout", go_duration(text)?.into()),
            "start-period" => ("StartPeriod", go_duration(text)?.into()),
            "start-interval" => ("StartInterval", go_duration(text)?.into()),
            "retries" => ("Retries", text.parse::<u64>().ok()?.into()),
            _ => continue,
        };
        out.insert(name.into(), v);
    }
    Some(serde_json::Value::Object(out))
}

/// A Go duration (`1m30s`, `500ms`, `2h`) in nanoseconds.
fn go_duration(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += (number * scale) as u64;
    }
    (!text.is_empty()).then_some(total)
}

#[cfg(test)]
mod docker_field_tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(go_duration("5s"), Some(5_000_000_000));
        assert_eq!(go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(go_duration("500ms"), Some(500_000_000));
        assert_eq!(go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(go_duration("5"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn labels_become_docker_fields() {
        let mut v = serde_json::json!({"config": {"Labels": {
            "org.burrow.shell": "[\"/bin/sh\",\"-ec\"]",
            "org.burrow.onbuild": "[\"RUN echo hi\"]",
            "org.burrow.healthcheck": "{\"Test\":[\"CMD-SHELL\",\"true\"],\"interval\":\"5s\",\"retries\":\"3\"}"
        }}});
        docker_fields(&mut v);
        let c = &v["config"];
        assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
        assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo hi"]));
        assert_eq!(
            c["Healthcheck"],
            serde_json::json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000u64, "Retries": 3})
        );
    }
}
