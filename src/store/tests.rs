//! Store tests: import a tarball built in memory into a temporary store, then
//! resolve, list, tag and remove.

use super::*;
use crate::store::testutil::{add_file, tarball};

struct TestStore {
    _dir: tempfile::TempDir,
    store: Store,
    dirs: Dirs,
}

fn store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let dirs = Dirs {
        data: dir.path().join("data"),
        runtime: dir.path().join("run"),
    };
    let store = Store::open(&dirs).unwrap();
    TestStore {
        _dir: dir,
        store,
        dirs,
    }
}

fn rootfs(marker: &[u8]) -> Vec<u8> {
    tarball(|b| {
        add_file(b, "bin/busybox", b"#!elf", 0o755);
        add_file(b, "etc/marker", marker, 0o644);
    })
}

fn import(s: &Store, tar: &[u8], reference: Option<&str>) -> Image {
    import_with(s, tar, reference, None)
}

fn import_with(s: &Store, tar: &[u8], reference: Option<&str>, message: Option<&str>) -> Image {
    let options = ImportOptions {
        reference: reference.map(|r| r.parse().unwrap()),
        message: message.map(str::to_string),
        source: "-".into(),
        ..Default::default()
    };
    s.import(tar, &options).unwrap().image
}

fn no_users(_: &str) -> anyhow::Result<Vec<String>> {
    Ok(Vec::new())
}

#[test]
fn import_then_resolve_by_tag_and_id_prefix() {
    let t = store();
    let tar = rootfs(b"one");
    let image = import(&t.store, &tar, Some("busybox"));
    assert_eq!(image.repo_tags, vec!["busybox:latest"]);
    assert_eq!(image.size, 5 + 3);
    assert_eq!(image.layers.len(), 1);
    assert_eq!(
        fs::read(image.layers[0].join("etc/marker")).unwrap(),
        b"one"
    );
    let diff_id = Digest::of(&tar);
    assert_eq!(image.config.rootfs().diff_ids(), &vec![diff_id.to_string()]);
    assert!(image.layers[0].ends_with(diff_id.hex()));

    // The id is the sha256 of the stored config bytes, as Docker's.
    let blob = fs::read(t.store.blob(&image.id)).unwrap();
    assert_eq!(Digest::of(&blob).hex(), image.id);

    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
    ] {
        assert_eq!(t.store.resolve(name).unwrap().id, image.id, "{name}");
    }
    let short = &image.id[..12];
    assert_eq!(t.store.resolve(short).unwrap().id, image.id);
    assert_eq!(
        t.store.resolve(&format!("sha256:{short}")).unwrap().id,
        image.id
    );
    assert!(matches!(t.store.resolve("alpine"), Err(StoreError::NotFound(n)) if n == "alpine"));
    assert!(matches!(
        t.store.resolve("sha256:zz"),
        Err(StoreError::NotFound(_))
    ));
    // Nothing is left in the scratch folder.
    assert_eq!(fs::read_dir(t.dirs.tmp()).unwrap().count(), 0);
}

#[test]
fn the_same_tarball_is_the_same_image() {
    let t = store();
    let tar = rootfs(b"same");
    let first = import(&t.store, &tar, Some("a"));
    let again = import(&t.store, &tar, Some("b"));
    assert_eq!(first.id, again.id);
    assert_eq!(again.repo_tags, vec!["a:latest", "b:latest"]);
    // Dated by the tarball's newest mtime, not the clock.
    assert_eq!(first.created, "1970-01-12T13:46:40.000000000Z");
}

#[test]
fn untagged_images_list_newest_first_and_share_layers() {
    let t = store();
    let tar = rootfs(b"same");
    let first = import(&t.store, &tar, None);
    let second = import_with(&t.store, &tar, Some("user/app:1"), Some("another message"));
    assert_ne!(
        first.id, second.id,
        "the history comments differ, so do the configs"
    );
    assert_eq!(first.layers, second.layers);
    let newer = tarball(|b| {
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_mtime(5_000_000);
        b.append_data(&mut h, "new", &b"x"[..]).unwrap();
    });
    let third = import(&t.store, &newer, None);
    let list = t.store.list().unwrap();
    let ids: Vec<_> = list.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids[0], third.id);
    assert_eq!(ids.len(), 3);
    let tagged: Vec<_> = list.iter().filter(|i| !i.repo_tags.is_empty()).collect();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].repo_tags, vec!["user/app:1"]);
}

