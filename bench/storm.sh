#!/bin/sh
# The build storm (`make bench-storm`): 13 generated BuildConfigs (bench/storm_gen.py) built two ways in one
# run — `kiln bake -j` on one store, and `buildah bud --runtime runc --layers` once per image in dependency
# order, as the team's Makefiles do — three times: cold (empty stores), no change, and base changed (a file
# of the UBI-like base's context edited: every image below it must be rebuilt). Ratios are kiln / buildah.
# Targets: cold <= 0.5x, no change <= 0.05x, base changed <= 0.5x.
set -eu

KILN=${KILN:-target/release/kiln}
KILN=$(realpath "$KILN")
JOBS=${JOBS:-$(nproc)}
WORK=$(mktemp -d /var/tmp/kiln-storm.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {print b - a}'; }
report() { # report CASE KILN_SECONDS BUILDAH_SECONDS TARGET
	if [ -n "$3" ]; then
		printf '%-26s kiln %8.3fs   buildah %8.3fs   ratio %.3f (target <= %s)\n' "$1" "$2" "$3" \
			"$(awk -v a="$2" -v b="$3" 'BEGIN {print a / b}')" "$4"
	else
		printf '%-26s kiln %8.3fs   (buildah not available)\n' "$1" "$2"
	fi
}

GIT=$(python3 "$(dirname "$0")/storm_gen.py" "$WORK")

# The busybox base both builders start from (built before the clocks start).
mkdir -p "$WORK/base/rootfs/bin" "$WORK/base/rootfs/etc" "$WORK/base/rootfs/tmp"
cp /bin/busybox "$WORK/base/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$WORK/base/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/base/rootfs/etc/passwd"
printf 'FROM scratch\nCOPY rootfs/ /\n' > "$WORK/base/Dockerfile"
"$KILN" --root "$WORK/kstore" build -q -t localhost/bench-base "$WORK/base" >/dev/null

BUILDAH=""
if command -v buildah >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
	BUILDAH="buildah --root $WORK/buildah-root --runroot $WORK/buildah-run --storage-driver overlay"
	$BUILDAH bud --runtime runc --layers -q -t localhost/bench-base "$WORK/base" >/dev/null 2>&1
fi

kiln_storm() {
	t0=$(now)
	"$KILN" --root "$WORK/kstore" bake -j "$JOBS" --report "$WORK/report-$1.json" \
		--git-source "$GIT=$WORK/src" "$WORK/buildconfigs" >"$WORK/kiln-$1.out" 2>"$WORK/kiln-$1.err" || {
		echo "kiln bake failed ($1):" >&2; cat "$WORK/kiln-$1.out" "$WORK/kiln-$1.err" >&2; exit 1; }
	elapsed "$t0"
}

buildah_storm() {
	[ -n "$BUILDAH" ] || return 0
	t0=$(now)
	while read -r name ctx from; do
		set -- bud --runtime runc --layers -q -t "localhost/storm/$name:latest"
		[ "$from" = - ] || set -- "$@" --from "$from"
		$BUILDAH "$@" "$ctx" >/dev/null 2>"$WORK/buildah.err" || { echo "buildah failed: $name" >&2; cat "$WORK/buildah.err" >&2; exit 1; }
	done < "$WORK/order.txt"
	elapsed "$t0"
}

# What the kiln report says each build did, for the record.
summary() { python3 -c 'import json,sys,collections; r=json.load(open(sys.argv[1])); print("   kiln:", dict(collections.Counter(b["status"] for b in r["builds"])))' "$1"; }

k=$(kiln_storm cold); b=$(buildah_storm)
report "storm cold (13 images)" "$k" "$b" 0.5; summary "$WORK/report-cold.json"
k=$(kiln_storm again); b=$(buildah_storm)
report "storm no change" "$k" "$b" 0.05; summary "$WORK/report-again.json"
echo "# base changed $(date +%s.%N)" >> "$WORK/src/ubi-base/os-release"
echo "changed" > "$WORK/src/ubi-base/src/pkg00/changed.txt"
k=$(kiln_storm base-changed); b=$(buildah_storm)
report "storm base changed" "$k" "$b" 0.5; summary "$WORK/report-base-changed.json"
