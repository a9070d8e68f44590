//! The config pipeline: any text, as TOML and as YAML, is either a spec or a list of
//! errors (each naming the file), never a panic.
#![no_main]

use gatehouse_config::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (format, name) in [(Format::Toml, "fuzz.toml"), (Format::Yaml, "fuzz.yaml")] {
        if let Err(e) = gatehouse_config::load(&text, name, format) {
            for line in e.lines() {
                assert!(line.starts_with(name), "an error without its file: {line}");
            }
        }
    }
});
