#!/usr/bin/env bash
# dev.sh - one command from a fresh checkout to a working napari-sam-annotator.
#
#   bash dev.sh test [pytest args...]   set up, then run the test suite under a
#                                       virtual X server (exits with pytest's code)
#   bash dev.sh demo [args...]          set up, then open napari with the annotator
#                                       on a sample stack (needs a screen)
#   bash dev.sh setup                   only set up (system packages + .venv)
#   bash dev.sh wheel                   set up, then only the wheel check (below)
#
# What "set up" does, each step skipped when it is already done:
#   1. On Debian/Ubuntu: installs Xvfb and the X11/OpenGL libraries Qt needs
#      (as root, or through sudo when it is available). Elsewhere it says what
#      to install and carries on.
#   2. Creates a virtual environment .venv/ in the repository.
#   3. Installs PyTorch ($TORCH_SPEC) first, then this package in editable mode
#      with its Qt binding (and, for `test`, the testing extras).
#
# Settings (environment variables):
#   PYTHON      interpreter that creates .venv (default: python3), e.g.
#               PYTHON=python3.12 bash dev.sh test
#   TORCH_SPEC  pip arguments that install PyTorch, before anything else
#               (default: torch==2.13.0, a CPU build). To use your GPU, pass the
#               build that matches your CUDA, e.g.
#               TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
#               PyTorch goes first because a bare `torch` requirement resolved
#               by the project would otherwise pick a build for you.
#   VENV        where the virtual environment lives (default: .venv here)
#   SKIP_APT=1  never touch system packages
#   NAPARI_OLDEST  the oldest napari release the plugin supports (default 0.5.0).
#               `test` also runs the widget tests against it, in a second
#               environment ($VENV-napari-oldest); NAPARI_OLDEST=none skips that.
#
# A full `test` run (no pytest arguments) also builds the wheel, installs it into
# a fresh environment (PyTorch from $TORCH_SPEC, the rest from PyPI) and runs
# the installed plugin from outside the checkout: napari finds it and its
# widgets, the demo model loads, the command line answers --help.
#
# The same script is the CI entry point (.ci/run runs `bash dev.sh test`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
VENV="${VENV:-$ROOT/.venv}"
NAPARI_OLDEST="${NAPARI_OLDEST:-0.5.0}"
# Extra requirements for pip beside the project (the napari pin of the oldest-napari run).
PIP_EXTRA="${PIP_EXTRA:-}"

# Xvfb runs the Qt tests without a monitor; the libraries are what Qt's xcb
# platform plugin and napari's OpenGL canvas load at start-up, and are missing
# from minimal Debian/Ubuntu installs.
APT_PACKAGES=(
    xvfb xauth
    libxkbcommon0 libxkbcommon-x11-0 libx11-xcb1
    libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
    libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0
    libxcb-cursor0 libxcb-xkb1
    libdbus-1-3 libgl1 libegl1 libglib2.0-0 libfontconfig1 libfreetype6
)

