#!/usr/bin/env bash
# Install the two peers the benchmark suite compares flow_engine against, outside the repo.
#
#   bash benchmarks/peers/setup.sh            # both
#   bash benchmarks/peers/setup.sh prefect    # Prefect 3.8.8 only  (~1 min, ~250 MB)
#   bash benchmarks/peers/setup.sh n8n        # n8n 1.123.0 only    (~6 min, ~1.6 GB)
#
# Idempotent: a peer that is already installed at the right version (and works) is left alone.
# Uses only the PyPI and npm registries. Nothing here touches the repo or a Frappe site.
#
# Environment:
#   PEERS_DIR    where to install (default /opt/peers)
#   PEER_PYTHON  interpreter for Prefect's venv (default /usr/bin/python3, falling back to python3)
#   PEERS_USER   user that runs the benchmarks and so needs to write the peers' state directories
#                (prefect-home, n8n-home); default: `frappe` when that user exists (benchmarks/run.py
#                runs as the bench user). The installs themselves stay root-owned and read-only.
set -euo pipefail

PEERS_DIR="${PEERS_DIR:-/opt/peers}"
PREFECT_VERSION="3.8.8"
# Prefect 3.8.8 does not cap FastAPI; newer FastAPI releases break its local server.
FASTAPI_SPEC="fastapi>=0.139,<0.145"
N8N_VERSION="1.123.0"
# n8n-nodes-base depends on an xlsx tarball hosted off the registry; the registry's last release
# of the same package is used instead.
XLSX_VERSION="0.18.5"

PREFECT_VENV="$PEERS_DIR/prefect-venv"
PREFECT_HOME_DIR="$PEERS_DIR/prefect-home"
N8N_DIR="$PEERS_DIR/n8n"
N8N_HOME_DIR="$PEERS_DIR/n8n-home"

log() { printf '[peers/setup] %s\n' "$*" >&2; }
die() {
	printf '[peers/setup] ERROR: %s\n' "$*" >&2
	exit 1
}

setup_prefect() {
	local py="${PEER_PYTHON:-}"
	if [[ -z "$py" ]]; then
		if [[ -x /usr/bin/python3 ]]; then py=/usr/bin/python3; else py="$(command -v python3 || true)"; fi
	fi
	[[ -n "$py" ]] || die "no python3 found (set PEER_PYTHON)"
	mkdir -p "$PEERS_DIR" "$PREFECT_HOME_DIR"

	local check
	check="import prefect, fastapi
from packaging.version import Version as V
assert prefect.__version__ == '$PREFECT_VERSION', prefect.__version__
assert V('0.139') <= V(fastapi.__version__) < V('0.145'), fastapi.__version__
print('prefect', prefect.__version__, 'fastapi', fastapi.__version__)"
	if [[ -x "$PREFECT_VENV/bin/python" ]] && "$PREFECT_VENV/bin/python" -c "$check" >/dev/null 2>&1; then
		log "Prefect $PREFECT_VERSION already installed in $PREFECT_VENV"
		return 0
	fi

	local t0=$SECONDS
	if [[ ! -x "$PREFECT_VENV/bin/python" ]]; then
		log "creating venv $PREFECT_VENV with $py"
		"$py" -m venv "$PREFECT_VENV" ||
			die "'$py -m venv' failed (on Debian: apt-get install python3-venv)"
	fi
	log "installing prefect==$PREFECT_VERSION '$FASTAPI_SPEC' from PyPI"
	"$PREFECT_VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
	# (the grep only hides a machine-local pip index's "Location ... is ignored" noise)
	"$PREFECT_VENV/bin/python" -m pip install --quiet "prefect==$PREFECT_VERSION" "$FASTAPI_SPEC" \
		2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	"$PREFECT_VENV/bin/python" -c "$check" >&2 || die "Prefect installed but does not import as expected"
	"$PREFECT_VENV/bin/python" -m pip freeze >"$PEERS_DIR/prefect-freeze.txt" 2>/dev/null || true
	log "Prefect ready in $((SECONDS - t0)) s ($(du -sh "$PREFECT_VENV" | cut -f1)); pip freeze in $PEERS_DIR/prefect-freeze.txt"
}

node_ok() {
	# n8n 1.123 wants node >= 20.19, <= 24.x
	node -e '
		const [a, b] = process.versions.node.split(".").map(Number);
		process.exit((a > 20 || (a === 20 && b >= 19)) && a <= 24 ? 0 : 1);
	'
}

