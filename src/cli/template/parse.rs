//! Template text → nodes: text and `{{ }}` actions are split apart, each
//! action is lexed and parsed into a pipeline, and `if`/`range`/`with` gather
//! the nodes up to their `end`.

use serde_json::Value;

use super::{Arg, Node, Pipe, Result, TemplateError, parse_err};

/// Parses a whole template.
pub(super) fn document(src: &str) -> Result<Vec<Node>> {
    let segments = split(src)?;
    let mut at = 0;
    let (nodes, end) = parse_list(&segments, &mut at)?;
    match end {
        None => Ok(nodes),
        Some(word) => parse_err(format!("unexpected {{{{{word}}}}}")),
    }
}

enum Segment {
    Text(String),
    Action(String),
}

/// Splits the source into text and the insides of `{{ }}`, applying the
/// trim markers and dropping comments.
fn split(src: &str) -> Result<Vec<Segment>> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let mut inner = &rest[open + 2..];
        if let Some(stripped) = inner.strip_prefix("- ") {
            text = text.trim_end();
            inner = stripped;
        }
        if !text.is_empty() {
            out.push(Segment::Text(text.to_string()));
        }
        let close = find_close(inner).ok_or_else(|| {
            TemplateError::Parse(format!("unclosed action: {{{{{}", inner.trim()))
        })?;
        let mut action = &inner[..close];
        trim_next = false;
        if let Some(stripped) = action.strip_suffix(" -") {
            action = stripped;
            trim_next = true;
        }
        let action = action.trim();
        if !(action.starts_with("/*") && action.ends_with("*/")) {
            out.push(Segment::Action(action.to_string()));
        }
        rest = &inner[close + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        out.push(Segment::Text(text.to_string()));
    }
    Ok(out)
}

/// Where `}}` closes an action, skipping string literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote = None;
    while i < b.len() {
        match (quote, b[i]) {
            (Some(b'"'), b'\\') => i += 1,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'`') => quote = Some(b[i]),
            (None, b'}') if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses nodes up to an `end` or `else` (returned, with the rest of that
/// action) or the end of the input (`None`).
fn parse_list(segs: &[Segment], at: &mut usize) -> Result<(Vec<Node>, Option<String>)> {
    let mut nodes = Vec::new();
    while let Some(seg) = segs.get(*at) {
        *at += 1;
        let action = match seg {
            Segment::Text(t) => {
                nodes.push(Node::Text(t.clone()));
                continue;
            }
            Segment::Action(a) => a.as_str(),
        };
        let (word, rest) = keyword(action);
        match word {
            "end" | "else" => return Ok((nodes, Some(action.to_string()))),
            "if" => nodes.push(parse_if(rest, segs, at)?),
            "range" | "with" => {
                let pipe = parse_pipe(rest)?;
                let (body, end) = parse_list(segs, at)?;
                let otherwise = match end.as_deref().map(keyword) {
                    Some(("end", "")) => Vec::new(),
                    Some(("else", "")) => expect_end(segs, at, word)?,
                    _ => return parse_err(format!("{{{{{word}}}}} without {{{{end}}}}")),
                };
                nodes.push(if word == "range" {
                    Node::Range {
                        pipe,
                        body,
                        otherwise,
                    }
                } else {
                    Node::With {
                        pipe,
                        body,
                        otherwise,
                    }
                });
            }
            "define" | "template" | "block" | "break" | "continue" => {
                return parse_err(format!("{{{{{word}}}}} is not supported"));
            }
            _ => nodes.push(Node::Action(parse_pipe(action)?)),
        }
    }
    Ok((nodes, None))
}

fn parse_if(cond: &str, segs: &[Segment], at: &mut usize) -> Result<Node> {
    let mut branches = vec![(parse_pipe(cond)?, Vec::new())];
    loop {
        let (body, end) = parse_list(segs, at)?;
        branches.last_mut().expect("one branch at least").1 = body;
        let end = end.ok_or_else(|| TemplateError::Parse("{{if}} without {{end}}".into()))?;
        match keyword(&end) {
            ("end", "") => {
                return Ok(Node::If {
                    branches,
                    otherwise: Vec::new(),
                });
            }
            ("else", "") => {
                let otherwise = expect_end(segs, at, "if")?;
                return Ok(Node::If {
                    branches,
                    otherwise,
                });
            }
            ("else", rest) => match keyword(rest) {
                ("if", cond) => branches.push((parse_pipe(cond)?, Vec::new())),
                _ => return parse_err(format!("unexpected {{{{{end}}}}}")),
            },
            _ => return parse_err(format!("unexpected {{{{{end}}}}}")),
        }
    }
}

/// The nodes of an `else` branch, which must end with `end`.
fn expect_end(segs: &[Segment], at: &mut usize, block: &str) -> Result<Vec<Node>> {
    let (nodes, end) = parse_list(segs, at)?;
    match end.as_deref().map(keyword) {
        Some(("end", "")) => Ok(nodes),
        _ => parse_err(format!("{{{{{block}}}}} without {{{{end}}}}")),
    }
}

/// The first word of an action and the rest.
fn keyword(action: &str) -> (&str, &str) {
    let action = action.trim();
    match action.find(|c: char| c.is_whitespace()) {
        Some(i) => (&action[..i], action[i..].trim_start()),
        None => (action, ""),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<String>),
    /// Fields right after a `)`.
    Chain(Vec<String>),
    Var(String, Vec<String>),
    Ident(String),
    Lit(Value),
    Open,
    Close,
    Bar,
    Comma,
    Declare,
    Assign,
}

fn lex(s: &str) -> Result<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    let fields = |i: &mut usize| -> Vec<String> {
        let mut path = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            let start = *i + 1;
            let mut j = start;
            while j < chars.len() && ident_char(chars[j]) {
                j += 1;
            }
            if j == start {
                break;
            }
            path.push(chars[start..j].iter().collect());
            *i = j;
        }
        path
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            ')' => {
                toks.push(Tok::Close);
                i += 1;
                if i < chars.len() && chars[i] == '.' {
                    toks.push(Tok::Chain(fields(&mut i)));
                }
            }
            '|' => {
                toks.push(Tok::Bar);
                i += 1;
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            '.' => {
                let path = fields(&mut i);
                if path.is_empty() {
                    i += 1; // a lone `.`
                }
                toks.push(Tok::Field(path));
            }
            '$' => {
                let start = i + 1;
                i = start;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                toks.push(Tok::Var(name, fields(&mut i)));
            }
            '"' => {
                let mut lit = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return parse_err(format!("unterminated string in {s:?}")),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            lit.push(match chars.get(i) {
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some(&c) => c,
                                None => return parse_err(format!("unterminated string in {s:?}")),
                            });
                        }
                        Some(&c) => lit.push(c),
                    }
                    i += 1;
                }
                i += 1;
                toks.push(Tok::Lit(Value::String(lit)));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or_else(|| TemplateError::Parse(format!("unterminated string in {s:?}")))?;
                toks.push(Tok::Lit(Value::String(
                    chars[start..start + end].iter().collect(),
                )));
                i = start + end + 1;
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let value = match text.parse::<i64>() {
                    Ok(n) => Value::from(n),
                    Err(_) => match text.parse::<f64>() {
                        Ok(f) => Value::from(f),
                        Err(_) => return parse_err(format!("bad number {text}")),
                    },
                };
                toks.push(Tok::Lit(value));
            }
            c if ident_char(c) => {
                let start = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                toks.push(match word.as_str() {
                    "true" => Tok::Lit(Value::Bool(true)),
                    "false" => Tok::Lit(Value::Bool(false)),
                    "nil" => Tok::Lit(Value::Null),
                    _ => Tok::Ident(word),
                });
            }
            other => return parse_err(format!("unexpected {other:?} in {s:?}")),
        }
    }
    Ok(toks)
}

