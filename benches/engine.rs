//! Throughput of kiln's hot paths: parsing a large Dockerfile, writing a layer (gzip and zstd), the
//! metadata-walk diff over 100k unchanged files (the chroot-mode snapshotter), context hashing (cold and
//! warm stat cache), a COPY of a whole context (walk, match, digest, layer), applying a layer of 20k
//! entries, and cache-key computation. Trees live under /var/tmp: file creation in /tmp is slow here.
//!
//! The COPY and apply benches report *CPU time* (user + system, all threads of this process) instead of
//! wall time: they are mostly system calls, and on a machine shared with other builds wall time swings by
//! several times between runs while the work done does not.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kiln::cache::CacheKey;
use kiln::cache::sources::{self, StatCache};
use kiln::layer::{self, Compression, Entry, EntryKind, FileSource, WriteOptions};

fn large_dockerfile() -> String {
    let mut text = String::from("# syntax=docker/dockerfile:1\nARG BASE=busybox\nFROM ${BASE} AS build\n");
    for i in 0..2000 {
        text.push_str(&format!(
            "ENV VAR{i}=\"value {i}\" \\\n    OTHER{i}=x\nRUN --mount=type=cache,target=/root/.cache echo ${{VAR{i}}} && \\\n    true\nCOPY --chown=1000:1000 src/{i} /app/{i}/\n"
        ));
    }
    text
}

fn parse(c: &mut Criterion) {
    let text = large_dockerfile();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("6000 instructions", |b| {
        b.iter(|| kiln::dockerfile::parse(black_box(&text), "Dockerfile").unwrap())
    });
    group.finish();
}

/// `total` bytes in files of `file` bytes, each its first half random and its second zeros: with 11 kB
/// files, like the c1 benchmark context; with 2 MiB files, like a layer of jars and zeroed space.
fn entries(total: usize, file: usize) -> Vec<Entry> {
    let mut data = vec![0u8; total];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for piece in data.chunks_mut(file) {
        let half = piece.len() / 2;
        for byte in piece[..half].iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
    }
    data.chunks(file)
        .enumerate()
        .map(|(i, chunk)| Entry {
            path: format!("data/{i:05}"),
            kind: EntryKind::File(FileSource::Bytes(chunk.to_vec())),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
        })
        .collect()
}

fn write_layers(c: &mut Criterion) {
    let total = 64 << 20;
    let mut group = c.benchmark_group("layer write");
    group.throughput(Throughput::Bytes(total as u64));
    group.sample_size(10);
    for (files, size) in [("small files", 11 << 10), ("2 MiB files", 2 << 20)] {
        let source = entries(total, size);
        for compression in [Compression::Gzip, Compression::Zstd] {
            let opts = WriteOptions { compression, ..Default::default() };
            group.bench_function(format!("{compression:?} 64 MiB, {files}"), |b| {
                b.iter(|| layer::write_layer(source.clone(), std::io::sink(), &opts).unwrap())
            });
        }
    }
    group.finish();
}

fn tree(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{:03}", i % 500));
        if i < 500 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        std::fs::write(dir.join(format!("f{i:06}")), b"x").unwrap();
    }
}

fn diff(c: &mut Criterion) {
    let work = tempfile::tempdir().unwrap();
    let lower = work.path().join("lower");
    let copy = work.path().join("copy");
    tree(&lower, 100_000);
    layer::copy_tree(&lower, &copy).unwrap();
    let mut group = c.benchmark_group("metadata diff");
    group.sample_size(10);
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("100k unchanged files", |b| {
        b.iter(|| assert!(layer::diff_trees(&lower, &copy).unwrap().is_empty()))
    });
    group.finish();
}

fn context_hashing(c: &mut Criterion) {
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    for i in 0..2000 {
        let dir = ctx.join(format!("d{:02}", i % 50));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i:05}")), vec![(i % 251) as u8; 32 << 10]).unwrap();
    }
    let entries = layer::entries_from_dir(&ctx, "").unwrap();
    let stats_path = work.path().join("stats.json");
    let mut group = c.benchmark_group("context hashing");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(2000 * (32 << 10)));
    group.bench_function("2000 files cold", |b| {
        b.iter(|| {
            let _ = std::fs::remove_file(&stats_path);
            let stats = StatCache::load(stats_path.clone());
            sources::digest(&entries, &stats).unwrap()
        })
    });
    let warm = StatCache::load(stats_path.clone());
    sources::digest(&entries, &warm).unwrap();
    group.bench_function("2000 files warm", |b| b.iter(|| sources::digest(&entries, &warm).unwrap()));
    group.finish();
}

