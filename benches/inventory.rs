//! Inventory of a ~500 MB image with several thousand packages: cold (every layer read: decompress, walk
//! the tar, parse the RPM database, dist-infos, package.json files, jars, executables) and warm (facts from
//! the per-layer cache), beside a peer measured in the same run: `gzip -dc` of the same layers to
//! /dev/null, the floor for anything that reads them. (syft, the usual peer, cannot be installed here: it
//! is neither a Debian, PyPI nor npm package, and Debian's Go is too old to build it.)
//!
//! The image is generated once under /var/tmp/kiln-bench-inventory-v2 (RPM headers made with kiln's own
//! encoder, SQLite through rusqlite; file contents half random, half zeros). Under `cargo test` (criterion's
//! test mode, no `--bench`) a 1/20 image is used, so the code path is checked without the cost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln::inventory::rpm::header::{self, encode};
use kiln::inventory::{ImageEnv, LayerSource, inventory};
use oci_spec::image::Digest;

const DIR: &str = "/var/tmp/kiln-bench-inventory-v2";

/// 1 when benchmarking, 20 (a twentieth of the image) in test mode.
fn divisor() -> usize {
    if std::env::args().any(|a| a == "--bench") { 1 } else { 20 }
}

fn dir() -> PathBuf {
    match divisor() {
        1 => PathBuf::from(DIR),
        n => PathBuf::from(format!("{DIR}-small{n}")),
    }
}

struct Files {
    dir: PathBuf,
    cache: Option<PathBuf>,
}

impl LayerSource for Files {
    fn open(&self, digest: &Digest) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        let file = std::fs::File::open(self.dir.join(digest.digest()))?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, file)))
    }

    fn cache_dir(&self) -> Option<PathBuf> {
        self.cache.clone()
    }
}

/// Pseudo-random filler: half noise, half zeros, so it compresses about as real binaries do.
fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut x = seed | 1;
    for b in data[..len / 2].iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    data
}

struct LayerWriter {
    tar: tar::Builder<flate2::write::GzEncoder<std::fs::File>>,
    path: PathBuf,
}

impl LayerWriter {
    fn new(dir: &Path, name: &str) -> LayerWriter {
        let path = dir.join(name);
        let file = std::fs::File::create(&path).unwrap();
        LayerWriter { tar: tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::new(6))), path }
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        self.tar.append_data(&mut h, path, data).unwrap();
    }

    fn filler(&mut self, prefix: &str, count: usize, size: usize) {
        for i in 0..count {
            self.file(&format!("{prefix}/f{i:05}.bin"), 0o644, &filler(i as u64 + 7, size));
        }
    }

    /// Finishes the layer and renames it to its digest.
    fn finish(self) -> Digest {
        let gz = self.tar.into_inner().unwrap();
        gz.finish().unwrap().flush().unwrap();
        let bytes = std::fs::read(&self.path).unwrap();
        let digest = kiln::store::digest_of(&bytes);
        std::fs::rename(&self.path, self.path.with_file_name(digest.digest())).unwrap();
        digest
    }
}

fn rpmdb(rows: usize) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rpmdb.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL); BEGIN;")
        .unwrap();
    for i in 0..rows {
        let name = format!("package-{i}");
        let blob = encode(
            &[
                (header::NAME, &name),
                (header::VERSION, "1.2.3"),
                (header::RELEASE, "4.el9"),
                (header::ARCH, "x86_64"),
                (header::LICENSE, "MIT and BSD"),
                (header::SOURCERPM, &format!("{name}-1.2.3-4.el9.src.rpm")),
            ],
            &[],
        );
        conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [blob]).unwrap();
    }
    conn.execute_batch("COMMIT;").unwrap();
    drop(conn);
    std::fs::read(&path).unwrap()
}

fn jar(i: usize) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    w.start_file(format!("META-INF/maven/org.example/lib{i}/pom.properties"), opts).unwrap();
    w.write_all(format!("groupId=org.example\nartifactId=lib{i}\nversion=1.{i}.0\n").as_bytes()).unwrap();
    w.start_file("classes/Blob.class", opts).unwrap();
    w.write_all(&filler(i as u64, 200_000)).unwrap();
    w.finish().unwrap().into_inner()
}

