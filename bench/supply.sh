#!/bin/sh
# What CA trust and Nexus routing cost a RUN step, end to end (run by `make bench`): the same one-RUN build,
# --no-cache, with and without `--ca-cert --nexus`, interleaved, RUNS times each; medians and their
# difference in milliseconds (the goal: at most 10 ms). The base image carries this machine's CA bundle,
# so the merge and the truststore work on a real-sized bundle. The peer is kiln without the supply chain,
# measured in the same run.
set -eu

KILN=${KILN:-target/release/kiln}
RUNS=${RUNS:-21}
WORK=$(mktemp -d /var/tmp/kiln-bench-supply.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

mkdir -p "$WORK/base/rootfs/bin" "$WORK/base/rootfs/etc/ssl/certs" "$WORK/ctx"
cp /bin/busybox "$WORK/base/rootfs/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$WORK/base/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$WORK/base/rootfs/etc/passwd"
cp /etc/ssl/certs/ca-certificates.crt "$WORK/base/rootfs/etc/ssl/certs/" 2>/dev/null || true
printf 'FROM scratch\nCOPY rootfs/ /\n' > "$WORK/base/Dockerfile"
"$KILN" --root "$WORK/store" build -q -t bench-base "$WORK/base" >/dev/null
printf 'FROM localhost/bench-base\nRUN echo x > /x\n' > "$WORK/ctx/Dockerfile"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=kiln-bench-ca -keyout "$WORK/ca.key" \
	-out "$WORK/ca.pem" >/dev/null 2>&1
SUPPLY=${SUPPLY_FLAGS:-"--ca-cert $WORK/ca.pem --nexus https://nexus.example.com"}

plain=""; supplied=""
# One warm-up of each: the merged bundle and the truststore are made once per content and kept in the store.
"$KILN" --root "$WORK/store" build -q --no-cache -t b "$WORK/ctx" >/dev/null
"$KILN" --root "$WORK/store" build -q --no-cache $SUPPLY -t b "$WORK/ctx" >/dev/null
for n in $(seq "$RUNS"); do
	t0=$(now); "$KILN" --root "$WORK/store" build -q --no-cache -t b "$WORK/ctx" >/dev/null; t1=$(now)
	"$KILN" --root "$WORK/store" build -q --no-cache $SUPPLY -t b "$WORK/ctx" >/dev/null; t2=$(now)
	plain="$plain $(( (t1 - t0) / 1000 ))"; supplied="$supplied $(( (t2 - t1) / 1000 ))"
done
p=$(echo $plain | tr ' ' '\n' | median); s=$(echo $supplied | tr ' ' '\n' | median)
printf '%-28s without %7.1f ms   with CA trust + Nexus %7.1f ms   difference %+6.1f ms (goal <= 10)\n' \
	"one RUN, supply chain" "$(awk -v x="$p" 'BEGIN {print x / 1000}')" "$(awk -v x="$s" 'BEGIN {print x / 1000}')" \
	"$(awk -v a="$s" -v b="$p" 'BEGIN {print (a - b) / 1000}')"
