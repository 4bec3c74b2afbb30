//! Dockerfile text → burrow's [`Dockerfile`]: stages of [`Instruction`]s.
//!
//! Pure: no I/O. `parse-dockerfile` does the lexing (line continuations,
//! comments, the `escape` and `syntax` directives, JSON forms, heredocs);
//! this module turns its spanned tree into owned, typed instructions and
//! keeps each instruction's text for the `Step N/M : ...` lines and the
//! cache key. Variables are *not* substituted here: their values change as
//! the build runs (ENV, ARG, build args), so the builder calls
//! [`substitute`] and [`words`] step by step.

use std::fmt;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("cannot parse the Dockerfile: {0}")]
    Syntax(String),
    #[error("the Dockerfile has no FROM instruction")]
    NoFrom,
    #[error("{0} is not allowed before the first FROM; only ARG is")]
    BeforeFrom(String),
    #[error("{instruction}: {reason}")]
    Invalid { instruction: String, reason: String },
    #[error("variable substitution in \"{0}\": {1}")]
    Substitution(String, &'static str),
}

/// A command: exec form (JSON array) or shell form (run by the SHELL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

/// `COPY`/`ADD` as written (sources and dest not yet substituted).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopySpec {
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub sources: Vec<String>,
    pub dest: String,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    None,
    Cmd {
        /// `--interval=5s` etc., as (name, value).
        options: Vec<(String, String)>,
        command: Command,
    },
}

/// One instruction of a stage. Texts are raw: the builder substitutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Run(Command),
    Copy(CopySpec),
    Add(CopySpec),
    /// Raw `key=value ...` (or legacy `key value`).
    Env(String),
    /// `name[=default]` each.
    Arg(Vec<(String, Option<String>)>),
    /// Raw `key=value ...`.
    Label(String),
    Workdir(String),
    User(String),
    Cmd(Command),
    Entrypoint(Command),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    Shell(Vec<String>),
    Healthcheck(Health),
    /// The trigger's text, recorded in the config.
    Onbuild(String),
    Maintainer(String),
}

/// An instruction and its text as written (continuations joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub text: String,
    pub instruction: Instruction,
}

/// `FROM [--platform=P] IMAGE [AS NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub text: String,
    pub image: String,
    pub platform: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub from: From,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// ARGs before the first FROM: usable in FROM lines, and re-declared by
    /// an `ARG NAME` inside a stage.
    pub global_args: Vec<(String, Option<String>)>,
    pub stages: Vec<Stage>,
    pub escape: char,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Shell(s) => f.write_str(s),
            Command::Exec(v) => write!(f, "{}", serde_json::to_string(v).unwrap_or_default()),
        }
    }
}

/// Parses a whole Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let parsed = parse_dockerfile::parse(text).map_err(|e| ParseError::Syntax(one_line(&e)))?;
    let escape = parsed
        .parser_directives
        .escape
        .as_ref()
        .map_or('\\', |d| d.value.value);
    let starts: Vec<usize> = parsed.instructions.iter().map(|i| start_of(i)).collect();
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for (n, inst) in parsed.instructions.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(text.len());
        let raw = step_text(&text[starts[n]..end], escape);
        if let parse_dockerfile::Instruction::From(from) = inst {
            let mut platform = None;
            for flag in &from.options {
                match flag.name.value.as_ref() {
                    "platform" => platform = flag.value.as_ref().map(|v| v.value.to_string()),
                    other => return Err(invalid(&raw, format!("unknown flag --{other}"))),
                }
            }
            stages.push(Stage {
                from: From {
                    text: raw,
                    image: from.image.value.to_string(),
                    platform,
                    name: from.as_.as_ref().map(|(_, n)| n.value.to_lowercase()),
                },
                steps: Vec::new(),
            });
            continue;
        }
        let instruction = convert(inst, text, escape, &raw)?;
        match stages.last_mut() {
            Some(stage) => stage.steps.push(Step {
                text: raw,
                instruction,
            }),
            None => match instruction {
                Instruction::Arg(args) => global_args.extend(args),
                _ => return Err(ParseError::BeforeFrom(raw)),
            },
        }
    }
    if stages.is_empty() {
        return Err(ParseError::NoFrom);
    }
    Ok(Dockerfile {
        global_args,
        stages,
        escape,
    })
}

