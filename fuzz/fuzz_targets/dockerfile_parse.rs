//! Any text as a Dockerfile: parsing, the BuildKit dump, planning and the dry-run rendering return errors,
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(parsed) = kiln::dockerfile::parse(text, "Dockerfile") else { return };
    let _ = kiln::dockerfile::dump(&parsed.nodes);
    let options = kiln::plan::PlanOptions::default();
    if let Ok(plan) = kiln::plan::plan(&parsed.instructions, parsed.escape, "Dockerfile", &options) {
        let _ = kiln::plan::render_dry_run(&plan);
    }
});
