#!/bin/sh
# Prints the package version from git: the last tag vX.Y.Z, plus the
# number of commits since and the commit when there are any
# (1.2.0+3.g1a2b3c4); 0.0.0+N.gHASH before the first tag. Both dpkg and
# rpm order these correctly.
set -e
if desc=$(git describe --tags --match 'v[0-9]*' --long 2>/dev/null); then
  tag=${desc%-*-g*}; rest=${desc#"$tag"-}
  n=${rest%%-*}; hash=${rest#*-}
  tag=${tag#v}
  if [ "$n" = 0 ]; then echo "$tag"; else echo "$tag+$n.$hash"; fi
else
  echo "0.0.0+$(git rev-list --count HEAD).g$(git rev-parse --short=7 HEAD)"
fi