/// CPU time (user + system, all threads) this process has used so far.
fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let time = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    time(usage.user_time()) + time(usage.system_time())
}

/// Like `b.iter(work)`, measuring the CPU time the iterations used.
fn iter_cpu<O>(b: &mut criterion::Bencher<'_>, mut work: impl FnMut() -> O) {
    b.iter_custom(|iters| {
        let start = cpu_time();
        for _ in 0..iters {
            black_box(work());
        }
        cpu_time() - start
    });
}

fn bench_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/var/tmp").or_else(|_| tempfile::tempdir()).unwrap()
}

/// `COPY . /app/` of a 2000-file context: the walk, the source digest (warm stat cache) and the layer.
fn copy_context(c: &mut Criterion) {
    use kiln::build::context::Context;
    use kiln::build::step::copy::{self, CopySpec, SourceRoot};
    let work = bench_dir();
    let ctx_dir = work.path().join("ctx");
    for i in 0..2000 {
        let dir = ctx_dir.join(format!("d{:02}/sub", i % 50));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i:05}")), vec![(i % 251) as u8; 4 << 10]).unwrap();
    }
    let ctx = Context::open(&ctx_dir, &ctx_dir.join("Dockerfile")).unwrap();
    let sources = [".".to_string()];
    let spec = CopySpec::plain(&sources, "/app/");
    let stats = StatCache::load(work.path().join("stats.json"));
    let opts = WriteOptions { compression: Compression::Gzip, source_date_epoch: None, level: None, reuse: None };
    let mut group = c.benchmark_group("copy");
    group.sample_size(10);
    group.throughput(Throughput::Elements(2000));
    group.bench_function("2000-file context: walk + digest (cpu)", |b| {
        iter_cpu(b, || {
            let entries = copy::entries(&spec, &SourceRoot::Context(&ctx)).unwrap();
            sources::digest(&entries, &stats).unwrap()
        })
    });
    group.bench_function("2000-file context: walk + digest + layer (cpu)", |b| {
        iter_cpu(b, || {
            let entries = copy::entries(&spec, &SourceRoot::Context(&ctx)).unwrap();
            sources::digest(&entries, &stats).unwrap();
            layer::write_layer(entries, std::io::sink(), &opts).unwrap()
        })
    });
    group.finish();
}

/// Applying an uncompressed layer of 20k small files in 400 directories, as unpacking a base image does.
fn apply(c: &mut Criterion) {
    let work = bench_dir();
    let mut entries = Vec::new();
    for i in 0..20_000 {
        entries.push(Entry {
            path: format!("usr/lib/d{:03}/f{i:05}", i % 400),
            kind: EntryKind::File(FileSource::Bytes(vec![1u8; 64])),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
        });
    }
    let mut tar = Vec::new();
    let opts = WriteOptions { compression: Compression::None, source_date_epoch: None, level: None, reuse: None };
    layer::write_layer(entries, &mut tar, &opts).unwrap();
    let mut group = c.benchmark_group("layer apply");
    group.sample_size(10);
    group.throughput(Throughput::Elements(20_000));
    let mut n = 0;
    group.bench_function("20k files (cpu)", |b| {
        iter_cpu(b, || {
            n += 1;
            let dest = work.path().join(format!("r{n}"));
            std::fs::create_dir(&dest).unwrap();
            let apply = layer::ApplyOptions { whiteouts: true, chown: false };
            layer::apply_layer(tar.as_slice(), &dest, &apply).unwrap()
        })
    });
    group.finish();
}

fn cache_keys(c: &mut Criterion) {
    let base = CacheKey::base("scratch", "linux/amd64");
    let repr = format!(
        "Run {{ cmd: Shell(\"make -j all\"), env: {:?} }}",
        (0..50).map(|i| (format!("K{i}"), "v".repeat(40))).collect::<Vec<_>>()
    );
    c.bench_function("cache key of a RUN step", |b| b.iter(|| base.child(black_box(&repr), Some("abc"))));
}

criterion_group!(benches, parse, write_layers, diff, context_hashing, copy_context, apply, cache_keys);
criterion_main!(benches);
