//! The `gatehouse` binary's command line: `check` exits 0 on a good file and 1 with every
//! error printed on a bad one; `--version` and `--help` (with examples) work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gatehouse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .env_remove("GATEHOUSE_LOG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let p = gatehouse_test_support::scratch::dir("cli").join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_accepts_the_quickstart() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.toml");
    let out = gatehouse(&["check", "--config", example.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.trim_end()
            .ends_with("ok (2 listeners, 4 routes, 1 upstreams)"),
        "{text}"
    );
}

#[test]
fn check_prints_every_error_and_exits_1() {
    let bad = "\
[[listeners]]
name = \"web\"
listen = \"nowhere\"

[[routes]]
name = \"api\"
upstream = \"missing\"
[routes.match]
regex = \"(\"

[[upstreams]]
name = \"backend\"
endpoints = []
";
    let path = temp_file("bad.toml", bad);
    let file = path.display().to_string();
    let out = gatehouse(&["check", "--config", &file]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let want = [
        format!("{file}:3: listeners[0].listen: `nowhere` is not a socket address; expected `ip:port` such as `127.0.0.1:8080`"),
        format!("{file}:7: routes[0].upstream: no upstream is named `missing`"),
        format!("{file}:9: routes[0].match.regex: regex does not compile: unclosed group"),
        format!("{file}:13: upstreams[0].endpoints: at least one endpoint is required"),
        "4 errors".to_string(),
    ];
    let got: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(got, want);
}

#[test]
fn check_warns_when_a_streaming_route_would_be_buffered() {
    let cfg = "\
[[listeners]]
name = \"web\"
listen = \"127.0.0.1:0\"

[[routes]]
name = \"grpc\"
upstream = \"h2\"
validate = { body = { type = \"object\" } }

[[routes]]
name = \"events\"
upstream = \"plain\"
match = { headers = [{ name = \"accept\", value = \"text/event-stream\" }] }
transform = { response_json = { remove = [\"/x\"] } }

[[routes]]
name = \"api\"
upstream = \"plain\"
transform = { response_json = { remove = [\"/x\"] } }

[[routes]]
name = \"grpc-authz\"
upstream = \"h2\"
external_auth = { upstream = \"plain\", body_limit = \"1KiB\" }

[[routes]]
name = \"events-replaced\"
upstream = \"plain\"
match = { headers = [{ name = \"accept\", value = \"text/event-stream\" }] }
transform = { response_replace = [{ from = \"a\", to = \"b\" }] }

[[upstreams]]
name = \"h2\"
endpoints = [\"127.0.0.1:1\"]
protocol = \"http2\"

[[upstreams]]
name = \"plain\"
endpoints = [\"127.0.0.1:1\"]
";
    let path = temp_file("streams.toml", cfg);
    let file = path.display().to_string();
    let out = gatehouse(&["check", "--config", &file]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains(": warning: ")).collect();
    // A streaming edit buffers nothing: no warning for `events-replaced`.
    assert_eq!(warnings.len(), 3, "{text}");
    assert!(
        warnings[0].contains("routes `grpc`: validate read whole bodies"),
        "{text}"
    );
    assert!(
        warnings[1].contains("routes `events`: transform.response_json"),
        "{text}"
    );
    assert!(
        warnings[2].contains("routes `grpc-authz`: external_auth.body_limit"),
        "{text}"
    );
}

#[test]
fn import_openapi_prints_a_fragment_that_check_accepts() {
    let spec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../core/tests/e2e_ops/openapi/petstore-3.0.yaml"
    );
    let out = gatehouse(&[
        "import",
        "openapi",
        spec,
        "--upstream",
        "pets",
        "--name-prefix",
        "v1_",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let fragment = stdout(&out);
    assert!(fragment.contains("name = \"v1_createPet\""), "{fragment}");
    let cfg = format!(
        "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n[[upstreams]]\nname = \"pets\"\nendpoints = [\"127.0.0.1:1\"]\n\n[[consumers]]\nname = \"app\"\napi_keys = [\"k\"]\n{fragment}"
    );
    let path = temp_file("imported.toml", &cfg);
    let checked = gatehouse(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(0), "{}", stdout(&checked));
    assert!(
        stdout(&checked).contains("4 routes"),
        "{}",
        stdout(&checked)
    );
    let missing = gatehouse(&["import", "openapi", "/nonexistent/api.yaml"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn check_reads_the_openapi_documents_routes_name() {
    let route = |doc: &Path| {
        format!(
            "[[listeners]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n[[upstreams]]\nname = \"pets\"\nendpoints = [\"127.0.0.1:1\"]\n\n[[routes]]\nname = \"api\"\nupstream = \"pets\"\nopenapi = \"{}\"\n",
            doc.display()
        )
    };
    let good = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../core/tests/e2e_ops/openapi/petstore-3.0.yaml"
    ));
    let path = temp_file("with-document.toml", &route(good));
    let out = gatehouse(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // A schema the document gets wrong, and a document that is not there.
    let bad = temp_file(
        "bad-document.yaml",
        "openapi: 3.0.3\npaths:\n  /a:\n    get:\n      parameters:\n        - { name: n, in: query, schema: { type: nonsense } }\n",
    );
    for (doc, says) in [
        (
            bad.as_path(),
            "operation `GET /a`, query parameters: not a valid JSON Schema",
        ),
        (
            Path::new("/nonexistent/api.yaml"),
            "cannot read `/nonexistent/api.yaml`",
        ),
    ] {
        let path = temp_file("with-bad-document.toml", &route(doc));
        let out = gatehouse(&["check", "--config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        let text = stdout(&out);
        assert!(
            text.contains("routes[0].openapi") && text.contains(says),
            "{text}"
        );
    }
}

#[test]
fn check_of_a_missing_file_fails() {
    let out = gatehouse(&["check", "--config", "/nonexistent/gatehouse.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read /nonexistent/gatehouse.toml"),
        "{err}"
    );
}

#[test]
fn version_and_help() {
    let out = gatehouse(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("gatehouse {}", env!("CARGO_PKG_VERSION"))
    );
    let out = gatehouse(&["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for want in [
        "Usage: gatehouse",
        "run",
        "check",
        "Examples:",
        "gatehouse check --config",
    ] {
        assert!(help.contains(want), "`{want}` missing from:\n{help}");
    }
    let out = gatehouse(&["check", "--help"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("--config <CONFIG>"));
}

/// `gatehouse hash` with a secret on stdin.
fn hash(what: &str, secret: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["hash", what])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(secret.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    stdout(&out).trim().to_string()
}

#[test]
fn hash_prints_config_ready_secrets() {
    assert_eq!(
        hash("key", "abc\n"),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let a = hash("password", "s3cret\n");
    let b = hash("password", "s3cret\n");
    assert!(a.starts_with("$argon2id$"), "{a}");
    assert_ne!(a, b, "a fresh salt each time");
    // The hash is accepted as a consumer's password.
    let cfg = format!(
        "[[listeners]]\nname = \"w\"\nlisten = \"127.0.0.1:0\"\n\n[[consumers]]\nname = \"c\"\nbasic = {{ username = \"c\", password = {a:?} }}\n\n[[routes]]\nname = \"r\"\nrespond = {{ status = 200 }}\nauth = {{ methods = [\"basic\"] }}\n"
    );
    let path = temp_file("hashed.toml", &cfg);
    let o = gatehouse(&["check", "--config", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stdout(&o));
}
