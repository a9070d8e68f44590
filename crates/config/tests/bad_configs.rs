//! Every invalid config in `tests/bad/` must produce exactly the error lines in its
//! sibling `.expected` file (`file:line: key.path: message`, one per line, in order),
//! every example in `examples/` must load, and YAML configs load and fail like TOML ones
//! (without lines: YAML gives no key positions).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gatehouse_config::{load, Format};
use std::path::{Path, PathBuf};

fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

#[test]
fn every_bad_config_reports_exactly_its_expected_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let cases = files_in(&dir, "toml");
    assert!(cases.len() >= 10, "only {} cases", cases.len());
    let mut mismatches = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(case).unwrap();
        let expected_path = case.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let want: Vec<&str> = expected.lines().collect();
        let got = match load(&text, name, Format::from_path(name)) {
            Ok(_) => vec!["(loaded without errors)".to_string()],
            Err(e) => e.lines(),
        };
        if got != want {
            mismatches.push(format!(
                "{name}\n  expected:\n    {}\n  got:\n    {}",
                want.join("\n    "),
                got.join("\n    ")
            ));
        }
    }
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n\n"));
}

#[test]
fn every_example_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut examples = files_in(&dir, "toml");
    examples.extend(files_in(&dir, "yaml"));
    examples.extend(files_in(&dir, "yml"));
    assert!(!examples.is_empty());
    for ex in examples {
        let name = ex.display().to_string();
        let text = std::fs::read_to_string(&ex).unwrap();
        if let Err(e) = load(&text, &name, Format::from_path(&name)) {
            panic!("{e}");
        }
    }
}

const GOOD_YAML: &str = r#"
global:
  workers: 2
  drain_timeout: 10s
listeners:
  - name: web
    listen: "127.0.0.1:8080"
    timeouts: { idle: 30s }
routes:
  - name: api
    match: { prefix: /api, method: [GET, POST] }
    upstream: backend
    strip_prefix: /api
  - name: home
    respond: { status: 200, body: hello }
upstreams:
  - name: backend
    endpoints: ["127.0.0.1:9000", { address: "127.0.0.1:9001", weight: 2 }]
"#;

#[test]
fn yaml_config_loads() {
    let spec = load(
        GOOD_YAML,
        "gatehouse.yaml",
        Format::from_path("gatehouse.yaml"),
    )
    .unwrap();
    assert_eq!(spec.global.workers, 2);
    assert_eq!(spec.global.drain_timeout.as_secs(), 10);
    assert_eq!(spec.listeners[0].idle_timeout.as_secs(), 30);
    assert_eq!(spec.routes.len(), 2);
    assert_eq!(spec.upstreams[0].endpoints[1].weight, 2);
}

#[test]
fn yaml_config_errors_name_their_key_paths() {
    let bad = GOOD_YAML
        .replace("upstream: backend", "upstream: nowhere")
        .replace("idle: 30s", "idle: 30s, linger: 5s")
        .replace("workers: 2", "workers: 0");
    assert_eq!(Format::from_path("conf.yml"), Format::Yaml);
    let err = load(&bad, "conf.yml", Format::from_path("conf.yml")).unwrap_err();
    assert_eq!(
        err.lines(),
        vec![
            "conf.yml: global.workers: must be at least 1",
            "conf.yml: listeners[0].timeouts.linger: unknown field `linger`, expected one of \
             `header_read`, `idle`, `tls_handshake`, `udp_idle`",
            "conf.yml: routes[0].upstream: no upstream is named `nowhere`",
        ]
    );
    let syntax = load("listeners:\n  - name: [web\n", "s.yaml", Format::Yaml).unwrap_err();
    let line = &syntax.lines()[0];
    assert!(line.starts_with("s.yaml:3: YAML syntax: "), "{line}");
}

/// Inputs the `config` fuzz target found to break a parser: each must come back as
/// errors, never as a panic (the first made toml_edit 0.23 panic on a duplicate key).
#[test]
fn fuzzed_inputs_are_errors_not_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzzed");
    let cases = files_in(&dir, "toml");
    assert!(!cases.is_empty());
    for case in cases {
        let bytes = std::fs::read(&case).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for (format, name) in [(Format::Toml, "fuzz.toml"), (Format::Yaml, "fuzz.yaml")] {
            let r = std::panic::catch_unwind(|| load(&text, name, format).map(|_| ()));
            let r = r.unwrap_or_else(|_| panic!("{} panicked as {name}", case.display()));
            assert!(r.is_err(), "{} loaded", case.display());
        }
    }
}
