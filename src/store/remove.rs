//! What `rmi` may do, decided as pure data before anything is touched.
//!
//! Docker's rules: removing by tag removes that tag, and the image goes with
//! its last tag; removing by id removes every tag too, but only with `--force`
//! when there are several. A container using the image blocks both without
//! `--force`. With `--force`, burrow still keeps the image's files (untagged,
//! shown as `<none>`) while a container uses it, because containers run on the
//! unpacked layers directly: deleting them would break the container.

use thiserror::Error;

/// Docker's conflict messages, so scripts matching them keep working.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Conflict {
    #[error(
        "conflict: unable to remove repository reference \"{reference}\" (must force) - container {container} is using its referenced image {image}"
    )]
    ReferenceInUse {
        reference: String,
        container: String,
        image: String,
    },
    #[error(
        "conflict: unable to delete {image} (must be forced) - image is referenced in multiple repositories"
    )]
    MultipleRepositories { image: String },
    #[error(
        "conflict: unable to delete {image} (must be forced) - image is being used by container {container}"
    )]
    InUse { image: String, container: String },
}

/// The facts `plan` decides on.
#[derive(Debug)]
pub struct Request<'a> {
    /// What the user typed.
    pub name: &'a str,
    /// The image's id (64 hex).
    pub id: &'a str,
    /// The tag `name` resolved through, or `None` when it named an id.
    pub via_tag: Option<&'a str>,
    /// All tags of the image.
    pub tags: &'a [String],
    /// Containers using the image.
    pub users: &'a [String],
    pub force: bool,
}

/// What to do.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub untag: Vec<String>,
    /// Delete the config, metadata and unused layers.
    pub delete: bool,
}

pub fn plan(r: &Request<'_>) -> Result<Plan, Conflict> {
    let short = &r.id[..12];
    let first_user = r.users.first();
    match r.via_tag {
        Some(tag) => {
            let last_tag = r.tags.len() <= 1;
            if let (true, false, Some(user)) = (last_tag, r.force, first_user) {
                return Err(Conflict::ReferenceInUse {
                    reference: r.name.to_string(),
                    container: user.clone(),
                    image: short.to_string(),
                });
            }
            Ok(Plan {
                untag: vec![tag.to_string()],
                delete: last_tag && first_user.is_none(),
            })
        }
        None => {
            if r.tags.len() > 1 && !r.force {
                return Err(Conflict::MultipleRepositories {
                    image: short.to_string(),
                });
            }
            if let (false, Some(user)) = (r.force, first_user) {
                return Err(Conflict::InUse {
                    image: short.to_string(),
                    container: user.clone(),
                });
            }
            Ok(Plan {
                untag: r.tags.to_vec(),
                delete: first_user.is_none(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn req<'a>(
        via_tag: Option<&'a str>,
        tags: &'a [String],
        users: &'a [String],
        force: bool,
    ) -> Request<'a> {
        Request {
            name: via_tag.unwrap_or(ID),
            id: ID,
            via_tag,
            tags,
            users,
            force,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn last_tag_takes_the_image() {
        let tags = s(&["busybox:latest"]);
        let p = plan(&req(Some("busybox:latest"), &tags, &[], false)).unwrap();
        assert_eq!(
            p,
            Plan {
                untag: tags.clone(),
                delete: true
            }
        );
        let two = s(&["busybox:1", "busybox:latest"]);
        let p = plan(&req(Some("busybox:1"), &two, &[], false)).unwrap();
        assert_eq!(
            p,
            Plan {
                untag: s(&["busybox:1"]),
                delete: false
            }
        );
    }

    #[test]
    fn by_id_with_several_tags_needs_force() {
        let two = s(&["a:latest", "b:latest"]);
        let err = plan(&req(None, &two, &[], false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "conflict: unable to delete 0123456789ab (must be forced) - image is referenced in multiple repositories"
        );
        assert_eq!(
            plan(&req(None, &two, &[], true)).unwrap(),
            Plan {
                untag: two.clone(),
                delete: true
            }
        );
    }

    #[test]
    fn containers_block_removal_unless_forced_and_keep_the_files() {
        let tags = s(&["busybox:latest"]);
        let users = s(&["web"]);
        let err = plan(&Request {
            name: "busybox",
            ..req(Some("busybox:latest"), &tags, &users, false)
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "conflict: unable to remove repository reference \"busybox\" (must force) - container web is using its referenced image 0123456789ab"
        );
        assert!(matches!(
            plan(&req(None, &tags, &users, false)),
            Err(Conflict::InUse { .. })
        ));
        let forced = plan(&req(Some("busybox:latest"), &tags, &users, true)).unwrap();
        assert_eq!(
            forced,
            Plan {
                untag: tags.clone(),
                delete: false
            }
        );
        assert_eq!(
            plan(&req(None, &tags, &users, true)).unwrap(),
            Plan {
                untag: tags,
                delete: false
            }
        );
    }
}
