//! `--format` templates: the part of Go's `text/template` that people write
//! for `docker ps`, `docker images` and `docker inspect`, evaluated over the
//! same JSON documents that `--format json` prints.
//!
//! Supported: text with `{{ }}` actions (and `{{-`/`-}}` trimming, `{{/* */}}`
//! comments); fields (`.State.Pid`, `.`), variables (`$`, `$name`, with
//! `:=` and `=`), string, number and boolean literals, parenthesised
//! pipelines with fields after them (`(index .Ports 0).HostPort`), `|`
//! pipelines; `if`/`else if`/`else`, `range` (arrays, and objects in key
//! order, with `$i, $v :=`, and `else`), `with`; Go's functions `index`,
//! `len`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `not`, `and`, `or`, `print`,
//! `println`, `printf` (`%s %v %d %q %%`), and Docker's `json`, `join`,
//! `split`, `lower`, `upper`, `title`, `truncate`, `pad`.
//!
//! Values print as Go prints them: strings as they are, arrays as
//! `[a b]`, objects as `map[k:v]`, null as `<nil>`, and a key an object
//! does not have as `<no value>`.

use serde_json::Value;
use thiserror::Error;

mod funcs;
mod parse;
mod run;

#[derive(Debug, Error, PartialEq)]
pub enum TemplateError {
    #[error("cannot parse template: {0}")]
    Parse(String),
    #[error("cannot run template: {0}")]
    Exec(String),
}

type Result<T> = std::result::Result<T, TemplateError>;

fn parse_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(TemplateError::Parse(msg.into()))
}

