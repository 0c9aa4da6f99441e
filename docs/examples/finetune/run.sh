#!/usr/bin/env bash
# The worked example of docs/finetune.md, end to end: score the bundled model on a schema it was
# never trained on, fine-tune an adapter for it from synthetic documents only, score again.
#   bash docs/examples/finetune/run.sh [OUT]        (OUT defaults to runs/warranty)
# Reports land in OUT/reports/*.json; the numbers in docs/finetune.md come from them.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${1:-runs/warranty}
HERE=docs/examples/finetune
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
SCHEMA=warranty:WarrantyClaim
mkdir -p "$OUT/reports"

# 1. The bundled model, before: 12 hand-written claims and 30 held-out synthetic ones (seed 10000).
extractkit eval --schema $SCHEMA --data $HERE/warranty-gold.jsonl --report "$OUT/reports/bundled--gold.json"
extractkit eval --schema $SCHEMA --data $HERE/warranty-synthetic-heldout.jsonl \
  --report "$OUT/reports/bundled--synthetic.json"

# 2. Fine-tune from the bundled adapter on 320 synthetic documents (seed 0), timed.
start=$(date +%s)
extractkit finetune --schema $SCHEMA --synthesize 320 --out "$OUT/adapter"
echo "finetune wall time: $(( $(date +%s) - start )) s" | tee "$OUT/reports/finetune-time.txt"

# 3. The new adapter, after, on the same two sets.
extractkit eval --schema $SCHEMA --data $HERE/warranty-gold.jsonl --adapter "$OUT/adapter" \
  --report "$OUT/reports/adapter--gold.json"
extractkit eval --schema $SCHEMA --data $HERE/warranty-synthetic-heldout.jsonl --adapter "$OUT/adapter" \
  --report "$OUT/reports/adapter--synthetic.json"
