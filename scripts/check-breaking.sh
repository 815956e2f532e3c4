#!/usr/bin/env bash
# Fails when proto/ (as in the working tree) breaks the contract that clients were generated from,
# by buf's rules in buf.yaml. The contract compared against is, in this order:
#   1. the newest `v*` tag reachable from HEAD (the last release);
#   2. off main: the merge base with main (or origin/main);
#   3. on main with no tag: the parent of the newest commit that changed proto/, so that every
#      change to the contract is checked by the build of the commit that makes it.
# Usage: check-breaking.sh [repository] (default: the one this script is in).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
buf="$root/node_modules/.bin/buf"
cd "${1:-$root}"

merge_base() {
  local branch
  for branch in main origin/main; do
    if git rev-parse --verify --quiet "$branch^{commit}" >/dev/null; then
      git merge-base HEAD "$branch"
      return
    fi
  done
}

if tag=$(git describe --tags --abbrev=0 --match 'v*' HEAD 2>/dev/null); then
  against=$tag
  why="release tag $tag"
elif base=$(merge_base) && [ -n "$base" ] && [ "$base" != "$(git rev-parse HEAD)" ]; then
  against=$base
  why="merge base with main, $(git rev-parse --short "$base")"
else
  last=$(git log -1 --format=%H -- proto)
  if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
    echo "NOT CHECKED: a shallow clone has no earlier contract (git fetch --unshallow, or tag a release)"
    exit 0
  fi
  if [ -z "$last" ] || ! git rev-parse --verify --quiet "$last^" >/dev/null; then
    echo "no earlier contract to compare proto/ with (no v* tag, and proto/ is new)"
    exit 0
  fi
  against="$last^"
  why="no release tag yet: the contract before the last change to proto/, $(git rev-parse --short "$against") (parent of $(git log -1 --format='%h %s' "$last" | cut -c1-60))"
fi

if ! git cat-file -e "$against:proto" 2>/dev/null; then
  echo "no proto/ at $against: nothing to compare with"
  exit 0
fi
# That commit's proto/, read with today's buf.yaml (the module layout, and the rules to apply).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive "$against" proto | tar -x -C "$tmp"
cp buf.yaml "$tmp/"
echo "buf breaking: proto/ against $why"
"$buf" breaking --against "$tmp"
echo "no breaking change"
