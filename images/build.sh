#!/usr/bin/env bash
# Build the task image (touchstone-task:latest) without a registry: mmdebstrap a minimal Debian
# bookworm root filesystem from Debian's mirror, then `docker import` it. Needs only the Debian
# mirror (the trainer's Python dependencies are Debian packages), docker and mmdebstrap.
#
# Skips the build when the image exists and was built from the same inputs: the hash of this
# script (which holds the package list) and the mirror, kept as the label touchstone.inputs.
#
# Environment: IMAGE (default touchstone-task:latest), MIRROR (default Debian's), FORCE=1 to rebuild.
set -euo pipefail

IMAGE="${IMAGE:-touchstone-task:latest}"
SUITE=bookworm
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
# openssh-server, python3-pip: the local RunPod fake runs its pods as containers of this image,
# reached over sshd, installing feature sets' requirements with pip as RunPod images do
PACKAGES=python3,python3-numpy,python3-pandas,python3-sklearn,git,ca-certificates,openssh-server,python3-pip

here="$(cd "$(dirname "$0")" && pwd)"
inputs="$( (cat "$here/build.sh"; echo "$MIRROR") | sha256sum | cut -c1-16)"

# one build at a time on this machine (a second waits, then finds the image up to date)
exec 9>"${TMPDIR:-/tmp}/touchstone-images.lock"
flock 9

have="$(docker image inspect --format '{{ index .Config.Labels "touchstone.inputs" }}' "$IMAGE" 2>/dev/null || true)"
if [ "${FORCE:-0}" != 1 ] && [ "$have" = "$inputs" ]; then
  echo "images: $IMAGE is up to date (inputs $inputs)"
  exit 0
fi

start=$(date +%s)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Debian's python3-scipy depends on python3-pythran, a compiler that pulls in g++ and the boost
# headers (~500 MB), though scipy's compiled modules never need it at run time: an empty
# stand-in package satisfies the dependency (checked by the import test at the end).
mkdir -p "$work/pythran/DEBIAN"
cat >"$work/pythran/DEBIAN/control" <<CONTROL
Package: python3-pythran
Version: 99:0+touchstone
Architecture: all
Maintainer: Touchstone <touchstone@localhost>
Description: empty stand-in for pythran (scipy needs it only to build)
CONTROL
dpkg-deb --root-owner-group --build "$work/pythran" "$work/python3-pythran.deb" >/dev/null

rootfs() {
  # --variant=apt: essential packages + apt; no recommends (they would bring gcc and boost);
  # no docs, man pages or locales; dpkg without fsync (the tree only goes into a tarball)
  mmdebstrap --quiet --variant=apt --include="$PACKAGES" \
    --dpkgopt=force-unsafe-io --aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    --hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount --include="$work/python3-pythran.deb" \
    "$SUITE" "$work/rootfs.tar" "$MIRROR" </dev/null
}
rootfs || { echo 'images: mmdebstrap failed; retrying once' >&2; rm -f "$work/rootfs.tar"; rootfs; }
rootfs_at=$(date +%s)

docker import \
  --change "LABEL touchstone.inputs=$inputs" \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8' \
  --change 'USER 65534:65534' \
  --change 'WORKDIR /tmp' \
  --change 'CMD ["python3"]' \
  "$work/rootfs.tar" "$IMAGE" >/dev/null

# the trainer's imports must work in the image, as the unprivileged user the agent runs
docker run --rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges \
  --user 65534:65534 "$IMAGE" python3 -c 'import numpy, pandas, sklearn; print("images: numpy", numpy.__version__, "pandas", pandas.__version__, "sklearn", sklearn.__version__)'
docker run --rm --network none --entrypoint /usr/sbin/sshd "$IMAGE" -V 2>&1 | head -1 | sed 's/^/images: /'
echo "images: built $IMAGE (inputs $inputs) in $(( $(date +%s) - start ))s (root filesystem $(( rootfs_at - start ))s)"
