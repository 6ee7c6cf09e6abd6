#!/usr/bin/env bash
# Build the platform's image, mlops/platform:<package version>, from docker/Dockerfile.
#
#   scripts/images.sh            build it (Docker when an engine answers, else buildah)
#   scripts/images.sh --tools    what the image tests need: podman, runc, redis, and the image in
#                                podman's storage (copied from Docker when Docker built it)
#   scripts/images.sh --size     print the image's size in bytes
#   scripts/images.sh --start    start the build in the background (`make test` overlaps it with
#                                the chart tests: the build waits on the network, they on a core)
#   scripts/images.sh --wait     wait for that build, show its steps, fail as it failed
#   scripts/images.sh --stop     stop that build (`make test` does when the chart tests fail)
#
# Without a Docker engine (CI, this kind of machine) it uses Debian's buildah and podman
# (installed here with apt-get when missing, as root). No base image can be pulled on such a
# machine: the base named in the Dockerfile is then a STAND-IN, built once with debootstrap
# (Debian bookworm minbase + Debian's Python 3.11) and kept in the container storage under the
# upstream name, so the Dockerfile stays as it is. A real pull is tried first.
# Environment: MLOPS_IMAGE_ENGINE=docker|buildah forces an engine; MLOPS_STORAGE_DRIVER
# (default overlay) is the containers-storage driver of buildah and podman (vfs works anywhere).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
IMAGE="mlops/platform:$VERSION"
DOCKERFILE="docker/Dockerfile"
BASE="$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$DOCKERFILE")"
LOG_DIR="$ROOT/build/images"
STANDIN_DIR="${MLOPS_TOOLS_DIR:-$ROOT/.tools}/stand-in"
export STORAGE_DRIVER="${MLOPS_STORAGE_DRIVER:-overlay}"
# pip inside the build trusts the host's CA bundle when the host reaches PyPI through a proxy
# with its own CA; handed in as a build secret, never written into a layer.
CA_BUNDLE="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"

