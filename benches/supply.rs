//! What the supply chain adds to one RUN step on kiln's side: the merged bundle (image bundle read and
//! hashed, cached files found), Nexus routing (variables, Maven settings, Gradle init script, rewritten apt
//! and dnf files), on an image view carrying a real-sized CA bundle. The end-to-end difference, sandbox
//! mounts included, is `bench/supply.sh`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln::supply::routing::Nexus;
use kiln::supply::trust::certs::parse_pem;
use kiln::supply::trust::{CaFile, Trust};
use kiln::supply::{ImageView, StepRequest, Supply, SupplyOptions};

const CA: &str = include_str!("../testdata/supply/unit-ca.pem");

/// A rootfs with a bundle of `certs` copies of a certificate (≈ a distro bundle's size), apt and dnf files.
fn image(root: &Path, certs: usize) {
    let bundle: String = std::iter::repeat_n(CA, certs).collect();
    for (path, text) in [
        ("etc/ssl/certs/ca-certificates.crt", bundle.as_str()),
        ("etc/apt/sources.list", "deb http://deb.example.org/debian bookworm main\n"),
        ("etc/yum.repos.d/ubi.repo", "[ubi]\nbaseurl=https://cdn.example.org/ubi9/$basearch/os\n"),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn step(c: &mut Criterion) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    image(&root, 140);
    let scratch = t.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let options = SupplyOptions {
        ca_files: vec![CaFile { path: "ca.pem".into(), certs: parse_pem(CA.as_bytes()) }],
        nexus: Some(Nexus::with_defaults(url::Url::parse("https://nexus.example.com").unwrap())),
        ..Default::default()
    };
    let supply = Supply::start(&options, t.path().join("cache")).unwrap();
    let view = ImageView::new(vec![root]);
    let request =
        StepRequest { label: "Dockerfile:2 RUN x", home: "/root", env: &[], scratch: &scratch, networked: true };
    c.bench_function("supply: one RUN step's CA trust + Nexus routing", |b| {
        b.iter(|| black_box(supply.step(&request, &view).unwrap()))
    });
    let trust = Trust::new(&options.ca_files, t.path().join("cache2"));
    c.bench_function("supply: merged bundle, first time (truststore written)", |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(t.path().join("cache2"));
            let mut out = kiln::supply::StepSupply::default();
            trust.for_step(&view, &mut out).unwrap();
            black_box(out)
        })
    });
}

criterion_group!(benches, step);
criterion_main!(benches);