/// Makes the image once; returns its layers, bottom first.
fn image() -> Vec<Digest> {
    let n = divisor();
    let (rpms, dists, npm, jars) = (2500 / n, 1500 / n, 1500 / n, 200 / n);
    let dir = &dir();
    let list = dir.join("layers.txt");
    if let Ok(text) = std::fs::read_to_string(&list) {
        return text.lines().map(|l| l.parse().unwrap()).collect();
    }
    std::fs::create_dir_all(dir).unwrap();
    let mut layers = Vec::new();
    let mut os = LayerWriter::new(dir, "os.tmp");
    os.file(
        "usr/lib/os-release",
        0o644,
        b"ID=\"rhel\"\nVERSION_ID=\"9.4\"\nPRETTY_NAME=\"Red Hat Enterprise Linux 9.4\"\n",
    );
    os.file("etc/yum.repos.d/ubi.repo", 0o644, b"[ubi]\n");
    os.file("var/lib/rpm/rpmdb.sqlite", 0o644, &rpmdb(rpms));
    for i in 0..300 / n {
        os.file(&format!("usr/bin/tool{i}"), 0o755, &filler(i as u64, 300_000)); // executables: checked for Go build info
    }
    os.filler("usr/lib64", 2000 / n, 50_000);
    layers.push(os.finish());
    let mut py = LayerWriter::new(dir, "py.tmp");
    py.file("usr/bin/python3.11", 0o755, b"#!/bin/sh\n");
    py.file("usr/lib64/python3.11/os.py", 0o644, b"#\n");
    for i in 0..dists {
        let meta = format!(
            "Metadata-Version: 2.1\nName: dist-{i}\nVersion: 0.{i}.1\nLicense: MIT\n\n{}",
            "description ".repeat(200)
        );
        py.file(
            &format!("usr/lib64/python3.11/site-packages/dist_{i}-0.{i}.1.dist-info/METADATA"),
            0o644,
            meta.as_bytes(),
        );
        py.file(&format!("usr/lib64/python3.11/site-packages/dist_{i}/__init__.py"), 0o644, &filler(i as u64, 40_000));
    }
    layers.push(py.finish());
    let mut node = LayerWriter::new(dir, "node.tmp");
    for i in 0..npm {
        let json =
            format!(r#"{{"name":"pkg-{i}","version":"2.{i}.0","license":"ISC","description":"{}"}}"#, "x".repeat(500));
        node.file(&format!("opt/app/node_modules/pkg-{i}/package.json"), 0o644, json.as_bytes());
        node.file(&format!("opt/app/node_modules/pkg-{i}/index.js"), 0o644, &filler(i as u64 + 99, 30_000));
    }
    layers.push(node.finish());
    let mut app = LayerWriter::new(dir, "app.tmp");
    for i in 0..jars {
        app.file(&format!("deployments/lib/lib{i}.jar"), 0o644, &jar(i));
    }
    app.filler("opt/data", 1900 / n, 100_000);
    layers.push(app.finish());
    let text: Vec<String> = layers.iter().map(|d| d.to_string()).collect();
    std::fs::write(&list, text.join("\n")).unwrap();
    layers
}

fn bench(c: &mut Criterion) {
    let layers = image();
    let dir = dir();
    let env = ImageEnv::default();
    let cold = Files { dir: dir.clone(), cache: None };
    let inv = inventory(&layers, &cold, &env).unwrap();
    let uncompressed: u64 = layers
        .iter()
        .map(|d| {
            let f = std::fs::File::open(dir.join(d.digest())).unwrap();
            std::io::copy(&mut flate2::read::MultiGzDecoder::new(f), &mut std::io::sink()).unwrap()
        })
        .sum();
    let compressed: u64 = layers.iter().map(|d| std::fs::metadata(dir.join(d.digest())).unwrap().len()).sum();
    eprintln!(
        "image: {} layers, {} MB uncompressed ({} MB gzip), {} packages",
        layers.len(),
        uncompressed >> 20,
        compressed >> 20,
        inv.packages.len()
    );
    let cache = tempfile::tempdir_in("/var/tmp").unwrap();
    let warm = Files { dir: dir.clone(), cache: Some(cache.path().to_path_buf()) };
    inventory(&layers, &warm, &env).unwrap();
    let mut group = c.benchmark_group("inventory 500MB");
    group.sample_size(10).measurement_time(Duration::from_secs(30));
    group.bench_function("cold (every layer read)", |b| b.iter(|| inventory(&layers, &cold, &env).unwrap()));
    group.bench_function("warm (per-layer cache)", |b| b.iter(|| inventory(&layers, &warm, &env).unwrap()));
    group.bench_function("peer: gzip -dc > /dev/null", |b| {
        b.iter(|| {
            let status = std::process::Command::new("gzip")
                .arg("-dc")
                .args(layers.iter().map(|d| dir.join(d.digest())))
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
