#!/usr/bin/env bash
# A TPU pod slice (Cloud TPU VMs): the same command on every worker; `--distributed` calls
# jax.distributed.initialize(), which finds the other workers from the TPU metadata. Workers split the
# cells by process index and write into one results folder that every worker sees (e.g. a Filestore
# NFS mount or a gcsfuse bucket mounted at the same path on all workers).
#
#   bash scripts/tpu_pod.sh TPU_NAME ZONE NAME [OUT]
#
# Needs gradjax installed on every worker: pip install "gradjax[tpu]" (from this repository).
set -euo pipefail
tpu="${1:?usage: bash scripts/tpu_pod.sh TPU_NAME ZONE NAME [OUT]}"
zone="${2:?zone, e.g. us-central2-b}"
name="${3:?experiment name}"
out="${4:-/mnt/shared/gradjax-results}"
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all \
    --command="gradjax run '$name' --full --out '$out' --distributed --quiet"