# Elapsed seconds in every message, so a slow step shows in CI logs.
say() { printf '[dev.sh %4ds] %s\n' "$SECONDS" "$*"; }
die() { printf '[dev.sh] error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

deb_installed() {
    # Ubuntu 24.04 renamed some libraries with a t64 suffix; either name counts.
    local pkg
    for pkg in "$1" "$1t64"; do
        if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            return 0
        fi
    done
    return 1
}

install_system_packages() {
    local wanted=("${APT_PACKAGES[@]}")
    # Debian's own Python ships venv separately, and a minimal system may have
    # no Python at all.
    if ! command -v "$PYTHON" >/dev/null; then
        [[ "$PYTHON" == python3 ]] && wanted+=(python3 python3-venv)
    elif ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        wanted+=("python$(python_minor "$PYTHON")-venv")
    fi

    if [[ "${SKIP_APT:-0}" == 1 ]]; then
        say "SKIP_APT=1: not checking system packages."
        return
    fi
    if [[ ! -f /etc/debian_version ]] || ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
        say "Not a Debian-like system: skipping apt. For the Qt tests install Xvfb (xvfb-run)"
        say "and your distribution's equivalents of: ${APT_PACKAGES[*]}"
        return
    fi

    local missing=() pkg
    for pkg in "${wanted[@]}"; do
        deb_installed "$pkg" || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        say "System packages already present."
        return
    fi

    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null; then
            sudo=(sudo)
        else
            say "Not root and no sudo: cannot install ${missing[*]}."
            say "Ask an administrator to run: apt-get install ${missing[*]}"
            return
        fi
    fi
    say "Installing system packages: ${missing[*]}"
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -q
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
}

python_minor() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

make_venv() {
    command -v "$PYTHON" >/dev/null || die "no interpreter '$PYTHON' (set PYTHON=...)"
    local want
    want="$(python_minor "$PYTHON")"
    if [[ -x "$VENV/bin/python" ]]; then
        local have
        have="$(python_minor "$VENV/bin/python" 2>/dev/null || echo broken)"
        if [[ "$have" == "$want" ]]; then
            say "Using existing $VENV (Python $have)."
            return
        fi
        say "$VENV has Python $have but $PYTHON is $want: recreating it."
        rm -rf "$VENV"
    fi
    say "Creating $VENV with $PYTHON (Python $want)."
    "$PYTHON" -m venv "$VENV"
}

installed_with() {
    # What a finished install recorded: the torch spec, the extras, pins, pyproject.
    printf '%s\n%s\n%s\n' "$TORCH_SPEC" "$1" "$PIP_EXTRA"
    cat pyproject.toml
}

install_is_current() {
    local py="$VENV/bin/python" stamp="$VENV/.dev-sh-installed" extras
    [[ -f "$stamp" ]] || return 1
    # The demo is also happy with an environment set up for the tests.
    for extras in "$@"; do
        if [[ "$(cat "$stamp")" == "$(installed_with "$extras")" ]]; then
            # Still importable from this checkout (the repository may have moved)?
            "$py" - "$ROOT" <<'PY' >/dev/null 2>&1 && return 0
import importlib.util, pathlib, sys
import napari_sam
assert importlib.util.find_spec("torch") is not None
assert pathlib.Path(napari_sam.__file__).resolve().is_relative_to(pathlib.Path(sys.argv[1]).resolve())
PY
            return 1
        fi
    done
    return 1
}

install_python_packages() {
    local extras="$1"
    local py="$VENV/bin/python" stamp="$VENV/.dev-sh-installed"
    # Re-running pip takes a while even when nothing changes, so skip it when
    # the last install had the same inputs.
    if install_is_current "$@"; then
        say "Python packages already installed (torch: $TORCH_SPEC)."
        return
    fi
    rm -f "$stamp"

    local torch_args
    read -r -a torch_args <<<"$TORCH_SPEC"
    say "Installing PyTorch: $TORCH_SPEC"
    "$py" -m pip install --progress-bar off "${torch_args[@]}"
    local pins=()
    [[ -n "$PIP_EXTRA" ]] && read -r -a pins <<<"$PIP_EXTRA"
    say "Installing napari-sam-annotator[$extras] (editable) ${pins[*]+${pins[*]}}"
    "$py" -m pip install --progress-bar off -e ".[$extras]" ${pins[@]+"${pins[@]}"}

    # PyPI's torchvision does not load beside some torch builds; nothing here
    # needs it, so say so if something pulled it in.
    if "$py" -m pip show -q torchvision >/dev/null 2>&1; then
        say "warning: torchvision is installed in $VENV; this project does not need it"
        say "and some torch builds fail to load beside it. Remove it with:"
        say "  $py -m pip uninstall torchvision"
    fi
    installed_with "$extras" >"$stamp"
}

setup() {
    install_system_packages
    make_venv
    install_python_packages "$@"
}

run_pytest() {
    # Screen spelled out: older xvfb-run versions default to 640x480 with 8-bit
    # colour, on which napari's OpenGL canvas may not start.
    local rc=0
    xvfb-run -a -s "-screen 0 1280x1024x24" "$VENV/bin/python" -m pytest -q "$@" || rc=$?
    if [[ $rc -eq 5 ]]; then
        say "pytest collected no tests: counting that as a failure."
        rc=1
    elif [[ $rc -ne 0 ]]; then
        say "pytest failed (exit code $rc)."
    fi
    return "$rc"
}

# The installed package as a user gets it: a wheel built from this checkout's
# files, in a fresh environment, run from outside the source tree. Catches what
# an editable install hides: a module or data file (manifest, demo model) left
# out of the wheel, an entry point that points nowhere.
check_wheel() {
    local started=$SECONDS work wheel
    work="$(mktemp -d "${TMPDIR:-/tmp}/napari-sam-wheel.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: $work is local
    trap "rm -rf '$work'" RETURN
    say "Wheel check: building the wheel from this checkout's files, in $work"
    mkdir "$work/src" "$work/dist"
    # Only the files of the checkout (tracked or not yet added, never ignored),
    # so that leftovers of earlier builds cannot slip into the wheel.
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        local file
        while IFS= read -r -d '' file; do
            if [[ -e "$file" ]]; then  # a file deleted but not yet committed is listed too
                cp --parents "$file" "$work/src/"
            fi
        done < <(git -C "$ROOT" ls-files -z --cached --others --exclude-standard)
    else
        cp -r pyproject.toml README.md LICENSE src "$work/src/"
    fi
    "$VENV/bin/python" -m pip wheel --progress-bar off --quiet --no-deps -w "$work/dist" "$work/src"
    wheel="$(ls "$work"/dist/napari_sam_annotator-*.whl)"
    say "Wheel check: installing $(basename "$wheel") into a fresh environment"
    "$PYTHON" -m venv "$work/venv"
    local py="$work/venv/bin/python" torch_args
    read -r -a torch_args <<<"$TORCH_SPEC"
    "$py" -m pip install --progress-bar off --quiet "${torch_args[@]}"
    "$py" -m pip install --progress-bar off --quiet "$wheel[pyqt6]"
    say "Wheel check: running the installed package from $work"
    (
        cd "$work"
        unset PYTHONPATH
        # napari's settings of this throw-away environment stay in it (the plugin
        # sets a reader preference when first used), not in the user's config folder.
        export NAPARI_CONFIG="$work/napari-settings.yaml"
        "$py" - "$ROOT" <<'PY'
import pathlib, sys

import napari_sam

source = pathlib.Path(sys.argv[1]).resolve()
here = pathlib.Path(napari_sam.__file__).resolve()
assert "site-packages" in here.parts and not here.is_relative_to(source), f"napari_sam comes from {here}"

import npe2

pm = npe2.PluginManager.instance()
pm.discover()
manifest = pm.get_manifest("napari-sam-annotator")
widgets = [w.display_name for w in manifest.contributions.widgets]
assert widgets, "the installed manifest lists no widgets"

for widget in manifest.contributions.widgets:  # what napari's Plugins menu resolves
    cls = widget.get_callable()
    assert isinstance(cls, type), f"widget {widget.display_name!r} is {cls!r}, not a class"

from napari_sam.model import load_model

model = load_model("demo")
print(f"installed napari-sam-annotator {napari_sam.__version__}: widgets {widgets}, "
      f"demo model with {sum(p.numel() for p in model.parameters())} weights")
PY
        "$work/venv/bin/napari-sam-annotator" --help >/dev/null
        "$work/venv/bin/napari-sam-annotator" train --help >/dev/null
    )
    say "Wheel check passed in $((SECONDS - started)) s."
}

run_tests() {
    setup "pyqt6,testing"
    command -v xvfb-run >/dev/null || die "xvfb-run not found: install Xvfb (Debian/Ubuntu package: xvfb)"
    say "Running: xvfb-run -a python -m pytest -q $*"
    local rc=0
    run_pytest "$@" || rc=$?
    # The widgets use napari's API as of its oldest supported release too: run
    # their tests against it, in an environment of its own (only for a full run).
    if [[ $rc -eq 0 && $# -eq 0 && "$NAPARI_OLDEST" != none ]]; then
        VENV="$VENV-napari-oldest" PIP_EXTRA="napari==$NAPARI_OLDEST"
        say "Widget tests against the oldest supported napari ($NAPARI_OLDEST), in $VENV"
        make_venv
        install_python_packages "pyqt6,testing"
        "$VENV/bin/python" -c 'import napari; print("napari", napari.__version__)'
        run_pytest tests/widgets || rc=$?
    fi
    # A full run also checks the package as a user installs it.
    if [[ $rc -eq 0 && $# -eq 0 ]]; then
        check_wheel || rc=$?
    fi
    exit "$rc"
}

run_demo() {
    setup "pyqt6" "pyqt6,testing"
    if [[ "$(uname -s)" == Linux && -z "${DISPLAY:-}" && -z "${WAYLAND_DISPLAY:-}" ]]; then
        die "no screen found (DISPLAY is not set): run the demo on a desktop session"
    fi
    say "Opening napari with the annotator demo."
    exec "$VENV/bin/python" -m napari_sam "$@"
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    test) run_tests "$@" ;;
    demo) run_demo "$@" ;;
    setup) setup "pyqt6,testing"; say "Ready: activate with  . $VENV/bin/activate" ;;
    wheel) setup "pyqt6,testing"; check_wheel ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
