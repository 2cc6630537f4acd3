#!/usr/bin/env bash
# `make wheel-test`: crmbonus the way a user installs it. Builds the wheel from the files git knows,
# checks that it carries every SQL migration and the default plan (package data under stream/),
# installs it NOT editable into a fresh venv (dependencies from PyPI), and from an empty directory
# runs `crmbonus replay` of the worked example and `crmbonus leaderboard` on the embedded broker and
# Postgres (./.crmbonus of that directory). Nothing of the repository is importable there.
#
#   tests/packaging/check_wheel.sh            PYTHON=python3.11 to build/install with another interpreter
#   KEEP=1 tests/packaging/check_wheel.sh     keep the temporary directory (printed) for a look
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/crmbonus-wheel.XXXXXX")
RUN_DIR=$WORK/run  # the user's empty directory
START=$SECONDS

say() { printf '\n== wheel-test: %s\n' "$*"; }
fail() { printf 'wheel-test FAILED: %s\n' "$*" >&2; exit 1; }
took() { printf '   (%ss)\n' "$((SECONDS - $1))"; }

cleanup() {
    # An embedded Postgres left running by a failed command (pgserver stops it on a clean exit).
    local pidfile pid
    for pidfile in "$RUN_DIR"/.crmbonus/pg/postmaster.pid; do
        [[ -f $pidfile ]] || continue
        pid=$(head -n 1 "$pidfile")
        [[ $pid =~ ^[0-9]+$ ]] && kill "$pid" 2>/dev/null || true
    done
    if [[ -n ${KEEP:-} ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Users' settings must not leak in: the defaults (embedded services, the shipped plan) are under test.
unset PYTHONPATH CRMBONUS_BROKER CRMBONUS_DATABASE_URL CRMBONUS_PLAN CRMBONUS_DATA_DIR CRMBONUS_TOPIC_PREFIX
export PIP_DISABLE_PIP_VERSION_CHECK=1 COLUMNS=200

say "1/5 source: the files git knows (tracked and new, not ignored), copied to $WORK/src"
mkdir -p "$WORK/src"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [[ -e $f || -L $f ]] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -xf - -C "$WORK/src"

say "2/5 build: pip wheel --no-deps (setuptools, as pyproject.toml's [build-system] asks)"
t=$SECONDS
"$PYTHON" -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src"
WHEELS=("$WORK"/dist/crmbonus-*.whl)
[[ ${#WHEELS[@]} == 1 && -f ${WHEELS[0]} ]] || fail "expected one crmbonus wheel in $WORK/dist"
WHEEL=${WHEELS[0]}
echo "   built $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB)"; took "$t"

say "3/5 contents: every migration and the default plan inside the wheel, byte for byte"
"$PYTHON" - "$WHEEL" "$ROOT" <<'EOF'
import pathlib, sys, zipfile

wheel, root = zipfile.ZipFile(sys.argv[1]), pathlib.Path(sys.argv[2])
names = set(wheel.namelist())
# What users and docker-compose find under deploy/ (symlinks into the package) must be in the wheel.
wanted = {f"stream/migrations/{p.name}": p for p in sorted((root / "deploy/migrations").glob("*.sql"))}
wanted["stream/plans/default.toml"] = root / "deploy/plans/default.toml"
if len(wanted) < 2:
    sys.exit("no migrations found under deploy/migrations")
problems = []
for name, source in wanted.items():
    if name not in names:
        problems.append(f"missing {name}")
    elif wheel.read(name) != source.read_bytes():
        problems.append(f"{name} differs from {source.relative_to(root)}")
    else:
        print(f"   ok  {name}  (= {source.relative_to(root)})")
stray = sorted(n for n in names if n.startswith("deploy/"))
if stray:
    problems.append(f"deploy/ files in the wheel: {stray}")
if problems:
    sys.exit("\n".join(problems))
print(f"   {len(names)} files in the wheel")
EOF

say "4/5 install: a fresh venv, pip install of the wheel (not editable), its dependencies from PyPI"
t=$SECONDS
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "$WHEEL"
mkdir "$RUN_DIR"
cd "$RUN_DIR"  # empty: nothing of the repository on sys.path
"$WORK/venv/bin/python" - "$ROOT" <<'EOF'
import importlib.metadata, json, pathlib, sys, sysconfig

root = pathlib.Path(sys.argv[1]).resolve()
site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
from stream import db, plan

for label, path in (("stream", pathlib.Path(plan.__file__)), ("migrations", db.MIGRATIONS_DIR),
                    ("default plan", plan.DEFAULT_PLAN_PATH)):
    path = path.resolve()
    if not path.is_relative_to(site) or path.is_relative_to(root):
        sys.exit(f"{label} comes from {path}, not from the venv's site-packages {site}")
    print(f"   ok  {label}: {path}")
print(f"   ok  {len(db.migration_files())} migrations; plan version {plan.load_plan().version!r}")
direct = importlib.metadata.distribution("crmbonus").read_text("direct_url.json")
if direct and json.loads(direct).get("dir_info", {}).get("editable"):
    sys.exit("crmbonus is installed editable")
print("   ok  not an editable install")
EOF
took "$t"

say "5/5 run: from the empty directory $RUN_DIR"
MONTH=$ROOT/tests/fixtures/examples/month.jsonl
t=$SECONDS
echo "   \$ crmbonus replay $MONTH"
"$WORK/venv/bin/crmbonus" replay "$MONTH" || fail "crmbonus replay exited $?"
took "$t"
t=$SECONDS
echo "   \$ crmbonus leaderboard --period 2026-11"
"$WORK/venv/bin/crmbonus" leaderboard --period 2026-11 | tee "$WORK/leaderboard.txt" \
    || fail "crmbonus leaderboard exited $?"
took "$t"
# fr-1: 4 cross-sells worth 355.00, bonus 10.65 (tests/fixtures/examples/expected_running_after_month.csv).
grep -Ew 'fr-1' "$WORK/leaderboard.txt" | grep -E 'field_rep.*\b4\b.*355\.00.*10\.65' >/dev/null \
    || fail "no row for fr-1 (field_rep, 4 cross-sells, 355.00, bonus 10.65) in the leaderboard"
echo "   ok  fr-1's row: $(grep -Ew 'fr-1' "$WORK/leaderboard.txt" | tr -s ' ')"
[[ -d $RUN_DIR/.crmbonus/pg ]] || fail "the embedded Postgres was not under $RUN_DIR/.crmbonus"

say "passed in $((SECONDS - START))s: the wheel carries its migrations and plan, and runs the worked example"
