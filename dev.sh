#!/usr/bin/env bash
#
# dev.sh - the quick start and every developer/CI job of tapegrad.
#
#   ./dev.sh main [ARGS]     install what is missing, build, run tapegrad train [ARGS]
#   ./dev.sh test            install what is missing, build, run every test
#   ./dev.sh asan            the tests under ASan + UBSan (build dir build-asan)
#   ./dev.sh valgrind        the tests under valgrind (meson test --setup valgrind)
#   ./dev.sh fuzz            each libFuzzer target for TG_FUZZ_SECONDS (30) seconds
#   ./dev.sh soak [ARGS...]  the soak test (tests/soak/soak.c: 20,000 training steps
#                            per model, resident memory checked); not part of `test`
#   ./dev.sh install-check   meson install into a temporary prefix, then build and
#                            run tests/install/contract_app.c against it through
#                            pkg-config, linked shared and static
#   ./dev.sh mpi             build with -Dmpi=enabled (build-mpi), run the MPI
#                            tests (suite mpi: 2 and 3 ranks under mpirun), then
#                            the 2-rank test with each rank under valgrind
#   ./dev.sh setup           only install the system packages
#   ./dev.sh build           only configure and build (build/)
#
# Meant for a fresh Debian 12 machine as root: the setup step installs the
# missing packages with apt-get (through sudo when not root). When every
# package is already installed it does not touch apt at all, so repeated
# runs are fast and work offline. Set TG_SKIP_APT=1 to skip the setup step
# on other systems (meson then reports whatever is missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

PACKAGES=(build-essential meson ninja-build pkg-config libopenblas-dev libcjson-dev zlib1g-dev check valgrind
    dataset-fashion-mnist bible-kjv openmpi-bin libopenmpi-dev)
# only the fuzz job needs clang and its libFuzzer runtime
FUZZ_PACKAGES=(clang libclang-rt-14-dev)

log() {
    printf '==> %s\n' "$*" >&2
}