fn invalid(text: &str, reason: impl Into<String>) -> ParseError {
    ParseError::Invalid {
        instruction: text.to_string(),
        reason: reason.into(),
    }
}

fn one_line(e: &impl fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Where an instruction's keyword starts.
fn start_of(inst: &parse_dockerfile::Instruction<'_>) -> usize {
    use parse_dockerfile::Instruction as I;
    match inst {
        I::Add(i) => i.add.span.start,
        I::Arg(i) => i.arg.span.start,
        I::Cmd(i) => i.cmd.span.start,
        I::Copy(i) => i.copy.span.start,
        I::Entrypoint(i) => i.entrypoint.span.start,
        I::Env(i) => i.env.span.start,
        I::Expose(i) => i.expose.span.start,
        I::From(i) => i.from.span.start,
        I::Healthcheck(i) => i.healthcheck.span.start,
        I::Label(i) => i.label.span.start,
        I::Maintainer(i) => i.maintainer.span.start,
        I::Onbuild(i) => i.onbuild.span.start,
        I::Run(i) => i.run.span.start,
        I::Shell(i) => i.shell.span.start,
        I::Stopsignal(i) => i.stopsignal.span.start,
        I::User(i) => i.user.span.start,
        I::Volume(i) => i.volume.span.start,
        I::Workdir(i) => i.workdir.span.start,
        _ => 0,
    }
}

/// An instruction's text as one line: continuations joined, comment and
/// blank lines that follow it dropped. A heredoc keeps only its first line.
fn step_text(chunk: &str, escape: char) -> String {
    let mut out = String::new();
    let mut lines = chunk.lines();
    let Some(first) = lines.next() else {
        return out;
    };
    let trimmed = first.trim_end();
    match trimmed.strip_suffix(escape) {
        None => out.push_str(trimmed),
        Some(body) => {
            out.push_str(body);
            // Comment lines inside a continuation are skipped, as Docker does.
            for next in lines {
                let t = next.trim_start();
                if t.starts_with('#') || t.is_empty() {
                    continue;
                }
                let t = next.trim_end();
                match t.strip_suffix(escape) {
                    Some(b) => out.push_str(b),
                    None => {
                        out.push_str(t);
                        break;
                    }
                }
            }
        }
    }
    out.trim().to_string()
}

/// A shell-form command with its continuations joined.
fn join_continuations(s: &str, escape: char) -> String {
    let mut out = String::new();
    let mut lines = s.split('\n').peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_end_matches('\r');
        match trimmed.strip_suffix(escape) {
            Some(body) if lines.peek().is_some() => out.push_str(body),
            _ => {
                let t = trimmed.trim_start();
                if !t.starts_with('#') || out.is_empty() {
                    out.push_str(trimmed);
                }
                if lines.peek().is_some() {
                    out.push('\n');
                }
            }
        }
    }
    out.trim().to_string()
}

fn command(c: &parse_dockerfile::Command<'_>, escape: char) -> Command {
    match c {
        parse_dockerfile::Command::Exec(v) => {
            Command::Exec(v.value.iter().map(|s| s.value.to_string()).collect())
        }
        parse_dockerfile::Command::Shell(s) => Command::Shell(join_continuations(s.value, escape)),
        _ => Command::Shell(String::new()),
    }
}

