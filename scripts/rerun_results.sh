#!/usr/bin/env bash
# Rerun committed results folders, in order, on the current commit (each resumes where it stopped).
#   bash scripts/rerun_results.sh [SPEC ...]     (default: the order below)
# Each spec writes results/<spec> (quick: results/reference/quick), then its report, its
# markdown table (table.md) and its HTML page. Two workers, one torch thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(quick tokenizers selection synergy_strength ceiling)
for spec in "${specs[@]}"; do
  out="results/$spec"
  [ "$spec" = quick ] && out="results/reference/quick"
  echo "== $spec -> $out ($(date -u +%H:%M:%S))"
  synergy-bench run "$spec" --out "$out" --workers 2
  synergy-bench report "$out" --format markdown --out "$out/table.md"
  synergy-bench report "$out" --html
done
echo "== done ($(date -u +%H:%M:%S))"
