#!/usr/bin/env bash
# A team MLflow tracking server: sqlite backend store and a served artifact store under DIR, bound to 127.0.0.1.
#
#   infra/mlflow_server.sh [DIR]            # default DIR: ~/selm-mlflow; PORT (5000), HOST (127.0.0.1), PYTHON
#   export MLFLOW_TRACKING_URI=http://127.0.0.1:5000   # then every selm run logs there
#
# Bind to another HOST only behind an authenticating proxy: the MLflow server has no authentication of its own.
set -euo pipefail
DIR="${1:-$HOME/selm-mlflow}"
PORT="${PORT:-5000}"
HOST="${HOST:-127.0.0.1}"
mkdir -p "$DIR/artifacts"
export MLFLOW_DISABLE_TELEMETRY=true
exec "${PYTHON:-python}" -m mlflow server --host "$HOST" --port "$PORT" \
  --backend-store-uri "sqlite:///$DIR/mlflow.db" --artifacts-destination "$DIR/artifacts" --serve-artifacts