fn copy_spec(
    options: &[parse_dockerfile::Flag<'_>],
    src: &[parse_dockerfile::Source<'_>],
    dest: &str,
    raw: &str,
) -> Result<CopySpec, ParseError> {
    let mut spec = CopySpec {
        dest: dest.to_string(),
        ..Default::default()
    };
    for flag in options {
        let value = flag.value.as_ref().map(|v| v.value.to_string());
        match flag.name.value.as_ref() {
            "from" => spec.from = value,
            "chown" => spec.chown = value,
            "chmod" => spec.chmod = value,
            // Accepted and ignored: burrow's layers always copy, never link.
            "link" | "parents" => {}
            other => return Err(invalid(raw, format!("unknown flag --{other}"))),
        }
    }
    for s in src {
        match s {
            parse_dockerfile::Source::Path(p) => spec.sources.push(p.value.to_string()),
            _ => return Err(invalid(raw, "heredoc sources are not supported yet")),
        }
    }
    Ok(spec)
}

fn convert(
    inst: &parse_dockerfile::Instruction<'_>,
    text: &str,
    escape: char,
    raw: &str,
) -> Result<Instruction, ParseError> {
    use parse_dockerfile::Instruction as I;
    Ok(match inst {
        I::Run(r) => {
            if let Some(flag) = r.options.first() {
                return Err(invalid(
                    raw,
                    format!("RUN --{} is not supported yet", flag.name.value),
                ));
            }
            match (&r.arguments, r.here_docs.first()) {
                (parse_dockerfile::Command::Shell(s), Some(doc)) if s.value.trim().is_empty() => {
                    Instruction::Run(Command::Shell(doc.value.to_string()))
                }
                (c, _) => Instruction::Run(command(c, escape)),
            }
        }
        I::Cmd(c) => Instruction::Cmd(command(&c.arguments, escape)),
        I::Entrypoint(c) => Instruction::Entrypoint(command(&c.arguments, escape)),
        I::Copy(c) => Instruction::Copy(copy_spec(&c.options, &c.src, &c.dest.value, raw)?),
        I::Add(c) => Instruction::Add(copy_spec(&c.options, &c.src, &c.dest.value, raw)?),
        I::Env(e) => Instruction::Env(join_continuations(&e.arguments.value, escape)),
        I::Label(l) => Instruction::Label(join_continuations(&l.arguments.value, escape)),
        I::Arg(a) => {
            let mut args = Vec::new();
            for word in
                words(&a.arguments.value, &|_| None).map_err(|e| invalid(raw, e.to_string()))?
            {
                match word.split_once('=') {
                    Some((k, v)) => args.push((k.to_string(), Some(v.to_string()))),
                    None => args.push((word, None)),
                }
            }
            if args.is_empty() {
                return Err(invalid(raw, "ARG needs a name"));
            }
            Instruction::Arg(args)
        }
        I::Workdir(w) => Instruction::Workdir(w.arguments.value.trim().to_string()),
        I::User(u) => Instruction::User(u.arguments.value.trim().to_string()),
        I::Expose(e) => {
            Instruction::Expose(e.arguments.iter().map(|s| s.value.to_string()).collect())
        }
        I::Volume(v) => Instruction::Volume(match &v.arguments {
            parse_dockerfile::JsonOrStringArray::Json(j) => {
                j.value.iter().map(|s| s.value.to_string()).collect()
            }
            parse_dockerfile::JsonOrStringArray::String(s) => {
                s.iter().map(|s| s.value.to_string()).collect()
            }
        }),
        I::Stopsignal(s) => Instruction::StopSignal(s.arguments.value.trim().to_string()),
        I::Shell(s) => {
            Instruction::Shell(s.arguments.iter().map(|s| s.value.to_string()).collect())
        }
        I::Healthcheck(h) => Instruction::Healthcheck(match &h.arguments {
            parse_dockerfile::HealthcheckArguments::Cmd { arguments, .. } => Health::Cmd {
                options: h
                    .options
                    .iter()
                    .map(|f| {
                        let v = f
                            .value
                            .as_ref()
                            .map(|v| v.value.to_string())
                            .unwrap_or_default();
                        (f.name.value.to_string(), v)
                    })
                    .collect(),
                command: command(arguments, escape),
            },
            _ => Health::None,
        }),
        I::Onbuild(o) => {
            let start = start_of(&o.instruction);
            Instruction::Onbuild(step_text(&text[start..], escape))
        }
        I::Maintainer(m) => Instruction::Maintainer(m.name.value.to_string()),
        I::From(_) => unreachable!("FROM starts a stage"),
        _ => return Err(invalid(raw, "unknown instruction")),
    })
}

/// Expands `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
/// `${VAR:+alt}` and `${VAR+alt}` in `s`; `\$` is a literal `$`. Quotes are
/// kept (see [`words`] for quote removal). Unknown variables are empty.
pub fn substitute(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ParseError> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    let mut single = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                single = !single;
                out.push(c);
            }
            '\\' if !single => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '$' if !single => out.push_str(&expand(&mut chars, lookup, s)?),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// One `$...` reference, the `$` already read.
fn expand(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    lookup: &dyn Fn(&str) -> Option<String>,
    whole: &str,
) -> Result<String, ParseError> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.peek() {
        Some('{') => {
            chars.next();
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if !is_name(c) {
                    break;
                }
                name.push(c);
                chars.next();
            }
            if name.is_empty() {
                return Err(ParseError::Substitution(
                    whole.into(),
                    "missing variable name",
                ));
            }
            let mut op = String::new();
            let mut word = String::new();
            let mut depth = 0;
            loop {
                match chars.next() {
                    None => return Err(ParseError::Substitution(whole.into(), "missing '}'")),
                    Some('}') if depth == 0 => break,
                    Some(c)
                        if op.is_empty()
                            && word.is_empty()
                            && (c == ':' || c == '-' || c == '+') =>
                    {
                        op.push(c);
                        if c == ':' {
                            match chars.next() {
                                Some(m @ ('-' | '+')) => op.push(m),
                                _ => {
                                    return Err(ParseError::Substitution(
                                        whole.into(),
                                        "unsupported modifier; use :-, :+, - or +",
                                    ));
                                }
                            }
                        }
                    }
                    Some(c) => {
                        if c == '{' {
                            depth += 1;
                        } else if c == '}' {
                            depth -= 1;
                        }
                        if op.is_empty() {
                            return Err(ParseError::Substitution(
                                whole.into(),
                                "unsupported modifier; use :-, :+, - or +",
                            ));
                        }
                        word.push(c);
                    }
                }
            }
            let value = lookup(&name);
            let word = || substitute(&word, lookup);
            Ok(match op.as_str() {
                "" => value.unwrap_or_default(),
                ":-" => match value {
                    Some(v) if !v.is_empty() => v,
                    _ => word()?,
                },
                "-" => match value {
                    Some(v) => v,
                    None => word()?,
                },
                ":+" => match value {
                    Some(v) if !v.is_empty() => word()?,
                    _ => String::new(),
                },
                _ => match value {
                    Some(_) => word()?,
                    None => String::new(),
                },
            })
        }
        Some(&c) if is_name(c) => {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if !is_name(c) {
                    break;
                }
                name.push(c);
                chars.next();
            }
            Ok(lookup(&name).unwrap_or_default())
        }
        _ => Ok("$".into()),
    }
}

