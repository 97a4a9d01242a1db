#!/usr/bin/env bash
# Creates .venv-peers-scan (gitignored) with the peer scanners that bench/bench_scan.py compares
# modelgate against, pinned in bench/requirements-peers-scan.txt. Kept apart from .venv so the
# peers' dependencies never change modelgate's.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-peers-scan
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements-peers-scan.txt
for tool in modelaudit picklescan modelscan; do
  [ -x "$venv/bin/$tool" ] || { echo "setup_peers_scan: $venv/bin/$tool is missing" >&2; exit 1; }
done
"$venv/bin/python" -c "import fickling" || { echo "setup_peers_scan: fickling does not import" >&2; exit 1; }
echo "peer scanners ready in $venv"