log() { echo "images: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
die() { log "ERROR: $*"; exit 1; }

apt_install() {
  local sudo=""
  if [[ "$(id -u)" != 0 ]]; then
    if have sudo && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      die "not root and no passwordless sudo: run apt-get install -y $*"
    fi
  fi
  have apt-get || die "apt-get not found: install $* by hand"
  if ! apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    log "apt-get update ..."
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  fi
  log "apt-get install $* ..."
  # Another apt-get may hold the lock for a while (a fresh machine's own updates): wait for it.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends "$@" >&2
}

# The image tests' tools, and any other package given (its command has the package's name), in
# one apt-get call.
ensure_tools() {
  local missing=() tool
  for tool in podman runc redis-server "$@"; do have "$tool" || missing+=("$tool"); done
  if ((${#missing[@]})); then apt_install "${missing[@]}" uidmap; fi
}

docker_engine() {
  [[ "${MLOPS_IMAGE_ENGINE:-}" == buildah ]] && return 1
  have docker && docker info >/dev/null 2>&1
}

# --- the stand-in base (buildah only) -----------------------------------------------------------
base_present() { buildah inspect --type image "$BASE" >/dev/null 2>&1; }

stand_in_base() {
  local rootfs="$STANDIN_DIR/rootfs" start=$SECONDS
  have debootstrap || apt_install debootstrap
  log "base $BASE cannot be pulled: building a STAND-IN (debootstrap bookworm + Debian python3 3.11) ..."
  rm -rf "$rootfs" && mkdir -p "$STANDIN_DIR"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    bookworm "$rootfs" http://deb.debian.org/debian >"$STANDIN_DIR/debootstrap.log" 2>&1 \
    || { tail -n 20 "$STANDIN_DIR/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$STANDIN_DIR/rootfs.tar" .
  local ctr
  ctr="$(buildah from scratch)"
  buildah add "$ctr" "$STANDIN_DIR/rootfs.tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 \
    --label "org.mlops-platform.stand-in=debootstrap bookworm + Debian python3, for $BASE" "$ctr"
  buildah commit --quiet "$ctr" "docker.io/library/$BASE" >/dev/null
  buildah rm "$ctr" >/dev/null
  rm -rf "$rootfs" "$STANDIN_DIR/rootfs.tar"
  log "stand-in base docker.io/library/$BASE ready in $((SECONDS - start)) s (cached for later builds)"
}

ensure_base() {
  if base_present; then
    if buildah inspect --type image --format '{{.Docker.Config.Labels}}' "$BASE" 2>/dev/null \
      | grep -q 'org.mlops-platform.stand-in'; then
      log "base $BASE: the cached STAND-IN (debootstrap bookworm + Debian python3)"
    fi
    return
  fi
  log "pulling $BASE ..."
  if timeout 120 buildah pull --quiet "docker.io/library/$BASE" >/dev/null 2>&1; then return; fi
  stand_in_base
}

# --- build ----------------------------------------------------------------------------------------
progress() {
  # One line per Dockerfile step with the time since the build started; the full log in a file.
  local start=$SECONDS
  while IFS= read -r line; do
    echo "$line" >>"$LOG_DIR/build.log"
    case "$line" in
      *"STEP "[0-9]* | "#"[0-9]*" ["* | "Step "*) printf 'images: [%4ss] %s\n' "$((SECONDS - start))" "${line:0:110}" >&2 ;;
    esac
  done
}

build() {
  mkdir -p "$LOG_DIR" && : >"$LOG_DIR/build.log"
  local secret=() start=$SECONDS status=0
  [[ -s "$CA_BUNDLE" ]] && secret=(--secret "id=pip-ca,src=$CA_BUNDLE")
  if docker_engine; then
    log "building $IMAGE with Docker (BuildKit) from $DOCKERFILE"
    DOCKER_BUILDKIT=1 docker build --progress=plain "${secret[@]}" -f "$DOCKERFILE" -t "$IMAGE" . 2>&1 \
      | progress || status=$?
  else
    have buildah || apt_install buildah
    ensure_tools
    ensure_base
    log "building $IMAGE with buildah ($STORAGE_DRIVER storage, chroot isolation) from $DOCKERFILE"
    buildah bud --isolation chroot --pull=never --layers "${secret[@]}" \
      -f "$DOCKERFILE" -t "$IMAGE" . 2>&1 | progress || status=$?
  fi
  if ((status)); then
    tail -n 30 "$LOG_DIR/build.log" >&2
    die "building $IMAGE failed (whole log: $LOG_DIR/build.log)"
  fi
  log "built $IMAGE in $((SECONDS - start)) s, $(size_of "$IMAGE") bytes"
  echo "image=$IMAGE seconds=$((SECONDS - start)) bytes=$(size_of "$IMAGE")"
}

size_of() {
  if docker_engine; then docker image inspect --format '{{.Size}}' "$1"; else
    podman --storage-driver "$STORAGE_DRIVER" image inspect --format '{{.Size}}' "$1"
  fi
}

# The image tests run the image under podman: an image Docker built is copied into its storage.
ensure_in_podman() {
  podman image exists "$IMAGE" 2>/dev/null && return
  if docker_engine && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "copying $IMAGE from Docker into podman's storage (the image tests run it with podman) ..."
    docker save "$IMAGE" | podman load --quiet >/dev/null
  fi
}

# --- in the background (make test) ---------------------------------------------------------------
BACKGROUND_LOG="$LOG_DIR/background.log"
BACKGROUND_STATUS="$LOG_DIR/background.status"
BACKGROUND_PID="$LOG_DIR/background.pid"

start_background() {
  mkdir -p "$LOG_DIR" && rm -f "$BACKGROUND_STATUS"
  # apt-get first, in the foreground: the tests that run meanwhile must not find dpkg locked.
  if ! docker_engine; then ensure_tools buildah debootstrap; fi
  # The exit status goes to a file: --wait runs in another shell, not this one's parent.
  # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
  # Its own session (setsid), so --stop can end the build and every process it started.
  setsid nohup bash -c '"$0" >"$1" 2>&1; echo $? >"$2"' "$ROOT/scripts/images.sh" \
    "$BACKGROUND_LOG" "$BACKGROUND_STATUS" </dev/null >/dev/null 2>&1 &  # holds no pipe of make's
  echo $! >"$BACKGROUND_PID"
  log "building $IMAGE in the background while other tests run (log: $BACKGROUND_LOG)"
}

wait_background() {
  [[ -e "$BACKGROUND_LOG" ]] || die "no background build was started (scripts/images.sh --start)"
  local start=$SECONDS
  until [[ -s "$BACKGROUND_STATUS" ]]; do
    if ! kill -0 "$(cat "$BACKGROUND_PID")" 2>/dev/null && [[ ! -s "$BACKGROUND_STATUS" ]]; then
      tail -n 30 "$BACKGROUND_LOG" >&2
      die "the background build ended without a status (killed?): run make images"
    fi
    if (((SECONDS - start) % 30 == 0)); then
      log "waiting for the background build ($((SECONDS - start)) s): $(grep '^images: ' "$BACKGROUND_LOG" | tail -n 1)"
    fi
    sleep 1
  done
  local status
  status="$(cat "$BACKGROUND_STATUS")"
  grep '^images: \|^image=' "$BACKGROUND_LOG" >&2 || true
  ((status == 0)) || { tail -n 30 "$BACKGROUND_LOG" >&2; die "the background build failed (log: $BACKGROUND_LOG)"; }
}

stop_background() {
  local pid
  pid="$(cat "$BACKGROUND_PID" 2>/dev/null)" || return 0
  if [[ ! -s "$BACKGROUND_STATUS" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    log "stopped the background build (log: $BACKGROUND_LOG)"
  fi
}

case "${1:-}" in
  --tools) ensure_tools && ensure_in_podman ;;
  --start) start_background ;;
  --wait) wait_background ;;
  --stop) stop_background ;;
  --size) size_of "$IMAGE" ;;
  "") build ;;
  *) die "unknown option $1 (use --tools, --size, --start, --wait or --stop, or nothing to build)" ;;
esac
