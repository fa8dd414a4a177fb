#!/usr/bin/env bash
# The long reliability profile: >= 1,000 random fault schedules per property (hypothesis
# profile "long"), then a table of schedules run and violations found per invariant.
#
#   bash scripts/reliability_long.sh            # table in out/reliability-long.md
#   bash scripts/reliability_long.sh -k outbox  # extra arguments go to pytest
#
# "holds" rows must show 0 violations; "breaks" rows are the designs built to break an
# invariant and must show at least one.  Exit status is pytest's.
set -uo pipefail
cd "$(dirname "$0")/.."

table=${MQLAB_RELIABILITY_TABLE:-out/reliability-long.md}
tally=${table%.md}.json
mkdir -p "$(dirname "$table")"
rm -f "$tally"

export MQLAB_HYPOTHESIS_PROFILE=long MQLAB_RELIABILITY_TALLY="$tally" MPLBACKEND=Agg PYTHONHASHSEED=random
start=$(date +%s)
# no per-test timeout here: one property runs a thousand simulated flash sales
.venv/bin/pytest tests/reliability -p no:cacheprovider -q --timeout=0 -rxXf "$@"
status=$?
elapsed=$(( $(date +%s) - start ))

.venv/bin/python - "$tally" "$table" "$elapsed" "$status" <<'PY'
import json, sys
from pathlib import Path

tally_path, table_path, elapsed, status = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = json.loads(Path(tally_path).read_text()) if Path(tally_path).exists() else {}
lines = [f"# Reliability, long profile ({elapsed // 60} min {elapsed % 60} s, pytest exit {status})", "",
         "| invariant | expectation | schedules | violations | verdict |", "|---|---|---:|---:|---|"]
bad = 0
for key in sorted(rows, key=lambda k: (rows[k]["expect"] != "holds", rows[k]["invariant"])):
    r = rows[key]
    good = r["violations"] == 0 if r["expect"] == "holds" else r["violations"] > 0
    bad += not good
    verdict = "ok" if good else ("VIOLATED" if r["expect"] == "holds" else "NEVER BROKEN")
    lines.append(f"| {r['invariant']} | {r['expect']} | {r['schedules']} | {r['violations']} | {verdict} |")
lines += ["", "'holds': the design promises the invariant, so violations must be 0. 'breaks': a design",
          "built to give it up; violations > 0 show the check can see the failure (the search stops",
          "at the first one it finds and shrinks it, so the schedule count there is small)."]
table_path.write_text("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(1 if bad else 0)
PY
table_status=$?
[ "$status" -ne 0 ] && exit "$status"
exit "$table_status"