fn exec_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(TemplateError::Exec(msg.into()))
}

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Text(String),
    Action(Pipe),
    If {
        branches: Vec<(Pipe, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

/// `$a, $b := cmd | cmd`.
#[derive(Debug)]
struct Pipe {
    vars: Vec<String>,
    /// `=` (assign to an existing variable) rather than `:=`.
    assign: bool,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug)]
enum Arg {
    Func(String),
    /// `.A.B`; empty for `.`.
    Field(Vec<String>),
    /// `$x.A.B`; `$` is the root.
    Var(String, Vec<String>),
    /// `(pipe).A.B`.
    Sub(Box<Pipe>, Vec<String>),
    Lit(Value),
}

impl Template {
    pub fn parse(src: &str) -> Result<Template> {
        Ok(Template {
            nodes: parse::document(src)?,
        })
    }

    /// Renders the template with `data` as `.` and `$`.
    pub fn render(&self, data: &Value) -> Result<String> {
        run::render(&self.nodes, data)
    }

    /// The fields the template names from the top (`.Names`, `$.Names`,
    /// and inside `range` or `with` whatever `.` then is), first seen
    /// first: a table's header names its columns from them even when there
    /// is no row to look at.
    pub fn fields(&self) -> Vec<String> {
        let mut found = Vec::new();
        nodes_fields(&self.nodes, &mut found);
        found
    }
}

fn nodes_fields(nodes: &[Node], found: &mut Vec<String>) {
    for node in nodes {
        match node {
            Node::Text(_) => {}
            Node::Action(pipe) => pipe_fields(pipe, found),
            Node::If {
                branches,
                otherwise,
            } => {
                for (pipe, body) in branches {
                    pipe_fields(pipe, found);
                    nodes_fields(body, found);
                }
                nodes_fields(otherwise, found);
            }
            Node::Range {
                pipe,
                body,
                otherwise,
            }
            | Node::With {
                pipe,
                body,
                otherwise,
            } => {
                pipe_fields(pipe, found);
                nodes_fields(body, found);
                nodes_fields(otherwise, found);
            }
        }
    }
}

fn pipe_fields(pipe: &Pipe, found: &mut Vec<String>) {
    for arg in pipe.cmds.iter().flatten() {
        let first = match arg {
            Arg::Field(path) => path.first(),
            Arg::Var(name, path) if name.is_empty() => path.first(),
            Arg::Sub(inner, _) => {
                pipe_fields(inner, found);
                None
            }
            _ => None,
        };
        if let Some(name) = first
            && !found.contains(name)
        {
            found.push(name.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str, data: &Value) -> String {
        Template::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .render(data)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn data() -> Value {
        json!({
            "Name": "/web",
            "State": {"Pid": 4242, "Running": true, "ExitCode": 0},
            "Config": {"Env": ["A=1", "B=2"], "Labels": {"tier": "front", "app": "shop"}},
            "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "53/udp": null}},
            "Mounts": [],
            "Size": 1.5,
        })
    }

    #[test]
    fn fields_named_from_the_top() {
        let t = Template::parse(
            "table {{.Names}}\t{{if .Ports}}{{.Ports}}{{end}}{{range .Mounts}}{{.Source}}{{end}}\
             {{$.ID}}{{(index .Labels \"a\")}}{{$x := 1}}{{$x}}",
        )
        .unwrap();
        assert_eq!(
            t.fields(),
            ["Names", "Ports", "Mounts", "Source", "ID", "Labels"]
        );
    }

    #[test]
    fn fields_and_text() {
        let d = data();
        assert_eq!(run("{{.State.Pid}}", &d), "4242");
        assert_eq!(
            run("pid={{ .State.Pid }} up={{.State.Running}}", &d),
            "pid=4242 up=true"
        );
        assert_eq!(run("{{.Config.Env}}", &d), "[A=1 B=2]");
        assert_eq!(run("{{.Config.Labels}}", &d), "map[app:shop tier:front]");
        assert_eq!(run("{{.Config.Labels.nope}}", &d), "<no value>");
        assert!(run("{{.NetworkSettings.Ports}}", &d).contains("53/udp:<nil>"));
        assert_eq!(run("{{.Size}}", &d), "1.5");
    }

    #[test]
    fn functions_and_pipelines() {
        let d = data();
        assert_eq!(
            run("{{json .State}}", &d),
            r#"{"ExitCode":0,"Pid":4242,"Running":true}"#
        );
        assert_eq!(
            run("{{.State | json}}", &d),
            r#"{"ExitCode":0,"Pid":4242,"Running":true}"#
        );
        assert_eq!(run("{{join .Config.Env \",\"}}", &d), "A=1,B=2");
        assert_eq!(run("{{.Name | upper}}", &d), "/WEB");
        assert_eq!(run("{{index .Config.Labels \"tier\"}}", &d), "front");
        assert_eq!(
            run(
                "{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}",
                &d
            ),
            "8080"
        );
        assert_eq!(run("{{len .Config.Env}}", &d), "2");
        assert_eq!(
            run("{{printf \"%s has %d\" .Name .State.Pid}}", &d),
            "/web has 4242"
        );
        assert_eq!(run("{{split \"a:b\" \":\"}}", &d), "[a b]");
        assert_eq!(run("{{title \"hello world\"}}", &d), "Hello World");
        assert_eq!(run("{{truncate .Name 2}}", &d), "/w");
        assert_eq!(
            run(
                "{{eq .State.Pid 4242}} {{ne .Name \"/web\"}} {{lt 1 2}}",
                &d
            ),
            "true false true"
        );
    }

    #[test]
    fn control_structures() {
        let d = data();
        assert_eq!(run("{{range .Config.Env}}[{{.}}]{{end}}", &d), "[A=1][B=2]");
        assert_eq!(
            run(
                "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
                &d
            ),
            "app=shop;tier=front;"
        );
        assert_eq!(
            run(
                "{{range $p, $c := .NetworkSettings.Ports}}{{if $c}}{{$p}}->{{(index $c 0).HostPort}}{{end}}{{end}}",
                &d
            ),
            "80/tcp->8080"
        );
        assert_eq!(run("{{range .Mounts}}x{{else}}none{{end}}", &d), "none");
        assert_eq!(run("{{if .State.Running}}up{{else}}down{{end}}", &d), "up");
        assert_eq!(
            run(
                "{{if eq .State.ExitCode 1}}one{{else if .State.Running}}running{{else}}other{{end}}",
                &d
            ),
            "running"
        );
        assert_eq!(run("{{with .State}}{{.Pid}}{{end}}", &d), "4242");
        assert_eq!(
            run(
                "{{$n := .Name}}{{with .State}}{{$n}}:{{.Pid}} {{$.Name}}{{end}}",
                &d
            ),
            "/web:4242 /web"
        );
        assert_eq!(run("a  {{- /* note */ -}}  b", &d), "ab");
        assert_eq!(run("{{ \"}}\" }}", &d), "}}");
    }

    #[test]
    fn mistakes_are_named() {
        let d = data();
        for bad in [
            "{{.Name",
            "{{if .Name}}x",
            "{{end}}",
            "{{range .Mounts}}x{{else}}",
            "{{\"open}}",
            "{{.Name | }}",
        ] {
            assert!(
                matches!(Template::parse(bad), Err(TemplateError::Parse(_))),
                "{bad}"
            );
        }
        let exec = |src: &str| Template::parse(src).unwrap().render(&d).unwrap_err();
        assert_eq!(
            exec("{{nosuch .Name}}"),
            TemplateError::Exec("function \"nosuch\" not defined".into())
        );
        assert!(matches!(exec("{{.Name.Deeper}}"), TemplateError::Exec(_)));
        assert!(matches!(exec("{{$x}}"), TemplateError::Exec(_)));
        assert!(matches!(
            exec("{{range .Name}}{{end}}"),
            TemplateError::Exec(_)
        ));
    }
}
