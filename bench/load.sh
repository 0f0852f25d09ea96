#!/usr/bin/env bash
# The load benchmark at SPEC's size (10 orgs x 100,000 students = 1M): the same
# run as `scripts/bench.sh --large`, which measures every scenario side by side
# and writes bench/results/ (table and plots).
exec "$(dirname "${BASH_SOURCE[0]}")/../scripts/bench.sh" --large "$@"