die() {
    printf 'dev.sh: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------
# Setup: the system packages
# ---------------------------------------------------------------------------

missing_packages() {
    local p status
    for p in "${PACKAGES[@]}" "$@"; do
        status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
        if [[ "$status" != "install ok installed" ]]; then
            printf '%s\n' "$p"
        fi
    done
}

# setup [EXTRA PACKAGES...]
setup() {
    if [[ "${TG_SKIP_APT:-0}" == 1 ]]; then
        return 0
    fi
    if ! command -v dpkg-query >/dev/null 2>&1; then
        log "no dpkg-query: not a Debian system, skipping package installation"
        return 0
    fi
    local missing
    mapfile -t missing < <(missing_packages "$@")
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    log "installing missing packages: ${missing[*]}"
    local -a sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            die "not root and no sudo: install these packages first: ${missing[*]}"
        fi
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# ---------------------------------------------------------------------------
# Configure and build
# ---------------------------------------------------------------------------

# configure DIR [MESON OPTIONS...]: set up DIR, or reconfigure it when it
# already holds a build tree (with the same options).
configure() {
    local dir="$1"
    shift
    if [[ -f "$dir/meson-private/coredata.dat" ]]; then
        # Quiet unless it fails: the full configure log is long.
        local out
        if ! out="$(meson setup --reconfigure "$dir" "$@" 2>&1)"; then
            printf '%s\n' "$out" >&2
            die "meson setup --reconfigure $dir failed"
        fi
    else
        meson setup "$dir" "$@"
    fi
}

build() {
    local dir="$1"
    shift
    configure "$dir" "$@"
    meson compile -C "$dir"
}

# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

# check_summary DIR [SETUP]: from DIR's last meson test log (testlog.txt, or
# testlog-SETUP.txt for a test setup), print each Check suite's name and its
# "NN%: Checks: X, Failures: Y, Errors: Z" line, flagging a suite that
# printed none (it died before its summary) or whose exit status was not 0;
# tests that are not Check runners (examples, the contract app) show their
# result.
check_summary() {
    local logfile="$1/meson-logs/testlog${2:+-$2}.txt"
    [[ -f "$logfile" ]] || return 0
    printf '\nCheck summary (%s):\n' "$logfile"
    awk '
        function flush() {
            if (name == "") return
            bad = (result !~ /^exit status 0$/) ? "   <- " result : ""
            if (summary != "") printf "  %-14s %s%s\n", name, summary, bad
            else if (check) printf "  %-14s NO CHECK SUMMARY (%s)\n", name, result
            else printf "  %-14s (not a Check runner: %s)\n", name, result
            name = ""
        }
        /^test: / { flush(); name = $NF; summary = ""; result = ""; check = 0; next }
        name != "" && /^result: / { sub(/^result: +/, ""); result = $0; next }
        name != "" && /^command: / { check = ($0 ~ /test_main/); next }
        name != "" && summary == "" && /^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+/ {
            summary = $0
        }
        END { flush() }
    ' "$logfile"
}

# run_tests DIR [SETUP]: meson test (with that test setup), then the
# summary; the status of meson test.
run_tests() {
    local dir="$1" setup="${2:-}"
    # the soak test is a separate job (./dev.sh soak), never part of a run
    local -a args=(-C "$dir" --print-errorlogs --no-suite soak)
    if [[ -n "$setup" ]]; then
        args+=(--setup "$setup")
    fi
    local rc=0
    meson test "${args[@]}" || rc=$?
    check_summary "$dir" "$setup"
    if ((rc != 0)); then
        log "tests FAILED in $dir (meson test exit status $rc)"
    else
        log "tests passed in $dir"
    fi
    return "$rc"
}

# The main job: train the default network (an MLP, Adam, 10 epochs) on
# Fashion-MNIST; extra arguments go to tapegrad train (./dev.sh main --model cnn).
cmd_main() {
    setup
    build build
    local -a cmd=(build/tools/tapegrad train --svg build/training_curves.svg "$@")
    log "running ${cmd[*]}"
    "${cmd[@]}"
}

cmd_test() {
    setup
    build build
    run_tests build
}

cmd_asan() {
    setup
    build build-asan -Db_sanitize=address,undefined -Db_lundef=false
    export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
    run_tests build-asan
}

cmd_soak() {
    setup
    build build
    log "running build/tests/soak $*"
    nice build/tests/soak "$@"
}

cmd_valgrind() {
    setup
    build build
    run_tests build valgrind
}

cmd_install_check() {
    setup
    local tmp
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/tapegrad-install.XXXXXX")"
    # shellcheck disable=SC2064  # expand $tmp now, while it is set
    trap "rm -rf '$tmp'" EXIT

    local prefix="$tmp/prefix"
    log "installing into $prefix"
    meson setup "$tmp/build" --prefix "$prefix" --libdir lib >/dev/null
    meson compile -C "$tmp/build" >/dev/null
    meson install -C "$tmp/build" --quiet

    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    pkg-config --exists tapegrad || die "pkg-config does not find the installed tapegrad.pc"
    [[ "$(pkg-config --variable=prefix tapegrad)" == "$prefix" ]] ||
        die "tapegrad.pc has prefix $(pkg-config --variable=prefix tapegrad), not $prefix"
    local libdir cflags libs slibs
    libdir="$(pkg-config --variable=libdir tapegrad)"
    cflags="$(pkg-config --cflags tapegrad)"
    libs="$(pkg-config --libs tapegrad)"
    slibs="$(pkg-config --static --libs tapegrad)"
    log "pkg-config --cflags --libs tapegrad: $cflags $libs"

    local cc="${CC:-cc}"
    local -a strict=(-std=c11 -Wall -Wextra -Wpedantic -Werror -O2)
    local app="tests/install/contract_app.c"

    # Shared: exactly what the README tells users to type.
    log "building $app against the shared library"
    # shellcheck disable=SC2086  # pkg-config output is a list of words
    "$cc" "${strict[@]}" "$app" $cflags -o "$tmp/app-shared" $libs
    local ldpath="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # ldd's output is taken whole first: grep -q stopping early would make
    # ldd die of SIGPIPE, which pipefail turns into a failure.
    local deps
    deps="$(LD_LIBRARY_PATH="$ldpath" ldd "$tmp/app-shared")"
    grep -q "libtapegrad\.so.* => $libdir/" <<<"$deps" ||
        die "app-shared does not load libtapegrad.so from $libdir"
    LD_LIBRARY_PATH="$ldpath" "$tmp/app-shared"
    # MPI is libtapegrad-dist's alone: the core library must not load it.
    if grep -q 'libmpi' <<<"$deps"; then
        die "app-shared loads libmpi: MPI belongs in libtapegrad-dist only"
    fi

    # dist.h through its own pkg-config name (tapegrad-dist).
    pkg-config --exists tapegrad-dist || die "pkg-config does not find tapegrad-dist.pc"
    log "building a dist.h program with pkg-config --cflags --libs tapegrad-dist"
    printf '%s\n' '#include <tapegrad.h>' \
        'int main(void) { tg_dist_opts o = tg_dist_defaults(); (void)o;' \
        '    return tg_dist_world(NULL) == 1 && tg_dist_rank(NULL) == 0 ? 0 : 1; }' \
        >"$tmp/dist_app.c"
    # shellcheck disable=SC2046  # pkg-config output is a list of words
    "$cc" "${strict[@]}" "$tmp/dist_app.c" $(pkg-config --cflags tapegrad-dist) \
        -o "$tmp/dist-app" $(pkg-config --libs tapegrad-dist)
    LD_LIBRARY_PATH="$ldpath" "$tmp/dist-app" || die "the dist.h program failed"

    # Static: libtapegrad.a plus pkg-config --static's private libraries.
    log "building $app against libtapegrad.a"
    [[ -f "$libdir/libtapegrad.a" ]] || die "no $libdir/libtapegrad.a installed"
    local -a static_libs=()
    local w
    for w in $slibs; do
        if [[ "$w" == -ltapegrad ]]; then
            static_libs+=("$libdir/libtapegrad.a")
        else
            static_libs+=("$w")
        fi
    done
    # shellcheck disable=SC2086
    "$cc" "${strict[@]}" "$app" $cflags -o "$tmp/app-static" "${static_libs[@]}"
    if command -v readelf >/dev/null 2>&1 &&
        readelf -d "$tmp/app-static" | grep -q 'libtapegrad\.so'; then
        die "the static build still needs libtapegrad.so"
    fi
    "$tmp/app-static"
    log "install-check passed"
}

# Each libFuzzer target runs for TG_FUZZ_SECONDS (default 30) from its seed
# corpus (tests/fuzz/corpus/<name>, read-only: new inputs go to a temporary
# directory); any crash, leak or sanitizer report fails the job and leaves
# the input in build-fuzz/crash-<name>-*.
cmd_fuzz() {
    setup "${FUZZ_PACKAGES[@]}"
    CC=clang build build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
    local secs="${TG_FUZZ_SECONDS:-30}" t name work
    export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
    for t in build-fuzz/tests/fuzz/fuzz_*; do
        [[ -f "$t" && -x "$t" ]] || continue
        name="${t##*/fuzz_}"
        work="$(mktemp -d "${TMPDIR:-/tmp}/tapegrad-fuzz-$name.XXXXXX")"
        log "fuzzing $name for ${secs}s"
        if ! "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="build-fuzz/crash-$name-" "$work" "tests/fuzz/corpus/$name"; then
            rm -rf "$work"
            die "fuzz target $name failed; the input is in build-fuzz/crash-$name-*"
        fi
        rm -rf "$work"
    done
    log "fuzz passed"
}

# Data-parallel training: the MPI tests (tests/test_dist_mpi.c, suite mpi,
# which meson runs under mpirun on loopback only), then the 2-rank test
# again with every rank under valgrind (meson's valgrind setup would wrap
# mpirun, not the ranks).
cmd_mpi() {
    setup
    build build-mpi -Dmpi=enabled
    local rc=0
    meson test -C build-mpi --print-errorlogs --suite mpi || rc=$?
    check_summary build-mpi
    ((rc == 0)) || die "MPI tests FAILED (meson test exit status $rc)"
    log "the 2-rank MPI test with each rank under valgrind"
    local vlog=build-mpi/meson-logs/valgrind-mpi.txt
    rc=0
    OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none \
        OMPI_MCA_mca_base_component_disable_dlclose=1 OMPI_MCA_mpi_yield_when_idle=1 TG_NUM_THREADS=1 \
        mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 \
        valgrind -q --num-callers=50 --error-exitcode=1 --leak-check=full \
        --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
        --suppressions=/usr/share/openmpi/openmpi-valgrind.supp \
        --suppressions=tests/valgrind.supp --suppressions=tests/valgrind_mpi.supp \
        build-mpi/tests/test_dist_mpi >"$vlog" 2>&1 || rc=$?
    # hwloc's note that it cannot probe the CPU under valgrind is noise
    grep -v -e '^hwloc x86 backend' -e '^May be reenabled' -e '^and reloading them' "$vlog" || true
    ((rc == 0)) || die "the MPI test under valgrind FAILED (exit status $rc, log $vlog)"
    log "MPI tests passed"
}

usage() {
    sed -n '3,19p' "$0" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
    main)
        shift
        cmd_main "$@"
        ;;
    test) cmd_test ;;
    asan) cmd_asan ;;
    valgrind) cmd_valgrind ;;
    install-check) cmd_install_check ;;
    mpi) cmd_mpi ;;
    fuzz) cmd_fuzz ;;
    soak)
        shift
        cmd_soak "$@"
        ;;
    setup) setup ;;
    build)
        setup
        build build
        ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
