#!/bin/bash
# Side-by-side MLM speed on an idle machine: selfsup (target/release/selfsup) 40 steps, then the
# Hugging Face transformers reference (bench/text_reference.py) 60 steps; same recipe, corpus and
# tokenizer (runs/mlm_text/tokenizer.json from `selfsup pretrain --config configs/mlm_text.toml`).
# Needs /work/venv or BENCH_VENV with torch + transformers.
cd "$(dirname "$0")/.."
rm -rf /tmp/speedprobe
target/release/selfsup pretrain --config configs/mlm_text.toml --out /tmp/speedprobe --set data.limit=1280 --set train.epochs=1 --set optim.warmup_epochs=0 --set train.knn_every=0 > /dev/null 2>/tmp/speed_selfsup.log
python3 -c "
import json
s=[json.loads(l) for l in open('/tmp/speedprobe/metrics.jsonl')]
st=[x for x in s if x.get('type')=='step']
ep=[x for x in s if x.get('type')=='epoch'][-1]
med=sorted(x['step_seconds'] for x in st[1:])[len(st[1:])//2]
print('selfsup', len(st), 'steps, median step', round(med,3), 's, tokens/s over the epoch', round(ep['tokens_per_second']))"
${BENCH_VENV:-/work/venv}/bin/python bench/text_reference.py --tokenizer runs/mlm_text/tokenizer.json --steps 60 --warmup-fraction 0 --threads 2 --log-every 10 2>&1 | grep "step " | tail -3
