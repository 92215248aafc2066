#!/usr/bin/env bash
# The main job on the bundled default data, from a fresh machine:
#   1. set up .venv (idempotent; the first run builds mmcv once, see README)
#   2. generate the mini ADE20K-layout dataset into data/mini_ade (real photographs + 5 object classes)
#   3. train a FastViT-T8 Semantic FPN from scratch on CPU (300 iterations, batch 4, 256x256)
#   4. evaluate mIoU on the mini val split
#   5. reparameterise (fuse) the model, check it matches, evaluate the fused deploy model
#   6. run the demo on a val image and write the overlay PNG (and a loss-curve PNG)
# Re-running resumes an interrupted training run and skips finished steps.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
PY="$ROOT/.venv/bin/python"
CONFIG=configs/seg/fpn_fastvit-t8_1xb4-300it_mini-ade-256x256.py
DEPLOY_CONFIG=configs/seg/fpn_fastvit-t8_1xb4-300it_mini-ade-256x256_deploy.py
WORK=work_dirs/quickstart
step() { printf '\n[quickstart %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

step "1/5 mini dataset -> data/mini_ade"
"$PY" tools/dataset_converters/make_mini_datasets.py ade --out data/

step "2/5 training FastViT-T8 Semantic FPN from scratch (CPU, 300 iterations)"
START=$(date +%s)
if [[ -f "$WORK/iter_300.pth" ]]; then
  echo "already trained: $WORK/iter_300.pth"
else
  "$PY" tools/train.py "$CONFIG" --work-dir "$WORK" --resume
fi
echo "training took $(( $(date +%s) - START )) s"
"$PY" tools/analysis/plot_loss.py "$WORK" --keys loss decode.acc_seg --out "$WORK/loss_curve.png"

step "3/5 evaluating mIoU on the mini val split"
"$PY" tools/test.py "$CONFIG" "$WORK/iter_300.pth" --work-dir "$WORK/test"

step "4/5 reparameterising (fusing) and evaluating the deploy model"
"$PY" tools/deploy/reparameterize.py "$CONFIG" "$WORK/iter_300.pth" "$WORK/fused.pth"
"$PY" tools/test.py "$DEPLOY_CONFIG" "$WORK/fused.pth" --work-dir "$WORK/test_fused"

step "5/5 demo on a validation image"
IMG=$(ls data/mini_ade/images/validation/*.jpg | head -n 1)
"$PY" demo/image_demo.py "$IMG" "$DEPLOY_CONFIG" "$WORK/fused.pth" --out-file "$WORK/demo_overlay.png"

"$PY" - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
plain = json.load(open(f'{work}/test/test_metrics.json'))['metrics']
fused = json.load(open(f'{work}/test_fused/test_metrics.json'))['metrics']
print(f"\nmIoU (mini val): trained {plain['mIoU']:.2f} | fused deploy model {fused['mIoU']:.2f}")
PY
echo "checkpoint:     $WORK/iter_300.pth (fused: $WORK/fused.pth)"
echo "training log:   $(ls -d "$WORK"/2*/ 2>/dev/null | tail -n 1)  (text log, scalars, tensorboard)"
echo "demo overlay:   $WORK/demo_overlay.png"
echo "loss curve:     $WORK/loss_curve.png"
