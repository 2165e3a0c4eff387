#!/usr/bin/env bash
# Start one segjax experiment on every host of a Cloud TPU pod slice (TPU VMs).
#
#   TPU_NAME=my-v5e-32 ZONE=us-west4-a WORKDIR=gs://my-bucket/runs/dlv3p_camvid \
#     experiments/launch/tpu_pod.sh configs/deeplabv3plus_camvid.py --config.train.steps=30000
#
# Every host runs the same command: `python -m segjax.main --distributed ...`.
# --distributed calls jax.distributed.initialize(), which finds the slice's hosts
# and process index from the TPU metadata; the mesh then spans every chip of the
# slice, and each host loads only its own rows of every global batch
# (data.batch_size / number of hosts; segjax.data.pipeline). WORKDIR must be one
# place all hosts see, where every host writes its shards of each checkpoint: a
# bucket, gs://bucket/path (no NFS needed; the hosts need segjax[gcs]: gcsfs and
# google-cloud-storage; the workdir lock is a lease object), or a Filestore/NFS
# mount. Preemption: the hosts get SIGTERM; the run saves a
# checkpoint at a step all hosts agree on and exits 0; run this script again to
# resume (on the same or another slice size). See docs/scale.md.
#
# Environment: TPU_NAME, ZONE, WORKDIR (required: gs://bucket/path or a shared mount); PROJECT, REPO_DIR (the segjax
# checkout on the hosts, default ~/segjax), PYTHON (default python3).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${WORKDIR:?set WORKDIR}"
if [ $# -lt 1 ]; then
  echo "usage: TPU_NAME=... ZONE=... WORKDIR=gs://bucket/path|/shared/mount/path $0 CONFIG[:ARG] [--config.section.key=value ...]" >&2
  echo "  WORKDIR: a gs:// bucket path (no NFS needed) or a directory every host mounts" >&2
  exit 2
fi
case "$WORKDIR" in
  gs://?*|/*) ;;
  *) echo "WORKDIR=$WORKDIR: expected gs://bucket/path or an absolute path every host mounts" >&2
     exit 2 ;;
esac
CONFIG=$1
shift
REPO_DIR=${REPO_DIR:-'~/segjax'}
PYTHON=${PYTHON:-python3}
COMMAND="cd ${REPO_DIR} && ${PYTHON} -m segjax.main --distributed --config $(printf '%q' "$CONFIG") --workdir $(printf '%q' "$WORKDIR")"
for ARG in "$@"; do
  COMMAND+=" $(printf '%q' "$ARG")"
done
exec gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" ${PROJECT:+--project "$PROJECT"} \
  --worker=all --command "$COMMAND"
