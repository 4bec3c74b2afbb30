//! The builder: walks a Dockerfile's stages and makes one image per step.
//!
//! Theory of operation. Each stage starts from its FROM (an image, pulled
//! if missing or with `--pull`; `scratch`; or an earlier stage). Each step
//! then makes a new image on top of the current one, so every step has an
//! id to print and to chain the cache on:
//!
//! - RUN creates a container from the current image (the stage's env, ARGs,
//!   user and workdir as overrides), runs it in the foreground with output
//!   streamed, and commits its changes as a layer; the container is removed.
//! - COPY/ADD write a layer tar from the context or another stage
//!   ([`super::copy`]); WORKDIR adds the folder if the image lacks it.
//! - The rest edit the run config (an image with no new layer).
//!
//! Before a step runs, its cache key (current image id + substituted text
//! [+ ARGs for RUN, + the layer's sha256 for COPY/ADD]) is looked up; a hit
//! reuses the image. Nothing is tagged until every step succeeded.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use oci_spec::image::Config;
use sha2::{Digest as _, Sha256};

use super::cache::{self, Cache};
use super::context::Ignore;
use super::copy::{ContextTree, CopyJob, ImageTree, Tree, write_layer};
use super::dockerfile::{self, Command, CopySpec, Health, Instruction, Stage};
use crate::container::{self, Attach, CreateRequest, changes, rootfs};
use crate::image::{Change, Reference};
use crate::paths::Dirs;
use crate::store::{Image, NewImage, Store, StoreError};

/// Where an image's ONBUILD triggers are kept (a JSON list of instructions).
const ONBUILD_LABEL: &str = "org.burrow.onbuild";

/// What `burrow build` was asked for.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub dockerfile: String,
    /// `None` for a Dockerfile read from stdin with no context.
    pub context: Option<PathBuf>,
    pub tags: Vec<Reference>,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub quiet: bool,
    /// The RUN containers' network (`--network`).
    pub network: String,
}

/// A RUN that exited non-zero: `build` exits 1 with Docker's message.
#[derive(Debug, thiserror::Error)]
#[error("The command '{command}' returned a non-zero code: {code}")]
pub struct StepFailed {
    pub command: String,
    pub code: i32,
}

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];
/// Where SHELL is recorded: the OCI config has no Shell field (Docker's
/// has), so a label keeps it for the stages and builds FROM this image.
const SHELL_LABEL: &str = "org.burrow.shell";

/// Where the build is at within a stage.
struct State {
    image: Option<Image>,
    config: Config,
    /// ARGs declared in this stage, with their values.
    args: BTreeMap<String, String>,
    shell: Vec<String>,
    cmd_set: bool,
    author: Option<String>,
}

impl State {
    fn id(&self) -> &str {
        self.image.as_ref().map_or("scratch", |i| i.id.as_str())
    }