n8n_installed() {
	[[ -f "$N8N_DIR/node_modules/n8n/package.json" ]] || return 1
	(
		cd "$N8N_DIR" && node -e '
			const v = require("n8n/package.json").version;
			if (v !== process.argv[1]) { console.error("n8n " + v); process.exit(1); }
			require("sqlite3");                       // native binding present
			const x = require.resolve("xlsx", {paths: [require.resolve("n8n-nodes-base/package.json")]});
			if (require(x).version !== process.argv[2]) process.exit(1);
		' "$N8N_VERSION" "$XLSX_VERSION"
	) >/dev/null 2>&1
}

build_sqlite3() {
	# sqlite3's install script first tries to download a prebuilt binary (not reachable here),
	# then builds from source with node-gyp. If the binding is still missing, build it directly with
	# npm's bundled node-gyp, against the local Node headers when there are any.
	(cd "$N8N_DIR" && node -e 'require("sqlite3")') >/dev/null 2>&1 && return 0
	log "building the sqlite3 native binding from source (node-gyp)"
	local gyp nodedir_arg=()
	gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
	[[ -f "$gyp" ]] || die "npm's bundled node-gyp not found ($gyp)"
	if [[ -f /usr/include/node/node_version.h ]]; then nodedir_arg=(--nodedir=/usr); fi
	(cd "$N8N_DIR/node_modules/sqlite3" && node "$gyp" rebuild "${nodedir_arg[@]}" >&2) ||
		die "building sqlite3 failed (needs python3, make, g++ and Node headers: apt-get install build-essential nodejs-dev?)"
	(cd "$N8N_DIR" && node -e 'require("sqlite3")') || die "sqlite3 still does not load"
}

setup_n8n() {
	command -v node >/dev/null || die "node not found (n8n $N8N_VERSION needs Node 20.19+ and npm)"
	command -v npm >/dev/null || die "npm not found"
	node_ok || die "n8n $N8N_VERSION needs Node >= 20.19 and <= 24.x; found $(node -v)"
	mkdir -p "$N8N_DIR" "$N8N_HOME_DIR"

	local pkg
	pkg=$(
		cat <<EOF
{
  "name": "flow-engine-peer-n8n",
  "private": true,
  "version": "1.0.0",
  "description": "n8n for flow_engine's peer benchmark (benchmarks/peers)",
  "dependencies": {
    "n8n": "$N8N_VERSION"
  },
  "overrides": {
    "xlsx": "$XLSX_VERSION"
  }
}
EOF
	)
	if [[ ! -f "$N8N_DIR/package.json" ]] || [[ "$(cat "$N8N_DIR/package.json")" != "$pkg" ]]; then
		printf '%s\n' "$pkg" >"$N8N_DIR/package.json"
	fi

	if n8n_installed; then
		log "n8n $N8N_VERSION already installed in $N8N_DIR"
		return 0
	fi
	local t0=$SECONDS
	log "installing n8n@$N8N_VERSION (xlsx overridden to $XLSX_VERSION) from npm into $N8N_DIR; takes minutes"
	# SCARF_ANALYTICS=false: one dependency's postinstall would otherwise try to phone home.
	(cd "$N8N_DIR" && SCARF_ANALYTICS=false npm install --no-audit --no-fund --loglevel=error >&2) ||
		die "npm install failed"
	build_sqlite3
	n8n_installed || die "n8n installed but the check failed (version, sqlite3 binding or xlsx override)"
	log "n8n ready in $((SECONDS - t0)) s ($(du -sh "$N8N_DIR" | cut -f1))"
}

state_dirs_for_user() {
	local user="${PEERS_USER-}"
	if [[ -z "${PEERS_USER+x}" ]] && id frappe >/dev/null 2>&1; then user=frappe; fi
	[[ -n "$user" ]] || return 0
	id "$user" >/dev/null 2>&1 || die "PEERS_USER=$user: no such user"
	local d
	for d in "$@"; do
		if [[ -d "$d" ]] && [[ "$(id -u)" == 0 ]]; then chown -R "$user:" "$d"; fi
	done
	log "state directories owned by $user: $*"
}

what="${1:-all}"
case "$what" in
prefect)
	setup_prefect
	state_dirs_for_user "$PREFECT_HOME_DIR"
	;;
n8n)
	setup_n8n
	state_dirs_for_user "$N8N_HOME_DIR"
	;;
all)
	setup_prefect
	setup_n8n
	state_dirs_for_user "$PREFECT_HOME_DIR" "$N8N_HOME_DIR"
	;;
-h | --help)
	sed -n '2,18p' "$0"
	exit 0
	;;
*) die "usage: $0 [all|prefect|n8n]" ;;
esac
log "done"
