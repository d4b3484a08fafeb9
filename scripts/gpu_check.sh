#!/usr/bin/env bash
# One-shot GPU check, for a machine with one CUDA device (about 8 minutes on an H200):
#   1. the tests that need CUDA,
#   2. `synergy-bench bench train --device cuda` (fused training step against its references),
#   3. one training epoch of the `paper` Trifeature S profile for comm and infmasking, timed.
# Usage, from the repository root, with the package installed (`pip install -e ".[test]"`):
#   bash scripts/gpu_check.sh [OUT_DIR]
# Prints the times; the bench CSV and the two run folders are left under OUT_DIR (default /tmp/gpu_check).
set -euo pipefail
out="${1:-/tmp/gpu_check}"
mkdir -p "$out"
python - <<'EOF'
import torch
assert torch.cuda.is_available(), "no CUDA device: this script checks the GPU path"
print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF

echo "== CUDA tests"
t0=$SECONDS
python -m pytest -q -k cuda -p no:cacheprovider
echo "cuda tests: $((SECONDS - t0)) s"

echo "== bench train --device cuda"
t0=$SECONDS
synergy-bench bench train --device cuda --repeats 3 --out "$out/bench"
echo "bench train: $((SECONDS - t0)) s"

for method in comm infmasking; do
  echo "== one paper-profile epoch: $method"
  t0=$SECONDS
  synergy-bench run trifeature_s --set profile=paper --set "methods=[$method]" --set "controls=[]" \
    --set seeds=1 --set train.epochs=1 --device cuda --out "$out/paper_$method" > "$out/paper_$method.log"
  python - "$out/paper_$method" "$method" "$((SECONDS - t0))" <<'EOF'
import sys
import pandas as pd
df = pd.read_csv(f"{sys.argv[1]}/results.csv")
print(f"{sys.argv[2]}: one epoch of training {df.train_seconds.iloc[0]:.1f} s "
      f"(whole run with data rendering and probes {sys.argv[3]} s)")
EOF
done
