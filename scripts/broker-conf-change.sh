#!/bin/bash
# The settings a change to a broker.conf makes, for `chaoslab gate --broker-conf`: the key=value
# lines of FILE that are new or changed against FILE at git revision REV, one a line, sorted by
# key. A production broker.conf as a whole is not a change the lab can apply (it names hosts and
# clusters the lab does not have); what the commit changes is. FILE absent at REV: every line is
# new. A key the change removes is said on stderr: the gate applies settings, it cannot unset one.
#
#   scripts/broker-conf-change.sh REV FILE > change.conf      (FILE relative to the current folder)
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 REV FILE" >&2; exit 2; }
rev=$1
file=$2
[ -f "$file" ] || { echo "broker-conf-change: $file: no such file" >&2; exit 2; }

norm() {   # key=value lines: comments, blank lines and CRs dropped, spaces around the key and '=' trimmed
    sed -E -e 's/\r$//' -e '/^[[:space:]]*(#|$)/d' -e 's/^[[:space:]]+//' -e 's/[[:space:]]+$//' \
        -e 's/^([^=[:space:]]+)[[:space:]]*=[[:space:]]*/\1=/' | LC_ALL=C sort
}
keys() { sed -n 's/=.*//p' | LC_ALL=C sort -u; }

before=$(git show "$rev:./$file" 2>/dev/null | norm) || before=""
after=$(norm <"$file")
LC_ALL=C comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed '/^$/d'
removed=$(LC_ALL=C comm -23 <(printf '%s\n' "$before" | keys) <(printf '%s\n' "$after" | keys) | sed '/^$/d' | paste -sd ' ' -)
if [ -n "$removed" ]; then
    echo "broker-conf-change: removed from $file, not applied by the gate (it cannot unset a setting): $removed" >&2
fi
