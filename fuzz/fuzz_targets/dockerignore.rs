//! `.dockerignore` with any patterns against any paths: parsing errors, never panics, and the context
//! walker's shortcut is sound — when it skips an excluded directory (`may_include_under` is false),
//! nothing below it is included, so no file that belongs to the context is silently left out.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    patterns: String,
    paths: Vec<String>,
}

fuzz_target!(|input: Input| {
    let Ok(ignore) = kiln::dockerfile::ignore::Ignore::parse(&input.patterns) else { return };
    for raw in &input.paths {
        // As the context walk names them: relative, one component per directory level.
        let parts: Vec<&str> = raw.split('/').filter(|p| !p.is_empty() && *p != "." && *p != "..").collect();
        let path = parts.join("/");
        let included = !ignore.is_excluded(&path);
        for depth in 1..parts.len() {
            let dir = parts[..depth].join("/");
            let skipped = ignore.is_excluded(&dir) && !ignore.may_include_under(&dir);
            assert!(!(skipped && included), "{path:?} is included but the walk skips {dir:?}: {:?}", input.patterns);
        }
    }
});
