#!/usr/bin/env bash
# Make sure a Docker Engine answers on /var/run/docker.sock: start dockerd when
# none runs (CI has no init system), then wait until `docker info` answers.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  exit 0
fi
log=/var/log/kubeless-dockerd.log
echo "starting dockerd (log: $log)"
nohup dockerd --host unix:///var/run/docker.sock >"$log" 2>&1 &
echo $! > /var/run/kubeless-dockerd.pid
for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    echo "dockerd is up"
    exit 0
  fi
  if ! kill -0 "$(cat /var/run/kubeless-dockerd.pid)" 2>/dev/null; then
    echo "error: dockerd exited; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "error: dockerd did not answer within 60 s; last lines of $log:" >&2
tail -n 30 "$log" >&2
exit 1
