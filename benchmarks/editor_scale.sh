#!/usr/bin/env bash
# Benchmark row "e" (#16): the Flow Editor at scale, in headless Chromium against a running web server.
# Runs browser/scale.test.mjs alone: a 200-step flow is saved through the API, opened in the Desk Flow
# Editor (route → 200 nodes rendered, measured and laid out, validation answered) and dry-run from the
# Test run dialog ("Run test" → all 200 rows and badges shown), timed in the page with performance.now().
# Prints the figures (medians of FLOW_SCALE_REPEAT, default 5, and the best of them: the machine is
# shared, and a busy neighbour slows a page as much as it slows the server) and, as its last line, their
# JSON.
#
#   benchmarks/editor_scale.sh [URL [SITE]]      e.g. benchmarks/editor_scale.sh http://erp.localhost:8010 erp.localhost
#
# URL/SITE default to $FLOW_BROWSER_URL / $FLOW_BROWSER_SITE (else http://erp.localhost:8010, erp.localhost).
# The server must serve SITE at URL (`bench serve`; Chromium lowercases host names, so a site spelt
# with capitals needs `bench --site SITE serve`), with the app's Desk assets built (`bench build --app
# flow_engine`). Needs Debian's chromium and node; installs playwright-core into browser/ if missing.
# Targets: open + validate + layout < 1000 ms, dry run < 500 ms. The exit status is the test's (it
# fails on a wrong outcome, never on time).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export FLOW_BROWSER_URL="${1:-${FLOW_BROWSER_URL:-http://erp.localhost:8010}}"
export FLOW_BROWSER_SITE="${2:-${FLOW_BROWSER_SITE:-erp.localhost}}"
export FLOW_ENGINE_BENCH="${FLOW_ENGINE_BENCH:-/home/frappe/frappe-bench}"
if [ ! -d "$ROOT/browser/node_modules/playwright-core" ]; then
	(cd "$ROOT/browser" && npm install --silent --no-audit --no-fund >/dev/null 2>&1) || { echo "npm install in browser/ failed"; exit 2; }
fi
OUT="$(mktemp /tmp/editor-scale.XXXXXX.json)"
export FLOW_SCALE_JSON="$OUT"
LOG="$(mktemp)"
(cd "$ROOT" && node --test --test-concurrency=1 browser/scale.test.mjs) >"$LOG" 2>&1
rc=$?
grep -E '^# (first open|open [0-9]|dry run [0-9]|editor at scale)' "$LOG" | sed 's/^# //'
if [ "$rc" -ne 0 ]; then
	grep -E '^not ok|error:' "$LOG" | head -5
	echo "editor_scale: the test failed (exit $rc); full output in $LOG"
fi
if [ -s "$OUT" ]; then
	python3 - "$OUT" <<'PY'
import json, sys

f = json.load(open(sys.argv[1]))
if f.get("open_ms") is not None:
	t = f["targets"]
	print(
		f"e  editor at scale ({f['steps']} steps, median of {f['repeat']}): "
		f"open+validate+layout {f['open_ms']:.0f} ms (best {f['open_best_ms']:.0f}; target < {t['open_ms']}, "
		f"{'met' if f['open_within_target'] else 'MISSED'}; first open with the bundle {f['open_first_ms']:.0f} ms), "
		f"dry run {f['dry_run_ms']:.0f} ms (best {f['dry_run_best_ms']:.0f}; target < {t['dry_run_ms']}, "
		f"{'met' if f['dry_run_within_target'] else 'MISSED'})"
	)
print(json.dumps(f, sort_keys=True))
PY
	# keep a copy beside the suite's other results
	for dir in "$ROOT/artifacts" /tmp/flow_engine-artifacts; do
		if mkdir -p "$dir" 2>/dev/null && cp "$OUT" "$dir/editor-scale.json" 2>/dev/null; then break; fi
	done
fi
rm -f "$OUT"
[ "$rc" -eq 0 ] && rm -f "$LOG"
exit "$rc"