    fn env(&self) -> Vec<(String, String)> {
        self.config
            .env()
            .clone()
            .unwrap_or_default()
            .iter()
            .filter_map(|e| {
                e.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// ENV wins over ARG, as in Docker.
    fn lookup(&self, name: &str) -> Option<String> {
        self.env()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .or_else(|| self.args.get(name).cloned())
    }
}

struct Builder<'a> {
    dirs: &'a Dirs,
    opts: &'a BuildOptions,
    store: Store,
    cache: Cache,
    scratch: PathBuf,
    ignore: Ignore,
    /// Images of finished stages, by index; names map to indexes.
    stages: Vec<Option<Image>>,
    names: BTreeMap<String, usize>,
    step: usize,
    total: usize,
}

/// Runs the build; returns the final image (already tagged).
pub fn build(dirs: &Dirs, opts: &BuildOptions) -> Result<Image> {
    let file = dockerfile::parse(&opts.dockerfile)?;
    let last = match &opts.target {
        Some(t) => file
            .stages
            .iter()
            .position(|s| s.from.name.as_deref() == Some(t.to_lowercase().as_str()))
            .ok_or_else(|| anyhow!("target stage \"{t}\" could not be found"))?,
        None => file.stages.len() - 1,
    };
    let stages = &file.stages[..=last];
    let ignore = match &opts.context {
        Some(c) => Ignore::parse(&fs::read_to_string(c.join(".dockerignore")).unwrap_or_default()),
        None => Ignore::default(),
    };
    let store = Store::open(dirs)?;
    let scratch = dirs
        .tmp()
        .join(format!("build-{}", &container::names::new_id()[..16]));
    fs::create_dir_all(&scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let mut b = Builder {
        dirs,
        opts,
        store,
        cache: Cache::open(dirs),
        scratch: scratch.clone(),
        ignore,
        stages: Vec::new(),
        names: BTreeMap::new(),
        step: 0,
        total: stages.iter().map(|s| s.steps.len() + 1).sum(),
    };
    let result = b.run(stages, &file.global_args);
    let _ = fs::remove_dir_all(&scratch);
    let image = result?;
    // The result is an image of its own, even when it also is a step of
    // another build (a cache hit on a longer Dockerfile's prefix).
    b.store.set_intermediate(&image.id, false)?;
    for tag in &opts.tags {
        b.store.tag_id(&image.id, tag)?;
    }
    if opts.quiet {
        println!("sha256:{}", image.id);
    } else {
        println!("Successfully built {}", &image.id[..12]);
        for tag in &opts.tags {
            println!("Successfully tagged {}", tag.familiar());
        }
    }
    Ok(image)
}

impl Builder<'_> {
    fn say(&self, line: &str) {
        if !self.opts.quiet {
            println!("{line}");
            let _ = io::stdout().flush();
        }
    }

    fn run(&mut self, stages: &[Stage], global: &[(String, Option<String>)]) -> Result<Image> {
        let build_args: BTreeMap<String, String> = self.opts.build_args.iter().cloned().collect();
        // Global ARGs: defaults, overridden by --build-arg.
        let mut globals = BTreeMap::new();
        for (k, v) in global {
            if let Some(v) = build_args.get(k).cloned().or_else(|| v.clone()) {
                globals.insert(k.clone(), v);
            }
        }
        let mut last = None;
        for (n, stage) in stages.iter().enumerate() {
            let image = self.stage(stage, &globals, &build_args)?;
            if let Some(name) = &stage.from.name {
                self.names.insert(name.clone(), n);
            }
            self.stages.push(image.clone());
            last = image;
        }
        last.ok_or_else(|| {
            anyhow!("the build made no image: the last stage is FROM scratch with no steps")
        })
    }

    fn stage(
        &mut self,
        stage: &Stage,
        globals: &BTreeMap<String, String>,
        build_args: &BTreeMap<String, String>,
    ) -> Result<Option<Image>> {
        self.step += 1;
        self.say(&format!(
            "Step {}/{} : {}",
            self.step, self.total, stage.from.text
        ));
        let base_name = dockerfile::substitute(&stage.from.image, &|k| globals.get(k).cloned())?;
        let platform = stage
            .from
            .platform
            .as_deref()
            .map(|p| {
                dockerfile::substitute(p, &|k| globals.get(k).cloned().or_else(|| platform_arg(k)))
            })
            .transpose()?;
        let image = self.base(&base_name, platform.as_deref())?;
        if let Some(i) = &image {
            self.say(&format!(" ---> {}", &i.id[..12]));
        }
        let shell = image
            .as_ref()
            .and_then(recorded_shell)
            .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect());
        let mut st = State {
            config: image
                .as_ref()
                .and_then(|i| i.config.config().clone())
                .unwrap_or_default(),
            image,
            args: BTreeMap::new(),
            shell,
            cmd_set: false,
            author: None,
        };
        self.run_triggers(&mut st, globals, build_args)?;
        for step in &stage.steps {
            self.step += 1;
            self.say(&format!(
                "Step {}/{} : {}",
                self.step, self.total, step.text
            ));
            self.instruction(&mut st, &step.text, &step.instruction, globals, build_args)
                .with_context(|| format!("step {}: {}", self.step, step.text))?;
        }
        Ok(st.image)
    }

    /// Runs the base image's ONBUILD triggers, as Docker does, before the
    /// stage's own steps; the triggers are consumed, not passed on.
    fn run_triggers(
        &mut self,
        st: &mut State,
        globals: &BTreeMap<String, String>,
        build_args: &BTreeMap<String, String>,
    ) -> Result<()> {
        let triggers: Vec<String> = st
            .config
            .labels()
            .as_ref()
            .and_then(|l| l.get(ONBUILD_LABEL))
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default();
        if triggers.is_empty() {
            return Ok(());
        }
        if let Some(labels) = st.config.labels_mut() {
            labels.remove(ONBUILD_LABEL);
        }
        self.say(&format!("# Executing {} build trigger(s)", triggers.len()));
        let text = format!("FROM scratch\n{}\n", triggers.join("\n"));
        let parsed = dockerfile::parse(&text).context("an ONBUILD trigger of the base image")?;
        for step in parsed.stages.into_iter().flat_map(|s| s.steps) {
            if matches!(step.instruction, Instruction::Onbuild(_)) {
                bail!("ONBUILD ONBUILD is not allowed (trigger: {})", step.text);
            }
            self.say(&format!(" ---> Running trigger: {}", step.text));
            self.instruction(st, &step.text, &step.instruction, globals, build_args)
                .with_context(|| format!("ONBUILD trigger {}", step.text))?;
        }
        Ok(())
    }

    /// The image a FROM names: `scratch`, an earlier stage, or an image.
    fn base(&mut self, name: &str, platform: Option<&str>) -> Result<Option<Image>> {
        if name == "scratch" {
            return Ok(None);
        }
        if let Some(image) = self.stage_image(name) {
            return Ok(Some(image?));
        }
        if let Some(p) = platform.filter(|p| !p.is_empty()) {
            let wanted: crate::registry::Wanted = p
                .parse()
                .map_err(|e: String| anyhow!("FROM --platform: {e}"))?;
            let host = crate::registry::Wanted::host();
            if (wanted.os.as_str(), wanted.architecture.as_str())
                != (host.os.as_str(), host.architecture.as_str())
            {
                return self.foreign_image(name, wanted).map(Some);
            }
        }
        self.image(name).map(Some)
    }

    /// An image for another platform (`FROM --platform=linux/arm64 ...`):
    /// the local one if it is for that platform, else pulled for it (and
    /// tagged, as `docker pull --platform` does). A RUN in such a stage
    /// needs the host to emulate that CPU (binfmt); COPY and the config
    /// steps do not.
    fn foreign_image(&self, name: &str, wanted: crate::registry::Wanted) -> Result<Image> {
        if !self.opts.pull
            && let Ok(local) = self.store.resolve(name)
            && local.config.os().to_string() == wanted.os
            && local.config.architecture().to_string() == wanted.architecture
        {
            return Ok(local);
        }
        let opts = crate::registry::PullOptions {
            platform: Some(wanted),
            output: if self.opts.quiet {
                crate::registry::Output::Quiet
            } else {
                crate::registry::Output::Stdout
            },
            ..Default::default()
        };
        crate::registry::pull(self.dirs, name, &opts)
    }

    /// An earlier stage by name or index, if `name` is one.
    fn stage_image(&self, name: &str) -> Option<Result<Image>> {
        let index = self.names.get(&name.to_lowercase()).copied().or_else(|| {
            name.parse::<usize>()
                .ok()
                .filter(|n| *n < self.stages.len())
        })?;
        Some(
            self.stages[index]
                .clone()
                .ok_or_else(|| anyhow!("stage {name} is empty (FROM scratch with no steps)")),
        )
    }

    /// An image from the store, pulled when missing or with `--pull`.
    fn image(&self, name: &str) -> Result<Image> {
        let local = self.store.resolve(name);
        let wants_pull = self.opts.pull && name.parse::<Reference>().is_ok();
        match local {
            Ok(i) if !wants_pull => Ok(i),
            Err(StoreError::NotFound(_)) | Ok(_) => {
                let opts = crate::registry::PullOptions {
                    output: if self.opts.quiet {
                        crate::registry::Output::Quiet
                    } else {
                        crate::registry::Output::Stdout
                    },
                    ..Default::default()
                };
                crate::registry::pull(self.dirs, name, &opts)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn instruction(
        &mut self,
        st: &mut State,
        text: &str,
        inst: &Instruction,
        globals: &BTreeMap<String, String>,
        build_args: &BTreeMap<String, String>,
    ) -> Result<()> {
        let lookup = |k: &str| st.lookup(k);
        let subst = |s: &str| dockerfile::substitute(s, &lookup);
        let one_word = |s: &str| -> Result<String> { Ok(dockerfile::words(s, &lookup)?.join(" ")) };
        let mut changes: Vec<Change> = Vec::new();
        match inst {
            Instruction::Arg(args) => {
                let mut values = Vec::new();
                for (k, default) in args {
                    let value = match (build_args.get(k), default) {
                        (Some(v), _) => v.clone(),
                        (None, Some(d)) => subst(d)?,
                        (None, None) => globals.get(k).cloned().unwrap_or_default(),
                    };
                    values.push((k.clone(), value));
                }
                st.args.extend(values);
                // ARG changes no config; nothing to commit.
                return Ok(());
            }
            Instruction::Run(cmd) => return self.run_step(st, text, cmd),
            Instruction::Copy(spec) => return self.copy_step(st, text, spec, false),
            Instruction::Add(spec) => return self.copy_step(st, text, spec, true),
            Instruction::Workdir(w) => {
                changes.push(Change::Workdir(one_word(w)?));
            }
            Instruction::Env(raw) => {
                changes.push(Change::Env(dockerfile::key_values(raw, &lookup)?));
            }
            Instruction::Label(raw) => {
                changes.push(Change::Label(dockerfile::key_values(raw, &lookup)?));
            }
            Instruction::User(u) => changes.push(Change::User(one_word(u)?)),
            Instruction::StopSignal(s) => changes.push(Change::StopSignal(one_word(s)?)),
            Instruction::Expose(ports) => {
                let mut all = Vec::new();
                for p in ports {
                    for w in dockerfile::words(p, &lookup)? {
                        all.push(if w.contains('/') {
                            w
                        } else {
                            format!("{w}/tcp")
                        });
                    }
                }
                changes.push(Change::Expose(all));
            }
            Instruction::Volume(v) => {
                let mut all = Vec::new();
                for p in v {
                    all.push(subst(p)?);
                }
                changes.push(Change::Volume(all));
            }
            Instruction::Cmd(c) => {
                st.cmd_set = true;
                changes.push(Change::Cmd(argv(&st.shell, c)));
            }
            Instruction::Entrypoint(c) => {
                changes.push(Change::Entrypoint(argv(&st.shell, c)));
                // A new ENTRYPOINT drops the CMD inherited from the base.
                if !st.cmd_set {
                    st.config.set_cmd(None);
                }
            }
            Instruction::Shell(s) => {
                if s.is_empty() {
                    bail!("SHELL needs a command in JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]");
                }
                st.shell = s.clone();
                changes.push(Change::Label(vec![(
                    SHELL_LABEL.into(),
                    serde_json::to_string(s)?,
                )]));
            }
            Instruction::Healthcheck(h) => {
                // The OCI config has no Healthcheck field; keep it as a label.
                let value = match h {
                    Health::None => serde_json::json!({"Test": ["NONE"]}),
                    Health::Cmd { options, command } => {
                        let mut test = match command {
                            Command::Exec(_) => vec!["CMD".to_string()],
                            Command::Shell(_) => vec!["CMD-SHELL".to_string()],
                        };
                        match command {
                            Command::Exec(v) => test.extend(v.iter().cloned()),
                            Command::Shell(s) => test.push(s.clone()),
                        }
                        let mut obj = serde_json::json!({ "Test": test });
                        for (k, v) in options {
                            obj[k] = serde_json::Value::String(v.clone());
                        }
                        obj
                    }
                };
                changes.push(Change::Label(vec![(
                    "org.burrow.healthcheck".into(),
                    value.to_string(),
                )]));
            }
            Instruction::Onbuild(trigger) => {
                // Kept as a label (the OCI config has no OnBuild field), run
                // by builds FROM this image (`run_triggers`).
                let mut all: Vec<String> = st
                    .config
                    .labels()
                    .as_ref()
                    .and_then(|l| l.get(ONBUILD_LABEL))
                    .and_then(|v| serde_json::from_str(v).ok())
                    .unwrap_or_default();
                all.push(trigger.clone());
                changes.push(Change::Label(vec![(
                    ONBUILD_LABEL.into(),
                    serde_json::to_string(&all)?,
                )]));
            }
            Instruction::Maintainer(m) => st.author = Some(m.clone()),
        }
        for c in &changes {
            c.apply(&mut st.config);
        }
        // WORKDIR also makes the folder, as Docker does.
        if let Instruction::Workdir(_) = inst {
            let dir = st.config.working_dir().clone().unwrap_or_default();
            return self.workdir_step(st, text, &dir);
        }
        let key = cache::key(
            st.id(),
            &[
                text,
                &format!("{:?}", changes),
                st.author.as_deref().unwrap_or(""),
            ],
        );
        self.commit_step(st, &key, None, &format!("/bin/sh -c #(nop)  {text}"))
    }

    /// Reuses a cached image for `key`, or commits `layer` (a tar file).
    fn commit_step(
        &mut self,
        st: &mut State,
        key: &str,
        layer: Option<&Path>,
        created_by: &str,
    ) -> Result<()> {
        if !self.opts.no_cache
            && let Some(id) = self.cache.get(key)
            && let Some(image) = self.store.image_by_id(id)
        {
            self.say(" ---> Using cache");
            self.say(&format!(" ---> {}", &image.id[..12]));
            self.adopt(st, image);
            return Ok(());
        }
        let image = self.commit(st, layer, created_by)?;
        self.cache.put(key, &image.id);
        self.say(&format!(" ---> {}", &image.id[..12]));
        self.adopt(st, image);
        Ok(())
    }

    fn commit(&self, st: &State, layer: Option<&Path>, created_by: &str) -> Result<Image> {
        let new = NewImage {
            parent: st.image.as_ref(),
            config: st.config.clone(),
            created_by: created_by.to_string(),
            author: st.author.clone(),
            created: changes::created_now(),
            intermediate: true,
            ..Default::default()
        };
        Ok(match layer {
            Some(path) => {
                let mut f = fs::File::open(path)?;
                self.store.commit(Some(&mut f), &new)?
            }
            None => self.store.commit(None, &new)?,
        })
    }

    fn adopt(&self, st: &mut State, image: Image) {
        st.config = image.config.config().clone().unwrap_or_default();
        st.image = Some(image);
    }

    fn run_step(&mut self, st: &mut State, text: &str, cmd: &Command) -> Result<()> {
        let Some(image) = st.image.clone() else {
            bail!("RUN needs an image with a shell; this stage is FROM scratch");
        };
        let argv = argv(&st.shell, cmd);
        let shown = argv.join(" ");
        let mut env: Vec<String> = Vec::new();
        for (k, v) in &st.args {
            if st.env().iter().all(|(e, _)| e != k) {
                env.push(format!("{k}={v}"));
            }
        }
        let key = cache::key(st.id(), &[text, &env.join("\n")]);
        if !self.opts.no_cache
            && let Some(id) = self.cache.get(&key)
            && let Some(cached) = self.store.image_by_id(id)
        {
            self.say(" ---> Using cache");
            self.say(&format!(" ---> {}", &cached.id[..12]));
            self.adopt(st, cached);
            return Ok(());
        }
        let mut all_env: Vec<String> = st.env().iter().map(|(k, v)| format!("{k}={v}")).collect();
        all_env.extend(env);
        let req = CreateRequest {
            image: image.id.clone(),
            command: argv,
            entrypoint: Some(String::new()),
            env: all_env,
            workdir: st.config.working_dir().clone().filter(|w| !w.is_empty()),
            user: st.config.user().clone().filter(|u| !u.is_empty()),
            network: if self.opts.network.is_empty() {
                "slirp4netns".into()
            } else {
                self.opts.network.clone()
            },
            ..Default::default()
        };
        let rec = container::create(self.dirs, &req).context("cannot create the RUN container")?;
        let guard = Remove {
            dirs: self.dirs,
            id: rec.id.clone(),
        };
        self.say(&format!(" ---> Running in {}", &rec.id[..12]));
        let code = {
            let _quiet = self.opts.quiet.then(Silence::new).transpose()?;
            container::start(self.dirs, &rec, Attach::Foreground { log: true })?
        };
        let code = code.unwrap_or(0);
        if code != 0 {
            return Err(StepFailed {
                command: shown,
                code,
            }
            .into());
        }
        let tar = self.scratch.join("run.tar");
        let list = changes::export_layer(self.dirs, &rec, &tar)?;
        let layer = (!list.is_empty()).then_some(tar.as_path());
        let image = self.commit(st, layer, &shown)?;
        let _ = fs::remove_file(&tar);
        drop(guard);
        self.say(&format!(
            "Removing intermediate container {}",
            &rec.id[..12]
        ));
        self.cache.put(&key, &image.id);
        self.say(&format!(" ---> {}", &image.id[..12]));
        self.adopt(st, image);
        Ok(())
    }

    fn copy_step(&mut self, st: &mut State, text: &str, spec: &CopySpec, add: bool) -> Result<()> {
        let lookup = |k: &str| st.lookup(k);
        let word = |s: &str| -> Result<String> { Ok(dockerfile::words(s, &lookup)?.join(" ")) };
        let context_tree;
        let image_tree;
        let tree: &dyn Tree = match &spec.from {
            Some(from) => {
                let from = word(from)?;
                let image = match self.stage_image(&from) {
                    Some(i) => i?,
                    None => self.image(&from)?,
                };
                image_tree = ImageTree::new(from, &image.layers);
                &image_tree
            }
            None => {
                let Some(root) = &self.opts.context else {
                    bail!(
                        "{} needs a build context; with a Dockerfile on stdin (-) there is none",
                        if add { "ADD" } else { "COPY" }
                    );
                };
                context_tree = ContextTree {
                    root: root.clone(),
                    ignore: self.ignore.clone(),
                };
                &context_tree
            }
        };
        let mut sources = Vec::new();
        for s in &spec.sources {
            sources.push(word(s)?);
        }
        let mut dest = word(&spec.dest)?;
        if !dest.starts_with('/') {
            let wd = st
                .config
                .working_dir()
                .clone()
                .unwrap_or_else(|| "/".into());
            dest = format!("{}/{dest}", wd.trim_end_matches('/'));
        }
        let layers = st
            .image
            .as_ref()
            .map(|i| i.layers.clone())
            .unwrap_or_default();
        let (uid, gid) = match &spec.chown {
            Some(c) => chown_ids(&word(c)?, &layers)?,
            None => (0, 0),
        };
        let mode = match &spec.chmod {
            Some(m) => Some(
                u32::from_str_radix(&word(m)?, 8)
                    .map_err(|_| anyhow!("--chmod={m}: give an octal mode such as 755"))?,
            ),
            None => None,
        };
        let parent = ImageTree::new(String::new(), &layers);
        let dir_in_image = |p: &Path| parent.stat(p).is_some_and(|(_, m)| m.is_dir());
        let job = CopyJob {
            tree,
            sources,
            dest,
            uid,
            gid,
            mode,
            extract: add,
            dir_in_image: &dir_in_image,
            epoch: changes::source_date_epoch(),
        };
        let tar = self.scratch.join("copy.tar");
        let file = fs::File::create(&tar)?;
        let mut hashed = HashWriter {
            inner: io::BufWriter::new(file),
            hasher: Sha256::new(),
        };
        write_layer(&job, &mut hashed)?;
        hashed.flush()?;
        let sum = hex::encode(hashed.hasher.finalize());
        let key = cache::key(st.id(), &[text, &sum]);
        let kind = if add { "ADD" } else { "COPY" };
        let by = format!("/bin/sh -c #(nop) {kind} sha256:{sum} in {}", job.dest);
        self.commit_step(st, &key, Some(&tar), &by)?;
        let _ = fs::remove_file(&tar);
        Ok(())
    }

    fn workdir_step(&mut self, st: &mut State, text: &str, dir: &str) -> Result<()> {
        let layers = st
            .image
            .as_ref()
            .map(|i| i.layers.clone())
            .unwrap_or_default();
        let parent = ImageTree::new(String::new(), &layers);
        let rel = super::context::inside(dir);
        let key = cache::key(st.id(), &[text, dir]);
        let by = format!("/bin/sh -c #(nop) WORKDIR {dir}");
        if rel.as_os_str().is_empty() || parent.stat(&rel).is_some() {
            return self.commit_step(st, &key, None, &by);
        }
        let tar = self.scratch.join("workdir.tar");
        let mut b = tar::Builder::new(fs::File::create(&tar)?);
        let mut path = PathBuf::new();
        for comp in rel.components() {
            path.push(comp);
            if parent.stat(&path).is_some() {
                continue;
            }
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            // Root's, as Docker makes them; the store keeps owners, so
            // the header must name one.
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(0);
            h.set_mtime(changes::source_date_epoch().unwrap_or(0));
            b.append_data(&mut h, format!("{}/", path.display()), io::empty())?;
        }
        b.into_inner()?.sync_all()?;
        self.commit_step(st, &key, Some(&tar), &by)
    }
}

/// The SHELL an image was built with, if a build recorded one.
fn recorded_shell(image: &Image) -> Option<Vec<String>> {
    let labels = image.config.config().as_ref()?.labels().as_ref()?;
    serde_json::from_str::<Vec<String>>(labels.get(SHELL_LABEL)?)
        .ok()
        .filter(|s| !s.is_empty())
}

/// A command as the argv to run: exec form as is, shell form through SHELL.
fn argv(shell: &[String], c: &Command) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => shell.iter().cloned().chain([s.clone()]).collect(),
    }
}

/// `--chown=user[:group]`: numbers as they are, names from the image.
fn chown_ids(spec: &str, layers: &[PathBuf]) -> Result<(u32, u32)> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |p: &str| rootfs::read_image_file(layers, Path::new(p)).unwrap_or_default();
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => read("/etc/passwd")
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[0] == u)
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| anyhow!("--chown={spec}: no user \"{u}\" in the image's /etc/passwd"))?,
    };
    let gid = match g {
        None => uid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => read("/etc/group")
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    anyhow!("--chown={spec}: no group \"{g}\" in the image's /etc/group")
                })?,
        },
    };
    Ok((uid, gid))
}

