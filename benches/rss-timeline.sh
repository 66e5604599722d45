#!/usr/bin/env bash
# Samples the resident memory of every running `ingest-backup backup` twice a second
# until stopped, one line per sample: unix time, pid, VmRSS in KiB. Run it beside
# benches/e2e.sh to see whether memory plateaus or climbs during a backup:
#
#   benches/rss-timeline.sh > target/rss.log &
#   benches/e2e.sh --size-mb 2000 --repeat 1 --pipelines read-floor,oplog-floor,ingest-backup
#   kill %1
#   "$INGEST_TEST_PYTHON" benches/plot-rss-timeline.py target/rss.log target/rss.png
set -euo pipefail

while true; do
  for pid in $(pgrep -x ingest-backup || true); do
    # Only backups: the second word of the command line (not a wrapper such as time).
    [[ "$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -d' ' -f2)" == backup ]] || continue
    kib=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [[ -n "$kib" ]] && echo "$(date +%s.%N) $pid $kib"
  done
  sleep 0.5
done
