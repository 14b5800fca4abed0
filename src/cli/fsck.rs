//! `kiln fsck [--repair]`: the store's own check (blobs, images, snapshots, leftovers) and the step
//! cache's, one line per problem on stdout, exit 1 while problems remain.

use std::io::Write as _;
use std::path::Path;

use super::args::FsckArgs;
use super::{Failure, env, output};
use crate::cache::Cache;

/// Runs `kiln fsck`.
pub fn fsck(root: Option<&Path>, args: &FsckArgs) -> Result<(), Failure> {
    // Opened as found: what killed runs left is reported before it is removed.
    let store = env::open_store_as_found(root)?;
    let report = store.fsck(args.repair)?;
    let (records, cache_problems) = Cache::open(&store).check(args.repair);
    let mut out = output::stdout();
    writeln!(
        out,
        "checked {} blobs, {} images, {} snapshots, {records} cache records in {}",
        report.blobs,
        report.images,
        report.snapshots,
        store.root().display()
    )?;
    let findings = report
        .findings
        .iter()
        .map(|f| (f.problem.to_string(), f.problem.repairable(), f.repaired))
        .chain(cache_problems.iter().map(|(p, repaired)| (p.to_string(), true, *repaired)));
    let (mut total, mut remaining) = (0, 0);
    for (text, repairable, repaired) in findings {
        total += 1;
        let status = match (repaired, repairable, args.repair) {
            (true, _, _) => "repaired",
            (false, true, false) => "kiln fsck --repair fixes this",
            (false, true, true) => "could not be repaired",
            (false, false, _) => "not repairable",
        };
        remaining += usize::from(!repaired);
        writeln!(out, "problem: {text} [{status}]")?;
    }
    match (total, remaining) {
        (0, _) => writeln!(out, "no problems")?,
        (_, 0) => writeln!(out, "{total} problems, all repaired")?,
        _ => {
            writeln!(out, "{total} problems, {} repaired, {remaining} remain", total - remaining)?;
            return Err(Failure { code: 1, error: anyhow::anyhow!("the store has {remaining} problems") });
        }
    }
    Ok(())
}
