#!/usr/bin/env python3
"""Generates the build storm for `make bench-storm`: 13 OpenShift BuildConfigs of the platform team's shape
(a UBI-like base; a Python base with three apps; a Java base with two apps; a Go toolset with two Go apps;
two standalone images), their Dockerfiles and contexts with real COPY and RUN work, and order.txt: the same
builds in dependency order as a Makefile would run them with `buildah bud` (name, context, from-image or -).

usage: storm_gen.py DIR
"""
import os
import random
import sys

root = sys.argv[1]
src = os.path.join(root, "src")
bc_dir = os.path.join(root, "buildconfigs")
os.makedirs(bc_dir, exist_ok=True)
rng = random.Random(42)
GIT = "https://git.example.com/platform/storm.git"
REG = "localhost/storm"


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def files(dir, count, size):
    """`count` files of about `size` bytes, half random (incompressible) and half text."""
    for i in range(count):
        d = os.path.join(dir, f"pkg{i % 20:02d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"mod{i:04d}.py"), "wb") as f:
            f.write(rng.randbytes(size // 2) + (f"# module {i}\n" * (size // 24)).encode())


# A RUN that does real work in busybox: writes many files, checksums a tree, makes a blob.
def work(target, n, mb):
    return (
        f"RUN mkdir -p {target} && i=0 && while [ $i -lt {n} ]; do echo \"generated $i\" > {target}/g$i.txt; "
        f"i=$((i+1)); done && dd if=/dev/urandom of={target}/blob bs=1M count={mb} 2>/dev/null "
        f"&& find {target} -type f | sort | xargs md5sum > {target}/MANIFEST"
    )


builds = []  # (name, contextDir, dockerfile text, from istag or None, triggers)


def build(name, dockerfile, ctx_files=0, size=4096, from_=None, triggers=()):
    ctx = os.path.join(src, name)
    write(os.path.join(ctx, "Dockerfile"), dockerfile)
    if ctx_files:
        files(os.path.join(ctx, "src"), ctx_files, size)
    builds.append((name, from_, list(triggers)))


base_arg = "ARG BASE_IMAGE=localhost/bench-base:latest\nFROM ${BASE_IMAGE}\n"
build("ubi-base", base_arg + "COPY os-release /etc/os-release\nCOPY src /etc/pki/storm\n" + work("/usr/share/ubi", 300, 4) + "\n", 200, 2048)
write(os.path.join(src, "ubi-base", "os-release"), 'ID="rhel"\nVERSION_ID="9.4"\n')
build(
    "python-base",
    "FROM registry.access.redhat.com/ubi9/ubi-minimal:latest\nCOPY src /usr/lib/python3.11\n"
    + work("/usr/lib/python3.11/site-packages/base", 400, 6) + "\nENV PYTHONUNBUFFERED=1\n",
    600, 8192, from_="ubi-base", triggers=["ubi-base"])
for i in (1, 2, 3):
    build(
        f"python-app-{i}",
        "FROM registry.access.redhat.com/ubi9/python-311:latest\nWORKDIR /opt/app-root/src\nCOPY src .\n"
        + work("/opt/app-root/lib/site", 500, 4) + "\nCMD [\"python3\", \"app.py\"]\n",
        400, 6144, from_="python-base", triggers=["python-base"])
build(
    "java-base",
    "FROM registry.access.redhat.com/ubi9/ubi-minimal:latest\nCOPY src /usr/lib/jvm/java-17/lib\n"
    + work("/usr/lib/jvm/java-17/jmods", 200, 16) + "\nENV JAVA_HOME=/usr/lib/jvm/java-17\n",
    300, 16384, from_="ubi-base", triggers=["ubi-base"])
for i in (1, 2):
    build(
        f"java-app-{i}",
        "FROM registry.access.redhat.com/ubi9/openjdk-17:latest\nCOPY src /deployments/lib\n"
        + work("/deployments/exploded", 300, 8) + "\nCMD [\"java\", \"-jar\", \"/deployments/app.jar\"]\n",
        200, 32768, from_="java-base", triggers=["java-base"])
build(
    "go-toolset",
    "FROM registry.access.redhat.com/ubi9/ubi-minimal:latest\nCOPY src /usr/local/go/src\n"
    + work("/usr/local/go/pkg", 300, 12) + "\n",
    400, 8192, from_="ubi-base", triggers=["ubi-base"])
for i in (1, 2):
    build(
        f"go-app-{i}",
        f"FROM {REG}/go-toolset:latest AS build\nWORKDIR /src\nCOPY src .\n"
        + work("/out/cache", 300, 6)
        + f" && cat $(find /src -type f | sort) | sha256sum > /out/go-app-{i}\n"
        f"FROM {REG}/ubi-base:latest\nCOPY --from=build /out/go-app-{i} /usr/local/bin/go-app-{i}\nUSER 1001\n",
        300, 4096, triggers=["ubi-base", "go-toolset"])
for name in ("git-sync", "tools"):
    build(name, base_arg + "COPY src /opt/" + name + "\n" + work(f"/opt/{name}/var", 200, 4) + "\n", 150, 4096)


def istag(name):
    return f"{{kind: ImageStreamTag, name: \"{name}:latest\"}}"


docs = []
for name, from_, triggers in builds:
    strategy = "    type: Docker\n"
    if from_:
        strategy += f"    dockerStrategy:\n      from: {istag(from_)}\n"
    trig = "".join(
        f"    - type: ImageChange\n      imageChange:\n        from: {istag(t)}\n" for t in triggers
    )
    docs.append(
        f"apiVersion: build.openshift.io/v1\nkind: BuildConfig\nmetadata:\n  name: {name}\n  namespace: storm\n"
        f"spec:\n  source:\n    git:\n      uri: {GIT}\n    contextDir: {name}\n  strategy:\n{strategy}"
        f"  output:\n    to: {istag(name)}\n  resources:\n    limits: {{cpu: 300m, memory: 2Gi}}\n"
        f"  completionDeadlineSeconds: 3600\n  triggers:\n    - type: ConfigChange\n{trig}"
    )
write(os.path.join(bc_dir, "storm.yaml"), "---\n".join(docs))

# The Makefile's order: bases before their apps.
order = ["ubi-base", "git-sync", "tools", "python-base", "java-base", "go-toolset"]
order += [b[0] for b in builds if b[0] not in order]
froms = {b[0]: b[1] for b in builds}
with open(os.path.join(root, "order.txt"), "w") as f:
    for name in order:
        from_ = f"{REG}/{froms[name]}:latest" if froms[name] else "-"
        f.write(f"{name} {os.path.join(src, name)} {from_}\n")
print(GIT)
