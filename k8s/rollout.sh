#!/usr/bin/env bash
# Rolls powa-cluster's pods onto the StatefulSet's current spec (k8s/statefulset.yaml: updateStrategy OnDelete),
# one pod at a time, youngest first: the pod that has run longest holds the cluster's singletons (the fleet
# coordinator, the shard coordinator) and is replaced last, so they move once. Each pod is deleted, its
# replacement must be Ready, then the script waits SETTLE seconds (one snapshot interval: its servers are
# collected again) before the next. A pod already on the current revision is left alone.
# During a repository outage no pod is Ready (/ready needs the repository), though each collects into its
# spool: --during-outage waits for the replacement's container to run instead.
#   k8s/rollout.sh [-n NAMESPACE] [--settle SECONDS] [--during-outage]   (after kubectl apply -k k8s/, new image)
set -euo pipefail
ns=() settle=60 outage=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--namespace) ns=(-n "$2"); shift 2 ;;
    --settle) settle="$2"; shift 2 ;;
    --during-outage) outage=1; shift ;;
    *) echo "usage: $0 [-n NAMESPACE] [--settle SECONDS] [--during-outage]" >&2; exit 2 ;;
  esac
done
k() { kubectl "${ns[@]}" "$@"; }
revision=$(k get statefulset powa-cluster -o jsonpath='{.status.updateRevision}')
# Youngest first: the pods sorted by start time, newest at the top.
mapfile -t pods < <(k get pods -l app=powa-cluster --sort-by=.status.startTime \
  -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.labels.controller-revision-hash}{"\n"}{end}' | tac)
for line in "${pods[@]}"; do
  read -r pod rev <<<"$line"
  if [ "$rev" = "$revision" ]; then echo "rollout: $pod is on $revision already"; continue; fi
  echo "rollout: replacing $pod ($rev -> $revision)"
  k delete pod "$pod" --wait=true
  # The StatefulSet makes the pod again under the same name; wait for it to exist, then to be Ready.
  until k get pod "$pod" >/dev/null 2>&1; do sleep 2; done
  if [ "$outage" = 1 ]; then
    until [ "$(k get pod "$pod" -o jsonpath='{.status.containerStatuses[0].started}')" = true ]; do sleep 2; done
  else
    k wait --for=condition=Ready "pod/$pod" --timeout=600s
  fi
  sleep "$settle"
done
echo "rollout: every pod runs $revision"
