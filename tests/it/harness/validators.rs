//! The official validators, installed by `make test-tools` into a venv (PyPI: spdx-tools, cyclonedx-python-lib,
//! check-jsonschema) and the SARIF 2.1.0 schema from the npm package `@microsoft/sarif-multitool-linux` (MIT) —
//! under `$KILN_TEST_TOOLS`, else `/var/cache/kiln-test/tools`, else `target/test-tools`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the tools are, when they are; says why not (and fails under CI) otherwise.
pub fn tools() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("KILN_TEST_TOOLS")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            PathBuf::from("/var/cache/kiln-test/tools"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools"),
        ])
        .collect();
    let found =
        candidates.into_iter().find(|d| d.join("venv/bin/pyspdxtools").exists() && d.join(SARIF_SCHEMA).exists());
    if found.is_none() {
        assert!(!super::ci(), "the validators are required under CI=true (make test-tools installs them)");
        eprintln!("skipping: validators not installed (make test-tools)");
    }
    found
}

/// The SARIF schema's path inside the tools directory.
pub const SARIF_SCHEMA: &str = "sarif/sarif-2.1.0.json";

fn check(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what} cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} rejected the document:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Validates an SPDX JSON file with spdx-tools (`pyspdxtools -i`).
pub fn spdx(tools: &Path, file: &Path) {
    check(Command::new(tools.join("venv/bin/pyspdxtools")).arg("-i").arg(file), "pyspdxtools");
}

/// Validates a CycloneDX 1.5 JSON file with cyclonedx-python-lib's strict JSON validator.
pub fn cyclonedx(tools: &Path, file: &Path) {
    let script = "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\n\
err = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
print(err)\nsys.exit(1 if err else 0)\n";
    check(Command::new(tools.join("venv/bin/python")).arg("-c").arg(script).arg(file), "cyclonedx-python-lib");
}

/// Validates a SARIF file against the SARIF 2.1.0 JSON schema with check-jsonschema.
pub fn sarif(tools: &Path, file: &Path) {
    check(
        Command::new(tools.join("venv/bin/check-jsonschema"))
            .arg("--schemafile")
            .arg(tools.join(SARIF_SCHEMA))
            .arg(file),
        "check-jsonschema (SARIF 2.1.0)",
    );
}

/// Whether a validator refuses `file` (to prove the validators can fail).
pub fn spdx_rejects(tools: &Path, file: &Path) -> bool {
    !Command::new(tools.join("venv/bin/pyspdxtools"))
        .arg("-i")
        .arg(file)
        .output()
        .expect("pyspdxtools runs")
        .status
        .success()
}
