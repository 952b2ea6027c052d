#!/bin/bash
# The chaoslab gate for a CI job: builds `chaoslab gate` from INPUT_* variables (action.yml sets
# them from its inputs; a GitLab job sets them itself), runs it, writes the outputs to
# $GITHUB_OUTPUT when that is set, and exits with chaoslab's own exit code, unchanged:
# 0 safe, 1 unsafe, 2 the lab could not tell (INCONCLUSIVE, LAB ERROR, REFUSED), 130 interrupted.
#
#   INPUT_FROM, INPUT_TO            Pulsar releases (default: the experiment's)
#   INPUT_BROKER_CONF               a broker.conf-style file of key=value settings
#   INPUT_EXPERIMENT                the experiment file the gate takes its method from
#   INPUT_REPEAT                    runs on fresh labs (default: chaoslab's, see `chaoslab gate --help`)
#   INPUT_RUN_FOLDER                a new or empty folder (default chaoslab-runs/gate-<UTC time>)
#   INPUT_JUNIT                     JUnit XML path (default <run folder>/junit.xml)
#   CHAOSLAB                        the chaoslab command (default: chaoslab on PATH)
#
# Inputs reach the argv as variables, never spliced into shell text: a value is one argument.
# Outputs: verdict (SAFE, UNSAFE, INCONCLUSIVE, LAB ERROR, REFUSED, INTERRUPTED), exit-code,
# junit, run-folder. chaoslab --json's object is printed as it is; human output is on stderr.
set -uo pipefail

chaoslab=${CHAOSLAB:-chaoslab}
run_folder=${INPUT_RUN_FOLDER:-chaoslab-runs/gate-$(date -u +%Y%m%dT%H%M%SZ)}
junit=${INPUT_JUNIT:-$run_folder/junit.xml}

argv=(gate --json --out "$run_folder" --junit "$junit")
[ -n "${INPUT_FROM:-}" ] && argv+=(--from "$INPUT_FROM")
[ -n "${INPUT_TO:-}" ] && argv+=(--to "$INPUT_TO")
[ -n "${INPUT_BROKER_CONF:-}" ] && argv+=(--broker-conf "$INPUT_BROKER_CONF")
[ -n "${INPUT_EXPERIMENT:-}" ] && argv+=(--experiment "$INPUT_EXPERIMENT")
[ -n "${INPUT_REPEAT:-}" ] && argv+=(--repeat "$INPUT_REPEAT")

json=$(mktemp)
trap 'rm -f "$json"' EXIT
echo "ci-gate: $chaoslab ${argv[*]}" >&2
code=0
"$chaoslab" "${argv[@]}" >"$json" || code=$?
cat "$json"

# the verdict from the JSON object; from the exit code when there is none (a usage error)
verdict=$("${PYTHON:-python3}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["verdict"])' "$json" 2>/dev/null) \
    || verdict=""
if [ -z "$verdict" ]; then
    case $code in
        0) verdict=SAFE ;;
        1) verdict=UNSAFE ;;
        130) verdict=INTERRUPTED ;;
        *) verdict="LAB ERROR" ;;
    esac
fi

put() {   # one output; a value with a line break in the delimited form
    [ -n "${GITHUB_OUTPUT:-}" ] || return 0
    case $2 in
        *$'\n'*) printf '%s<<chaoslab_EOF_%s\n%s\nchaoslab_EOF_%s\n' "$1" "$$" "$2" "$$" >>"$GITHUB_OUTPUT" ;;
        *) printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT" ;;
    esac
}
put verdict "$verdict"
put exit-code "$code"
put junit "$junit"
put run-folder "$run_folder"
echo "ci-gate: $verdict (exit $code); junit $junit; run folder $run_folder" >&2
exit "$code"