#[test]
fn ambiguous_prefixes_are_reported() {
    let t = store();
    let mut ids = Vec::new();
    // Enough images that two ids surely share a first hex digit.
    for i in 0..17u8 {
        ids.push(import(&t.store, &rootfs(&[i]), None).id);
    }
    let prefix = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|p| ids.iter().filter(|id| id.starts_with(p.as_str())).count() > 1)
        .unwrap();
    assert!(matches!(
        t.store.resolve(&prefix),
        Err(StoreError::Ambiguous(_))
    ));
}

#[test]
fn tag_moves_and_adds_names() {
    let t = store();
    let a = import(&t.store, &rootfs(b"a"), Some("app:1"));
    let b = import(&t.store, &rootfs(b"b"), Some("app:2"));
    assert_eq!(
        t.store
            .tag("app:1", &"app:latest".parse().unwrap())
            .unwrap(),
        a.id
    );
    assert_eq!(t.store.resolve("app").unwrap().id, a.id);
    t.store
        .tag(&b.id[..10], &"app:latest".parse().unwrap())
        .unwrap();
    assert_eq!(t.store.resolve("app").unwrap().id, b.id);
    assert_eq!(t.store.resolve("app:1").unwrap().repo_tags, vec!["app:1"]);
    let digest: Reference = format!("app@{}", Digest::of(b"x")).parse().unwrap();
    assert!(t.store.tag("app:1", &digest).is_err());
}

#[test]
fn rmi_untags_then_deletes_and_collects_unused_layers() {
    let t = store();
    let shared = rootfs(b"shared");
    let a = import_with(&t.store, &shared, Some("a"), Some("a"));
    let b = import_with(&t.store, &shared, Some("b"), Some("b"));
    let own = import(&t.store, &rootfs(b"own"), Some("c"));
    t.store.tag("a", &"a:2".parse().unwrap()).unwrap();

    // One of two tags: only the tag goes.
    let out = t.store.remove("a:2", false, no_users).unwrap();
    assert_eq!(out, vec![Removed::Untagged("a:2".into())]);

    // Last tag: the image goes, but its layer stays for b.
    let out = t.store.remove("a", false, no_users).unwrap();
    assert_eq!(
        out,
        vec![
            Removed::Untagged("a:latest".into()),
            Removed::Deleted(a.id.clone())
        ]
    );
    assert!(matches!(
        t.store.resolve(&a.id),
        Err(StoreError::NotFound(_))
    ));
    assert!(b.layers[0].exists());

    // By id: the layer nobody else uses is deleted.
    let out = t.store.remove(&own.id[..12], false, no_users).unwrap();
    assert_eq!(
        out,
        vec![
            Removed::Untagged("c:latest".into()),
            Removed::Deleted(own.id.clone())
        ]
    );
    assert!(!own.layers[0].exists());
    assert!(!t.store.blob(&own.id).exists());

    t.store.remove("b", false, no_users).unwrap();
    assert!(!b.layers[0].exists());
    assert!(t.store.list().unwrap().is_empty());
    assert_eq!(fs::read_dir(t.dirs.tmp()).unwrap().count(), 0);
}

#[test]
fn rmi_respects_conflicts() {
    let t = store();
    let img = import(&t.store, &rootfs(b"x"), Some("x"));
    t.store.tag("x", &"y".parse().unwrap()).unwrap();
    let err = t.store.remove(&img.id, false, no_users).unwrap_err();
    let conflict = match err {
        StoreError::Other(e) => e.downcast::<Conflict>().unwrap(),
        other => panic!("{other}"),
    };
    assert!(matches!(conflict, Conflict::MultipleRepositories { .. }));

    let web = |_: &str| Ok(vec!["web".to_string()]);
    t.store.remove("y", false, web).unwrap();
    assert!(t.store.remove("x", false, web).is_err());
    // Forced: the name goes, the files stay for the container.
    let out = t.store.remove("x", true, web).unwrap();
    assert_eq!(out, vec![Removed::Untagged("x:latest".into())]);
    let kept = t.store.resolve(&img.id).unwrap();
    assert!(kept.repo_tags.is_empty());
    assert!(kept.layers[0].exists());
}

#[test]
fn read_only_layers_import_and_delete() {
    let t = store();
    let tar = tarball(|b| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o555);
        h.set_size(0);
        b.append_data(&mut h, "./", std::io::empty()).unwrap();
        let mut h = h.clone();
        b.append_data(&mut h, "ro/", std::io::empty()).unwrap();
        add_file(b, "ro/file", b"x", 0o444);
    });
    let img = import(&t.store, &tar, Some("ro"));
    t.store.remove("ro", false, no_users).unwrap();
    assert!(!img.layers[0].exists());
}