/// Removes a build container when dropped (on success and on failure).
struct Remove<'a> {
    dirs: &'a Dirs,
    id: String,
}

impl Drop for Remove<'_> {
    fn drop(&mut self) {
        if let Ok(rec) = container::find(self.dirs, &self.id) {
            let _ = container::remove(self.dirs, &rec, true);
        }
    }
}

/// Points stdout and stderr at /dev/null until dropped (`build -q`).
struct Silence {
    out: std::os::fd::OwnedFd,
    err: std::os::fd::OwnedFd,
}

impl Silence {
    fn new() -> Result<Silence> {
        let _ = io::stdout().flush();
        let out = nix::unistd::dup(io::stdout())?;
        let err = nix::unistd::dup(io::stderr())?;
        let null = fs::OpenOptions::new().write(true).open("/dev/null")?;
        nix::unistd::dup2_stdout(&null)?;
        nix::unistd::dup2_stderr(&null)?;
        Ok(Silence { out, err })
    }
}

impl Drop for Silence {
    fn drop(&mut self) {
        let _ = nix::unistd::dup2_stdout(&self.out);
        let _ = nix::unistd::dup2_stderr(&self.err);
    }
}

struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// BuildKit's automatic platform arguments, for `FROM --platform=$BUILDPLATFORM`:
/// burrow builds on and for the host.
fn platform_arg(name: &str) -> Option<String> {
    let arch = crate::store::host_arch().to_string();
    Some(match name {
        "BUILDPLATFORM" | "TARGETPLATFORM" => format!("linux/{arch}"),
        "BUILDOS" | "TARGETOS" => "linux".into(),
        "BUILDARCH" | "TARGETARCH" => arch,
        _ => return None,
    })
}
