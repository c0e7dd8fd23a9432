//! Figures the reliability tests measure, written to `target/reliability/<name>.json` for
//! `scripts/reliability` to put into docs/reliability.md, and printed.

use std::path::Path;

pub fn save(name: &str, json: &str) {
    println!("{name}: {json}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reliability");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join(format!("{name}.json")), format!("{json}\n"));
    }
}
