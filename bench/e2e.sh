#!/bin/sh
# End-to-end timings of kiln beside buildah (when installed), run by `make bench`.
# Each case is timed REPEAT times (median reported); ratios are kiln / buildah from this same run.
#   c1: COPY of a generated context (FILES files, about half random bytes, half zeros): cold, no-change, one file changed
#   c1r: the same COPY followed by a RUN step (what real Dockerfiles do), beside two references measured in the
#        same runs on the same disk: `cp -al` of the tree (for one file changed) and a plain loop creating the
#        same files (for cold)
#   c2: ten trivial RUN steps: cold, no-change rebuild
#   c3: one RUN in chroot mode on an image of 100k files (the metadata-walk diff)
# ONLY=REGEX runs only the cases whose name matches (e.g. ONLY=c1r REPEAT=5).
set -eu

KILN=${KILN:-target/release/kiln}
REPEAT=${REPEAT:-3}
FILES=${FILES:-20000}
WORK=$(mktemp -d /var/tmp/kiln-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
HAVE_BUILDAH=""
if command -v buildah >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
	HAVE_BUILDAH=1
fi
# buildah_in ROOT ARGS...: buildah with its storage under $WORK/ROOT.
buildah_in() { _broot=$1; shift; buildah --root "$WORK/$_broot" --runroot "$WORK/$_broot-run" --storage-driver overlay "$@"; }
BUILDAH=""
[ -n "$HAVE_BUILDAH" ] && BUILDAH="buildah_in buildah-root"

now() { date +%s.%N; }
want() { [ -z "${ONLY:-}" ] || echo "$1" | grep -qE "$ONLY"; }
# time_cmd LABEL CMD...: runs CMD, prints seconds. Dirty pages are written out first (untimed): otherwise
# whatever ran before (another builder writing hundreds of megabytes) is still being flushed, and the timed
# command's own writes are throttled behind it.
time_cmd() { sync; t0=$(now); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'; }
# SETTLE (seconds): ext4 without a journal (these CI VMs) does not reuse an inode freed less than 60 s ago, or
# 300 s while its inode table block is unwritten (and creating files dirties those blocks again), and every
# new inode scans past each such free one. After 20,000 files were removed, creating as many took 4-15 s here
# instead of 0.8 s, still 70 s after a sync. settle waits that out, so a timed command pays for its own
# removals only, not for the ones before it. 0 on other filesystems.
journal_less_ext4() {
	_dev=$(findmnt -no SOURCE -T "$WORK" 2>/dev/null | sed 's|^/dev/||')
	[ -n "$_dev" ] && [ "$(cat "/sys/fs/ext4/$_dev/journal_task" 2>/dev/null)" = "<none>" ]
}
if journal_less_ext4; then SETTLE=${SETTLE:-301}; else SETTLE=${SETTLE:-0}; fi
settle() { sync; [ "$SETTLE" -gt 0 ] && sleep "$SETTLE"; return 0; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
report() { # report CASE KILN_SECONDS BUILDAH_SECONDS
	if [ -n "$3" ]; then
		printf '%-28s kiln %8.3fs   buildah %8.3fs   ratio %.3f\n' "$1" "$2" "$3" "$(awk -v a="$2" -v b="$3" 'BEGIN {print a / b}')"
	else
		printf '%-28s kiln %8.3fs   (buildah not available)\n' "$1" "$2"
	fi
}

# A busybox base both builders share.
mkdir -p "$WORK/base/rootfs/bin" "$WORK/base/rootfs/etc" "$WORK/base/rootfs/tmp"
cp /bin/busybox "$WORK/base/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$WORK/base/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/base/rootfs/etc/passwd"
printf 'FROM scratch\nCOPY rootfs/ /\n' > "$WORK/base/Dockerfile"
"$KILN" --root "$WORK/kiln-base" build -q -t bench-base "$WORK/base" >/dev/null
[ -n "$BUILDAH" ] && $BUILDAH bud --runtime runc --layers -q -t localhost/bench-base "$WORK/base" >/dev/null 2>&1

# c2: ten trivial RUN steps.
mkdir -p "$WORK/c2"
{ echo "FROM localhost/bench-base"; i=1; while [ $i -le 10 ]; do echo "RUN echo step $i > /step$i"; i=$((i+1)); done; } > "$WORK/c2/Dockerfile"
# run_case NAME CONTEXT MODE [REF_LABEL REF_CMD]: MODE cold = empty stores each time, warm = keep them, touch =
# change one selected file before each timed build (a new content every time, so every run is a real one-file
# change). REF_CMD, when given, is timed in the same repetitions (interleaved with kiln), and kiln's ratio to
# it printed; it writes to "$REF", a new directory each repetition.
# kiln's and the reference's repetitions come first, buildah's after them, and nothing is removed before the
# case ends (cold stores and references are new directories): buildah removes its working containers after
# every step (in c1 the COPY's holds all 20,000 files), and on a journal-less ext4 whoever creates files next
# pays for those removals (see SETTLE). A case with a large context starts with `settle` when it creates files.
run_case() {
	want "$1" || return 0
	k=""; b=""; r=""
	[ "$3" != warm ] && [ -d "$2/data" ] && settle
	if [ "$3" != cold ]; then
		# Warm cases start from a build of this context (untimed): "no change" and "one changed" are rebuilds.
		[ -d "$WORK/kstore" ] || cp -a "$WORK/kiln-base" "$WORK/kstore"
		"$KILN" --root "$WORK/kstore" build -q -t bench "$2" >/dev/null
	fi
	for n in $(seq "$REPEAT"); do
		ks="$WORK/kstore"
		[ "$3" = cold ] && { ks="$WORK/cold-kstore-$n"; cp -a "$WORK/kiln-base" "$ks"; }
		[ "$3" = touch ] && echo "kiln $n" >> "$2/data/d000/f000000"
		k="$k $(time_cmd "$KILN" --root "$ks" build -q -t bench "$2")"
		if [ $# -ge 5 ]; then
			REF="$WORK/ref-$n"; export REF
			r="$r $(time_cmd sh -c "$5")"
		fi
	done
	if [ -n "$HAVE_BUILDAH" ]; then
		[ "$3" != cold ] && buildah_in buildah-root bud --runtime runc --layers -q -t bench "$2" >/dev/null 2>&1
		for n in $(seq "$REPEAT"); do
			broot=buildah-root
			if [ "$3" = cold ]; then
				broot="cold-buildah-$n"
				buildah_in "$broot" bud --runtime runc --layers -q -t localhost/bench-base "$WORK/base" >/dev/null 2>&1
			fi
			[ "$3" = touch ] && echo "buildah $n" >> "$2/data/d000/f000000"
			b="$b $(time_cmd buildah_in "$broot" bud --runtime runc --layers -q -t bench "$2")"
		done
	fi
	rm -rf "$WORK"/ref-*
	if [ "$3" = cold ]; then
		rm -rf "$WORK"/cold-kstore-*
		for root in "$WORK"/cold-buildah-*; do [ -d "$root" ] && case "$root" in *-run) ;; *) buildah_in "${root##*/}" rmi -a -f >/dev/null 2>&1 || true ;; esac; done
		rm -rf "$WORK"/cold-buildah-*
	fi
	km=$(echo $k | tr ' ' '\n' | median)
	bm=""; [ -n "$b" ] && bm=$(echo $b | tr ' ' '\n' | median)
	report "$1" "$km" "$bm"
	if [ $# -ge 5 ]; then
		rm_=$(echo $r | tr ' ' '\n' | median)
		printf '%-28s kiln %8.3fs   %-10s %7.3fs   ratio %.3f\n' "" "$km" "$4" "$rm_" "$(awk -v a="$km" -v b="$rm_" 'BEGIN {print a / b}')"
	fi
}
run_case "c2 ten RUN steps, cold" "$WORK/c2" cold
run_case "c2 ten RUN steps, rebuild" "$WORK/c2" warm

# c1: a large COPY.
mkdir -p "$WORK/c1/data"
python3 - "$WORK/c1/data" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
size = 220 * 1024 * 1024 // n
for i in range(n):
    d = os.path.join(root, f"d{i % 200:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}"), "wb") as f:
        f.write(os.urandom(size // 2) + bytes(size - size // 2))
PY
printf 'FROM localhost/bench-base\nCOPY data /data\n' > "$WORK/c1/Dockerfile"
run_case "c1 COPY $FILES files, cold" "$WORK/c1" cold
run_case "c1 COPY, no change" "$WORK/c1" warm
run_case "c1 COPY, one file changed" "$WORK/c1" touch

# c1r: the same COPY, then a RUN step (the RUN needs the COPY's result as a rootfs). The references write into
# $WORK beside the stores: `cp -al` links the tree, the plain loop creates each file (open, write, close).
# c1r's context is a copy of c1's (its own inodes), and `cp -al` links c1's: linking a tree changes the ctime
# of every file in it, so linking c1r's own context would make the next build's stat cache miss every file
# and measure re-hashing the context instead of a one-file change.
cat > "$WORK/plainloop.py" <<'PY'
import os, sys
src, dst = sys.argv[1], sys.argv[2]
for dirpath, dirs, files in os.walk(src):
    out = os.path.join(dst, os.path.relpath(dirpath, src))
    os.makedirs(out, exist_ok=True)
    for name in files:
        with open(os.path.join(dirpath, name), "rb") as f:
            data = f.read()
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
PY
mkdir -p "$WORK/c1r"
cp -a "$WORK/c1/data" "$WORK/c1r/data"
printf 'FROM localhost/bench-base\nCOPY data /data\nRUN echo ran > /ran\n' > "$WORK/c1r/Dockerfile"
run_case "c1r COPY+RUN, cold" "$WORK/c1r" cold "plain-loop" "python3 '$WORK/plainloop.py' '$WORK/c1r/data' \"\$REF\""
run_case "c1r COPY+RUN, no change" "$WORK/c1r" warm
run_case "c1r COPY+RUN, one changed" "$WORK/c1r" touch "cp-al" "cp -al '$WORK/c1/data' \"\$REF\""

# Reference for c1: tar | pigz + sha256 of the same tree.
if want "c1 tar|pigz" && command -v pigz >/dev/null 2>&1; then
	t=$(time_cmd sh -c "tar -C '$WORK/c1' -cf - data | pigz | sha256sum")
	printf '%-28s %8.3fs\n' "c1 tar|pigz|sha256 reference" "$t"
fi

if want "c3 RUN on 100k files, chroot"; then
# c3: one RUN step in chroot mode (a build pod without mount rights) on an image of 100k files: kiln's
# private copy + metadata-walk diff against buildah --isolation chroot on the vfs driver (what it uses there).
mkdir -p "$WORK/c3/tree"
python3 - "$WORK/c3/tree" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(100000):
    d = os.path.join(root, f"d{i % 500:03d}")
    if i < 500:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06d}"), "w") as f:
        f.write("x")
PY
printf 'FROM localhost/bench-base\nCOPY tree /tree\n' > "$WORK/c3/Dockerfile.tree"
mkdir -p "$WORK/c3run"
printf 'FROM localhost/bench-tree\nRUN echo x > /x\n' > "$WORK/c3run/Dockerfile"
rm -rf "$WORK/kstore"; cp -a "$WORK/kiln-base" "$WORK/kstore"
"$KILN" --root "$WORK/kstore" build -q -f "$WORK/c3/Dockerfile.tree" -t bench-tree "$WORK/c3" >/dev/null
k=""; b=""
VFS=""
if [ -n "$BUILDAH" ]; then
	VFS="buildah --root $WORK/vfs-root --runroot $WORK/vfs-run --storage-driver vfs"
	$VFS bud --isolation chroot -q -t localhost/bench-base "$WORK/base" >/dev/null 2>&1
	$VFS bud --isolation chroot -q -f "$WORK/c3/Dockerfile.tree" -t localhost/bench-tree "$WORK/c3" >/dev/null 2>&1
fi
for n in $(seq "$REPEAT"); do
	k="$k $(time_cmd "$KILN" --root "$WORK/kstore" build -q --no-cache --isolation chroot -t c3 "$WORK/c3run")"
	[ -n "$VFS" ] && b="$b $(time_cmd $VFS bud --isolation chroot --layers=false -q -t c3 "$WORK/c3run")"
done
km=$(echo $k | tr ' ' '\n' | median)
bm=""; [ -n "$b" ] && bm=$(echo $b | tr ' ' '\n' | median)
report "c3 RUN on 100k files, chroot" "$km" "$bm"
fi

# Peak memory while building a 1 GiB layer (goal: 64 MiB), when GNU time is installed.
if ! want "1 GiB layer"; then
	:
elif [ -x /usr/bin/time ]; then
	mkdir -p "$WORK/mem/big"
	head -c 536870912 /dev/urandom > "$WORK/mem/big/random.bin"
	head -c 536870912 /dev/zero > "$WORK/mem/big/zeros.bin"
	printf 'FROM scratch\nCOPY big /big\n' > "$WORK/mem/Dockerfile"
	rss=$( { /usr/bin/time -f '%M' "$KILN" --root "$WORK/mem-store" build -q -t mem "$WORK/mem" >/dev/null; } 2>&1 | tail -1)
	printf '%-28s kiln peak RSS %s MiB\n' "1 GiB layer" "$((rss / 1024))"
else
	echo "1 GiB layer: /usr/bin/time not installed (apt-get install time), peak memory not measured"
fi
