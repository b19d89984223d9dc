#!/bin/sh
# Writes the changelog nfpm turns into the .deb's changelog.gz and the
# .rpm's %changelog: one entry for this build, from git.
set -e
version=$1
cat <<YAML
- semver: ${version}
  date: $(git log -1 --format=%cI)
  deb:
    urgency: medium
    distributions:
      - unstable
  packager: edged developers <edged@users.noreply.github.com>
  changes:
    - commit: $(git rev-parse HEAD)
      note: "Built from commit $(git rev-parse --short=12 HEAD)."
YAML
