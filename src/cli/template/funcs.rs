//! The functions a template can call: Go's own and Docker's.

use serde_json::Value;

use super::run::{NO_VALUE, show, truthy};
use super::{Result, TemplateError, exec_err};

fn want_args(name: &str, args: &[Value], n: usize) -> Result<()> {
    if args.len() == n {
        Ok(())
    } else {
        exec_err(format!("{name} takes {n} arguments, got {}", args.len()))
    }
}

fn number(name: &str, v: &Value) -> Result<f64> {
    match v {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
        other => exec_err(format!("{name}: {} is not a number", show(other))),
    }
}

pub(super) fn call(name: &str, args: &[Value]) -> Result<Value> {
    let s = |v: &str| Value::String(v.to_string());
    match name {
        "json" => {
            want_args(name, args, 1)?;
            let v = match &args[0] {
                Value::String(x) if x == NO_VALUE => Value::Null,
                v => v.clone(),
            };
            Ok(s(&serde_json::to_string(&v).unwrap_or_default()))
        }
        "lower" | "upper" | "title" => {
            want_args(name, args, 1)?;
            let t = show(&args[0]);
            Ok(s(&match name {
                "lower" => t.to_lowercase(),
                "upper" => t.to_uppercase(),
                _ => title(&t),
            }))
        }
        "join" => {
            want_args(name, args, 2)?;
            let sep = show(&args[1]);
            match &args[0] {
                Value::Array(a) => Ok(s(&a.iter().map(show).collect::<Vec<_>>().join(&sep))),
                other => Ok(s(&show(other))),
            }
        }
        "split" => {
            want_args(name, args, 2)?;
            let (t, sep) = (show(&args[0]), show(&args[1]));
            Ok(Value::Array(t.split(sep.as_str()).map(s).collect()))
        }
        "truncate" => {
            want_args(name, args, 2)?;
            let n = number(name, &args[1])? as usize;
            Ok(s(&show(&args[0]).chars().take(n).collect::<String>()))
        }
        "pad" => {
            want_args(name, args, 3)?;
            let (l, r) = (number(name, &args[1])?, number(name, &args[2])?);
            Ok(s(&format!(
                "{}{}{}",
                " ".repeat(l as usize),
                show(&args[0]),
                " ".repeat(r as usize)
            )))
        }
        "len" => {
            want_args(name, args, 1)?;
            let n = match &args[0] {
                Value::String(x) if x != NO_VALUE => x.len(),
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                other => return exec_err(format!("len of {}", show(other))),
            };
            Ok(Value::from(n))
        }
        "index" => {
            let Some((first, keys)) = args.split_first() else {
                return exec_err("index takes a value and keys");
            };
            let mut cur = first.clone();
            for key in keys {
                cur = match (&cur, key) {
                    (Value::Object(m), Value::String(k)) => m
                        .get(k)
                        .cloned()
                        .unwrap_or_else(|| Value::String(NO_VALUE.into())),
                    (Value::Array(a), Value::Number(n)) => {
                        let i = n.as_u64().unwrap_or(u64::MAX) as usize;
                        match a.get(i) {
                            Some(v) => v.clone(),
                            None => return exec_err(format!("index {i} out of range")),
                        }
                    }
                    (c, k) => return exec_err(format!("can't index {} with {}", show(c), show(k))),
                };
            }
            Ok(cur)
        }
        "not" => {
            want_args(name, args, 1)?;
            Ok(Value::Bool(!truthy(&args[0])))
        }
        "and" => Ok(args
            .iter()
            .find(|v| !truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null)),
        "or" => Ok(args
            .iter()
            .find(|v| truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null)),
        "eq" => {
            let Some((a, rest)) = args.split_first() else {
                return exec_err("eq takes two arguments at least");
            };
            Ok(Value::Bool(rest.iter().any(|b| same(a, b))))
        }
        "ne" => {
            want_args(name, args, 2)?;
            Ok(Value::Bool(!same(&args[0], &args[1])))
        }
        "lt" | "le" | "gt" | "ge" => {
            want_args(name, args, 2)?;
            let ord = match (&args[0], &args[1]) {
                (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                (a, b) => return exec_err(format!("cannot compare {} and {}", show(a), show(b))),
            };
            let ord = ord.ok_or_else(|| TemplateError::Exec("cannot compare NaN".into()))?;
            use std::cmp::Ordering::*;
            Ok(Value::Bool(match name {
                "lt" => ord == Less,
                "le" => ord != Greater,
                "gt" => ord == Greater,
                _ => ord != Less,
            }))
        }
        "print" => Ok(s(&sprint(args))),
        "println" => {
            let words: Vec<String> = args.iter().map(show).collect();
            Ok(s(&format!("{}\n", words.join(" "))))
        }
        "printf" => {
            let Some((fmt, rest)) = args.split_first() else {
                return exec_err("printf takes a format");
            };
            Ok(s(&printf(&show(fmt), rest)?))
        }
        other => exec_err(format!("function \"{other}\" not defined")),
    }
}

/// `eq` compares numbers by value and everything else as it is.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in args.iter().enumerate() {
        if i > 0 && !args[i - 1].is_string() && !v.is_string() {
            out.push(' ');
        }
        out.push_str(&show(v));
    }
    out
}

fn printf(fmt: &str, args: &[Value]) -> Result<String> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars
            .next()
            .ok_or_else(|| TemplateError::Exec("printf: % at the end".into()))?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .next()
            .ok_or_else(|| TemplateError::Exec(format!("printf: no value for %{verb}")))?;
        match verb {
            's' | 'v' => out.push_str(&show(arg)),
            'd' => out.push_str(&format!("{}", number("printf", arg)? as i64)),
            'q' => out.push_str(&serde_json::to_string(&show(arg)).unwrap_or_default()),
            other => return exec_err(format!("printf: %{other} is not supported")),
        }
    }
    Ok(out)
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    out
}