/// Substitutes, then splits into words on unquoted whitespace, removing
/// quotes and escapes, as Docker does for ENV, LABEL, ARG, EXPOSE, COPY.
pub fn words(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for n in chars.by_ref() {
                    if n == '\'' {
                        break;
                    }
                    cur.push(n);
                }
            }
            '"' => {
                in_word = true;
                while let Some(n) = chars.next() {
                    match n {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&e @ ('"' | '\\' | '$')) => {
                                cur.push(e);
                                chars.next();
                            }
                            _ => cur.push('\\'),
                        },
                        '$' => cur.push_str(&expand(&mut chars, lookup, s)?),
                        _ => cur.push(n),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '$' => {
                in_word = true;
                cur.push_str(&expand(&mut chars, lookup, s)?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `key=value` pairs of ENV or LABEL (or the legacy `ENV key value`).
pub fn key_values(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, ParseError> {
    let ws = words(s, lookup)?;
    match ws.first() {
        None => Err(ParseError::Substitution(
            s.into(),
            "needs at least one key=value",
        )),
        Some(first) if !first.contains('=') => {
            let rest = s.trim_start()[first.len()..].trim();
            if rest.is_empty() {
                return Err(ParseError::Substitution(s.into(), "needs a value"));
            }
            Ok(vec![(first.clone(), words(rest, lookup)?.join(" "))])
        }
        Some(_) => ws
            .into_iter()
            .map(|w| match w.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(ParseError::Substitution(
                    s.into(),
                    "each word needs key=value",
                )),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("one".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitution_forms() {
        let s = |t: &str| substitute(t, &env).unwrap();
        assert_eq!(s("$A/${A}x"), "one/onex");
        assert_eq!(
            s("${NO:-def}|${EMPTY:-def}|${EMPTY-def}|${A:-def}"),
            "def|def||one"
        );
        assert_eq!(s("${A:+set}|${NO:+set}|${EMPTY+set}"), "set||set");
        assert_eq!(s("\\$A '$A'"), "\\$A '$A'");
        assert_eq!(s("${NO:-${A}}"), "one");
        assert!(substitute("${A", &env).is_err());
    }

    #[test]
    fn words_remove_quotes_and_escapes() {
        let w = words(r#"a "b c" 'd $A' e\ f "$A""#, &env).unwrap();
        assert_eq!(w, ["a", "b c", "d $A", "e f", "one"]);
        let kv = key_values(r#"X=1 Y="two words" Z=$A"#, &env).unwrap();
        assert_eq!(kv[1], ("Y".into(), "two words".into()));
        assert_eq!(kv[2], ("Z".into(), "one".into()));
        assert_eq!(
            key_values("LEGACY some value", &env).unwrap(),
            [("LEGACY".to_string(), "some value".to_string())]
        );
    }

    #[test]
    fn parses_stages_args_and_every_instruction() {
        let text = "# syntax=docker/dockerfile:1\nARG BASE=busybox\nFROM --platform=linux/amd64 $BASE AS Build\nARG BASE\nRUN echo a \\\n  && echo b\nRUN [\"echo\", \"x y\"]\nENV A=1 B=\"two words\"\nCOPY --from=base --chown=1:2 --chmod=640 a b /dst/\nADD x.tar /\nWORKDIR /w\nUSER 1:1\nCMD [\"sh\"]\nENTRYPOINT echo\nEXPOSE 80 443/udp\nLABEL a=b\nVOLUME [\"/data\"]\nSTOPSIGNAL SIGINT\nSHELL [\"/bin/sh\", \"-ec\"]\nHEALTHCHECK --interval=5s CMD true\nONBUILD RUN echo hi\nFROM scratch\nCOPY --from=build /w /\n";
        let d = parse(text).unwrap();
        assert_eq!(
            d.global_args,
            [("BASE".to_string(), Some("busybox".to_string()))]
        );
        assert_eq!(d.stages.len(), 2);
        let s = &d.stages[0];
        assert_eq!(s.from.image, "$BASE");
        assert_eq!(s.from.name.as_deref(), Some("build"));
        assert_eq!(s.from.platform.as_deref(), Some("linux/amd64"));
        assert_eq!(s.steps[1].text, "RUN echo a   && echo b");
        assert_eq!(
            s.steps[1].instruction,
            Instruction::Run(Command::Shell("echo a   && echo b".into()))
        );
        assert_eq!(
            s.steps[2].instruction,
            Instruction::Run(Command::Exec(vec!["echo".into(), "x y".into()]))
        );
        let Instruction::Copy(c) = &s.steps[4].instruction else {
            panic!("{:?}", s.steps[4]);
        };
        assert_eq!(c.from.as_deref(), Some("base"));
        assert_eq!(c.chmod.as_deref(), Some("640"));
        assert_eq!(c.sources, ["a", "b"]);
        assert_eq!(c.dest, "/dst/");
        assert!(matches!(
            s.steps[15].instruction,
            Instruction::Healthcheck(Health::Cmd { .. })
        ));
        assert_eq!(
            s.steps[16].instruction,
            Instruction::Onbuild("RUN echo hi".into())
        );
        assert_eq!(s.steps.len(), 17);
    }

    #[test]
    fn escape_directive_and_errors() {
        let d = parse("# escape=`\nFROM busybox\nRUN echo a `\n  b\n").unwrap();
        assert_eq!(
            d.stages[0].steps[0].instruction,
            Instruction::Run(Command::Shell("echo a   b".into()))
        );
        assert!(parse("RUN true\n").is_err());
        assert!(parse("ARG X\n").is_err());
    }

    #[test]
    fn heredoc_run() {
        let d = parse("FROM busybox\nRUN <<EOF\necho one\necho two\nEOF\n").unwrap();
        assert_eq!(
            d.stages[0].steps[0].instruction,
            Instruction::Run(Command::Shell("echo one\necho two\n".into()))
        );
    }
}
