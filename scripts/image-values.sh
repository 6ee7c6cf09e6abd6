#!/usr/bin/env bash
# Write the values that point our five charts at one built image, by digest:
#   deploy/images/platform.yaml   for a chart of ours (-f, staged install: fastapi, streamlit,
#                                 datasource, mlflow, airflow)
#   deploy/images/umbrella.yaml   for charts/mlops (the same, under each chart's name)
# .github/workflows/images.yml runs it after a push to GHCR and commits both files, so an install
# from the repository (the guide's, or Argo CD's deploy/argocd) runs exactly the image CI built.
# Usage: scripts/image-values.sh IMAGE TAG [DIGEST]   e.g. ghcr.io/you/mlops-platform 0.1.0 sha256:...
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 IMAGE TAG [DIGEST]  (e.g. ghcr.io/you/mlops-platform 0.1.0 sha256:abc...)" >&2
  exit 2
fi
image=$1 tag=$2 digest=${3:-}
if [ -n "$digest" ] && [[ ! "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
  echo "DIGEST must look like sha256:<64 hex digits>, got: $digest" >&2
  exit 2
fi
# A tag with its digest (0.1.0@sha256:...) pins the content; Kubernetes pulls by the digest.
reference=$tag${digest:+@$digest}
folder="$(cd "$(dirname "$0")/.." && pwd)/deploy/images"
mkdir -p "$folder"
header="# Written by scripts/image-values.sh ($image:$reference); do not edit by hand."

{
  echo "$header"
  echo "image:"
  echo "  repository: $image"
  echo "  tag: \"$reference\""
} >"$folder/platform.yaml"

{
  echo "$header"
  for chart in mlflow airflow fastapi streamlit datasource; do
    echo "$chart:"
    echo "  image:"
    echo "    repository: $image"
    echo "    tag: \"$reference\""
  done
} >"$folder/umbrella.yaml"

echo "deploy/images/platform.yaml and umbrella.yaml -> $image:$reference"
