//! Running parsed nodes over a JSON document: fields, variables, pipelines
//! and the blocks, with Go's rules for truth and for printing values.

use serde_json::Value;

use super::funcs::call;
use super::{Arg, Node, Pipe, Result, exec_err};

/// Renders `nodes` with `data` as `.` and `$`.
pub(super) fn render(nodes: &[Node], data: &Value) -> Result<String> {
    let mut out = String::new();
    let mut scope = Scope {
        root: data,
        vars: Vec::new(),
    };
    exec_list(nodes, data, &mut scope, &mut out)?;
    Ok(out)
}

struct Scope<'a> {
    root: &'a Value,
    vars: Vec<(String, Value)>,
}

/// What a field lookup found: Go prints a missing map key as `<no value>`.
pub(super) const NO_VALUE: &str = "\u{0}no value";

fn exec_list(nodes: &[Node], dot: &Value, scope: &mut Scope, out: &mut String) -> Result<()> {
    let mark = scope.vars.len();
    for node in nodes {
        exec_node(node, dot, scope, out)?;
    }
    scope.vars.truncate(mark);
    Ok(())
}

fn exec_node(node: &Node, dot: &Value, scope: &mut Scope, out: &mut String) -> Result<()> {
    match node {
        Node::Text(t) => out.push_str(t),
        Node::Action(pipe) => {
            let v = eval_pipe(pipe, dot, scope)?;
            if pipe.vars.is_empty() {
                out.push_str(&show(&v));
            }
        }
        Node::If {
            branches,
            otherwise,
        } => {
            for (cond, body) in branches {
                if truthy(&eval_pipe(cond, dot, scope)?) {
                    return exec_list(body, dot, scope, out);
                }
            }
            exec_list(otherwise, dot, scope, out)?;
        }
        Node::With {
            pipe,
            body,
            otherwise,
        } => {
            let v = eval_pipe(pipe, dot, scope)?;
            if truthy(&v) {
                exec_list(body, &v, scope, out)?;
            } else {
                exec_list(otherwise, dot, scope, out)?;
            }
        }
        Node::Range {
            pipe,
            body,
            otherwise,
        } => exec_range(pipe, body, otherwise, dot, scope, out)?,
    }
    Ok(())
}

fn exec_range(
    pipe: &Pipe,
    body: &[Node],
    otherwise: &[Node],
    dot: &Value,
    scope: &mut Scope,
    out: &mut String,
) -> Result<()> {
    // The variables are the range's own: `$i, $v := .X` binds key and value
    // for each turn, so the pipe's commands are evaluated without them.
    let list = eval_cmds(&pipe.cmds, dot, scope)?;
    let items: Vec<(Value, Value)> = match &list {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (Value::from(i), v.clone()))
            .collect(),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            keys.into_iter()
                .map(|k| (Value::String(k.clone()), m[k].clone()))
                .collect()
        }
        Value::Null => Vec::new(),
        Value::String(s) if s == NO_VALUE => Vec::new(),
        other => return exec_err(format!("range can't iterate over {}", show(other))),
    };
    if items.is_empty() {
        return exec_list(otherwise, dot, scope, out);
    }
    for (key, value) in items {
        let mark = scope.vars.len();
        match pipe.vars.as_slice() {
            [] => {}
            [v] => scope.vars.push((v.clone(), value.clone())),
            [k, v] => {
                scope.vars.push((k.clone(), key));
                scope.vars.push((v.clone(), value.clone()));
            }
            _ => return exec_err("range takes at most two variables"),
        }
        exec_list(body, &value, scope, out)?;
        scope.vars.truncate(mark);
    }
    Ok(())
}

fn eval_pipe(pipe: &Pipe, dot: &Value, scope: &mut Scope) -> Result<Value> {
    let v = eval_cmds(&pipe.cmds, dot, scope)?;
    match (pipe.vars.as_slice(), pipe.assign) {
        ([], _) => {}
        ([name], false) => scope.vars.push((name.clone(), v.clone())),
        ([name], true) => match scope.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = v.clone(),
            None => return exec_err(format!("undefined variable ${name}")),
        },
        _ => return exec_err("too many variables in a declaration"),
    }
    Ok(v)
}

fn eval_cmds(cmds: &[Vec<Arg>], dot: &Value, scope: &mut Scope) -> Result<Value> {
    let mut piped: Option<Value> = None;
    for cmd in cmds {
        piped = Some(eval_cmd(cmd, piped, dot, scope)?);
    }
    Ok(piped.unwrap_or(Value::Null))
}

fn eval_cmd(cmd: &[Arg], piped: Option<Value>, dot: &Value, scope: &mut Scope) -> Result<Value> {
    if let [Arg::Func(name), rest @ ..] = cmd {
        let mut args = rest
            .iter()
            .map(|a| eval_arg(a, dot, scope))
            .collect::<Result<Vec<_>>>()?;
        args.extend(piped);
        return call(name, &args);
    }
    match (cmd, piped) {
        ([arg], None) => eval_arg(arg, dot, scope),
        (_, Some(_)) => exec_err("only a function can take a piped value"),
        _ => exec_err("a value cannot be called with arguments"),
    }
}

fn eval_arg(arg: &Arg, dot: &Value, scope: &mut Scope) -> Result<Value> {
    match arg {
        Arg::Lit(v) => Ok(v.clone()),
        Arg::Field(path) => walk(dot, path),
        Arg::Var(name, path) => {
            let base = if name.is_empty() {
                scope.root.clone()
            } else {
                match scope.vars.iter().rev().find(|(n, _)| n == name) {
                    Some((_, v)) => v.clone(),
                    None => return exec_err(format!("undefined variable ${name}")),
                }
            };
            walk(&base, path)
        }
        Arg::Sub(pipe, path) => {
            let v = eval_pipe(pipe, dot, scope)?;
            walk(&v, path)
        }
        Arg::Func(name) => call(name, &[]),
    }
}

fn walk(v: &Value, path: &[String]) -> Result<Value> {
    let mut cur = v.clone();
    for name in path {
        cur = match &cur {
            Value::Object(m) => m
                .get(name)
                .cloned()
                .unwrap_or_else(|| Value::String(NO_VALUE.into())),
            Value::Null => return exec_err(format!("nil has no field {name}")),
            other => {
                return exec_err(format!("can't evaluate field {name} in {}", show(other)));
            }
        };
    }
    Ok(cur)
}

pub(super) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty() && s != NO_VALUE,
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// A value as Go's `fmt` prints it (`%v`).
pub(super) fn show(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) if s == NO_VALUE => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", show(&m[k])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}
