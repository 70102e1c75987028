#!/usr/bin/env bash
# usage: tools/bit_identity.sh REPO OUTDIR: trains the three bit-identity cases with the code of the
# checkout REPO (the main config at 30 iterations: default strategy; 4 agents mirrored over 2
# replicas; 2 workers with the neighbors exchange). Compare two OUTDIRs with
# tools/compare_checkpoints.py.
set -e
REPO=$1; OUT=$2
PY=${PY:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
export PYTHONPATH=$REPO TF_CPP_MIN_LOG_LEVEL=3
cd $REPO
COMMON="--config.train.iterations=30 --config.eval.eval_every=0 --config.eval.final_samples=0 --config.train.checkpoint_every=10 --config.train.sample_every=10 --config.train.log_every=10"
FOUR="--config.num_agents=4 --config.topology.graph=ring --config.data.classes=[[0,1,2],[3,4,5],[6,7],[8,9]]"
rm -rf $OUT; mkdir -p $OUT
$PY bin/train --config=configs/mnist_noniid.py --workdir=$OUT/default $COMMON > $OUT/default.log 2>&1
$PY bin/train --config=configs/mnist_noniid.py --workdir=$OUT/mirrored $COMMON $FOUR --config.train.strategy=mirrored --config.train.replicas=2 > $OUT/mirrored.log 2>&1
$PY bin/launch --workers=2 -- bin/train --config=configs/mnist_noniid.py --workdir=$OUT/mw $COMMON $FOUR --config.train.strategy=multiworker --config.train.exchange=neighbors > $OUT/mw.log 2>&1
echo done > $OUT/DONE