fn parse_pipe(action: &str) -> Result<Pipe> {
    let toks = lex(action)?;
    let mut at = 0;
    let pipe = pipe_at(&toks, &mut at)?;
    if at != toks.len() {
        return parse_err(format!("unexpected {:?} in {action:?}", toks[at]));
    }
    if pipe.cmds.is_empty() {
        return parse_err(format!("missing value in {{{{{action}}}}}"));
    }
    Ok(pipe)
}

fn pipe_at(toks: &[Tok], at: &mut usize) -> Result<Pipe> {
    let mut vars = Vec::new();
    let mut assign = false;
    // `$a, $b :=` or `$a =`: look ahead for the operator.
    let mut j = *at;
    let mut names = Vec::new();
    while let Some(Tok::Var(name, path)) = toks.get(j) {
        if !path.is_empty() {
            break;
        }
        names.push(name.clone());
        j += 1;
        match toks.get(j) {
            Some(Tok::Comma) => j += 1,
            Some(Tok::Declare) | Some(Tok::Assign) => {
                assign = toks[j] == Tok::Assign;
                vars = std::mem::take(&mut names);
                *at = j + 1;
                break;
            }
            _ => break,
        }
    }
    let mut cmds = Vec::new();
    let mut cmd = Vec::new();
    while let Some(tok) = toks.get(*at) {
        match tok {
            Tok::Close => break,
            Tok::Bar => {
                if cmd.is_empty() {
                    return parse_err("empty command before |");
                }
                cmds.push(std::mem::take(&mut cmd));
                *at += 1;
                continue;
            }
            _ => cmd.push(arg_at(toks, at)?),
        }
    }
    if !cmd.is_empty() {
        cmds.push(cmd);
    } else if !cmds.is_empty() {
        return parse_err("empty command after |");
    }
    Ok(Pipe { vars, assign, cmds })
}

fn arg_at(toks: &[Tok], at: &mut usize) -> Result<Arg> {
    let tok = toks[*at].clone();
    *at += 1;
    Ok(match tok {
        Tok::Field(path) => Arg::Field(path),
        Tok::Var(name, path) => Arg::Var(name, path),
        Tok::Ident(name) => Arg::Func(name),
        Tok::Lit(v) => Arg::Lit(v),
        Tok::Open => {
            let inner = pipe_at(toks, at)?;
            if toks.get(*at) != Some(&Tok::Close) {
                return parse_err("unclosed (");
            }
            *at += 1;
            let path = match toks.get(*at) {
                Some(Tok::Chain(path)) => {
                    *at += 1;
                    path.clone()
                }
                _ => Vec::new(),
            };
            Arg::Sub(Box::new(inner), path)
        }
        other => return parse_err(format!("unexpected {other:?}")),
    })
}
