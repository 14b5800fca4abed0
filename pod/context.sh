#!/bin/sh
# Assembles the build context of kiln's own image (the Containerfile at the top of the repository) from
# this machine: kiln, the shared libraries `ldd` lists for it and for newuidmap/newgidmap, a static busybox,
# newuidmap/newgidmap (setuid root, for pods allowed a sub-id range), /etc files and, when asked, a CA bundle.
#
# usage: pod/context.sh [--ca-bundle FILE] KILN_BINARY OUT_DIR
# Needs: ldd, a static busybox at /bin/busybox (Debian: busybox-static); uses newuidmap/newgidmap (uidmap),
# setcap (libcap2-bin; as root) and strip (binutils) when present.
set -eu

ca_bundle=""
if [ "${1:-}" = "--ca-bundle" ]; then
	ca_bundle="$2"
	shift 2
fi
if [ $# -ne 2 ]; then
	echo "usage: $0 [--ca-bundle FILE] KILN_BINARY OUT_DIR" >&2
	exit 2
fi
kiln="$1"
out="$2"

rm -rf "$out"
mkdir -p "$out/libs" "$out/busybox/bin" "$out/uidmap/usr/bin" "$out/home/kiln" "$out/base/etc" "$out/base/tmp"

# kiln itself; debug information is dropped (a debug build's is most of its size), the code is unchanged.
cp "$kiln" "$out/kiln"
chmod 0755 "$out/kiln"
if command -v strip >/dev/null 2>&1; then
	strip --strip-debug "$out/kiln"
fi

# The helpers for a sub-id range; kiln maps only the caller's own id without them. They get a file
# capability, not the setuid bit: setuid makes them root of the pod, and root without CAP_SYS_ADMIN may not
# write another user's namespace map, while the caller holding only CAP_SETUID (CAP_SETGID) may.
helpers=""
for tool in newuidmap newgidmap; do
	path="$(command -v "$tool" 2>/dev/null || true)"
	if [ -n "$path" ]; then
		dest="$out/uidmap/usr/bin/$tool"
		cp "$path" "$dest"
		chmod 0755 "$dest"
		cap=cap_setuid
		[ "$tool" = newgidmap ] && cap=cap_setgid
		if ! setcap "$cap=ep" "$dest" 2>/dev/null; then
			chmod 4755 "$dest"
			echo "warning: cannot give $tool $cap (setcap, as root): it is setuid instead, which maps" \
				"sub-ids only in pods with CAP_SYS_ADMIN" >&2
		fi
		helpers="$helpers $path"
	fi
done

# Every library the dynamic loader would load, at the path it would load it from (the loader included).
for binary in "$kiln" $helpers; do
	ldd "$binary" | grep -o '/[^ ]*' | while read -r lib; do
		mkdir -p "$out/libs$(dirname "$lib")"
		cp -L "$lib" "$out/libs$lib"
	done
done

# A shell and the usual tools, for `sh -c` wrappers and for looking around in a failed pod.
cp /bin/busybox "$out/busybox/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -s busybox "$out/busybox/bin/$applet"
done

# root, a user with a sub-id range (uid 1000; OpenShift's arbitrary uids have no entry and need none), nobody.
cat > "$out/base/etc/passwd" <<'END'
root:x:0:0:root:/root:/bin/sh
kiln:x:1000:1000:kiln:/home/kiln:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
END
cat > "$out/base/etc/group" <<'END'
root:x:0:
kiln:x:1000:
nobody:x:65534:
END
echo "kiln:100000:65536" > "$out/base/etc/subuid"
echo "kiln:100000:65536" > "$out/base/etc/subgid"
chmod 1777 "$out/base/tmp"

if [ -n "$ca_bundle" ]; then
	mkdir -p "$out/base/etc/ssl/certs"
	cp -L "$ca_bundle" "$out/base/etc/ssl/certs/ca-certificates.crt"
fi
