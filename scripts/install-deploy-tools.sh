#!/usr/bin/env bash
# Installs the Debian packages the deployment tests need (tests/scaleout, tests/deploy-files,
# tests/container): nginx, podman and its runtime pieces, mmdebstrap. Does nothing when they are
# all on PATH already. Used by .ci/run; run it yourself before `npm test` to run those tests.
set -euo pipefail
need=0
for tool in nginx podman buildah runc mmdebstrap; do command -v "$tool" >/dev/null 2>&1 || need=1; done
[ "$need" = 0 ] && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  podman buildah runc mmdebstrap nginx uidmap fuse-overlayfs slirp4netns
