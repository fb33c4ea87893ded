#!/usr/bin/env bash
#
# train_mpi.sh MPIRUN TAPEGRAD - data-parallel `tapegrad train` under
# mpirun (suite mpi, builds with MPI only; the mpirun options and the
# loopback-only environment come from tools/meson.build), on the real
# Fashion-MNIST files, kept to seconds with --limit:
#
#   - 2 ranks with the global --batch-size 64 train like one process with
#     --batch-size 64: the same test accuracy, losses within 1e-5
#     relative (read from the checkpoints' exact history; Adam, and SGD,
#     which a wrongly weighted sum would change), and only one rank
#     prints (one test_accuracy= line);
#   - 2 ranks cut by --stop-after and resumed with 2 ranks end with a
#     checkpoint byte-identical to the uninterrupted 2-rank run's; a
#     2-rank checkpoint resumes in one process and a 1-process one in 2
#     ranks, ending close to the uninterrupted runs;
#   - a --batch-size the ranks cannot split is a usage error (exit 2); a
#     --save rank 0 cannot write stops both ranks (exit 1).
set -uo pipefail

MPIRUN="$1"
TOOL="$2"
MPI=("$MPIRUN" --allow-run-as-root --oversubscribe --bind-to none)
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tapegrad-mpi.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
FAILS=0
export TG_NUM_THREADS=1

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    FAILS=$((FAILS + 1))
}

if [[ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
    echo "no Fashion-MNIST (dataset-fashion-mnist): skipped"
    exit 77
fi

# history NAME: the checkpoint's per-epoch numbers, one a line, from the
# metadata in its JSON header (inspect shortens long values).
history() {
    head -c 65536 "$TMP/$1.st" | LC_ALL=C grep -a -o '"history":"[^"]*"' |
        sed -e 's/^"history":"//' -e 's/"$//' | tr ',;' '\n\n'
}

# close NAME A B TOL: the histories of checkpoints A and B agree within TOL
# relative, entry by entry.
close() {
    local name="$1" a b
    a="$(history "$2")"
    b="$(history "$3")"
    [[ -n "$a" ]] || { fail "$name: no history in $2.st"; return; }
    paste <(echo "$a") <(echo "$b") | awk -v tol="$4" '
        { d = $1 - $2; if (d < 0) d = -d; m = $1 < 0 ? -$1 : $1
          if (NF != 2 || d > tol * m) { print "entry " NR ": " $1 " vs " $2; bad = 1 } }
        END { exit bad }' >"$TMP/close" || fail "$name: histories differ: $(head -c 400 "$TMP/close")"
}

RUN=(train --model mlp --limit 640 --test-limit 500 --batch-size 64 --svg '')

# --- 2 ranks train like one process with the same global batch -------------------
"$TOOL" "${RUN[@]}" --epochs 1 --save "$TMP/one.st" >"$TMP/one.out" 2>&1 ||
    fail "one process: exit status $? ($(tail -n 3 "$TMP/one.out"))"
"${MPI[@]}" -np 2 "$TOOL" "${RUN[@]}" --epochs 1 --save "$TMP/two.st" >"$TMP/two.out" 2>&1 ||
    fail "2 ranks: exit status $? ($(tail -n 3 "$TMP/two.out"))"
[[ "$(grep -c 'test_accuracy=' "$TMP/two.out")" == 1 ]] ||
    fail "2 ranks: $(grep -c 'test_accuracy=' "$TMP/two.out") test_accuracy= lines, expected 1"
grep -q '^data-parallel: 2 ranks, 32 samples per rank and step$' "$TMP/two.out" ||
    fail "2 ranks: no data-parallel line"
want="$(tail -n 1 "$TMP/one.out")"
[[ "$want" =~ ^test_accuracy=0\.[0-9]{4}$ ]] || fail "one process: last line is '$want'"
[[ "$(tail -n 1 "$TMP/two.out")" == "$want" ]] ||
    fail "2 ranks: last line '$(tail -n 1 "$TMP/two.out")', one process '$want'"
close "2 ranks vs one process" one two 1e-5
# SGD too: Adam hardly sees a wrongly scaled gradient sum, SGD does
SGD=(--optimizer sgd --schedule none --epochs 1)
"$TOOL" "${RUN[@]}" "${SGD[@]}" --save "$TMP/one-sgd.st" >"$TMP/one-sgd.out" 2>&1 ||
    fail "one process, sgd: exit status $?"
"${MPI[@]}" -np 2 "$TOOL" "${RUN[@]}" "${SGD[@]}" --save "$TMP/two-sgd.st" >"$TMP/two-sgd.out" 2>&1 ||
    fail "2 ranks, sgd: exit status $?"
close "2 ranks vs one process, sgd" one-sgd two-sgd 1e-5

# --- resume -----------------------------------------------------------------------
"${MPI[@]}" -np 2 "$TOOL" "${RUN[@]}" --epochs 2 --save "$TMP/full2.st" >"$TMP/full2.out" 2>&1 ||
    fail "2 ranks, 2 epochs: exit status $? ($(tail -n 3 "$TMP/full2.out"))"
"${MPI[@]}" -np 2 "$TOOL" "${RUN[@]}" --epochs 2 --stop-after 1 --save "$TMP/cut2.st" \
    >"$TMP/cut2.out" 2>&1 || fail "2 ranks, first part: exit status $?"
cp "$TMP/cut2.st" "$TMP/cut2to1.st"
"${MPI[@]}" -np 2 "$TOOL" train --resume "$TMP/cut2.st" --save "$TMP/cut2.st" --svg '' \
    >"$TMP/res2.out" 2>&1 || fail "2 ranks, resumed: exit status $? ($(tail -n 3 "$TMP/res2.out"))"
cmp -s "$TMP/full2.st" "$TMP/cut2.st" ||
    fail "2 ranks: the resumed run's checkpoint differs from the uninterrupted run's"
# a 2-rank checkpoint continued by one process, and a 1-process one by 2 ranks
"$TOOL" train --resume "$TMP/cut2to1.st" --save "$TMP/cut2to1.st" --svg '' >"$TMP/res1.out" 2>&1 ||
    fail "2 ranks resumed by one process: exit status $? ($(tail -n 3 "$TMP/res1.out"))"
close "2 ranks resumed by one process" full2 cut2to1 1e-4
"$TOOL" "${RUN[@]}" --epochs 2 --stop-after 1 --save "$TMP/cut1to2.st" >/dev/null 2>&1 ||
    fail "one process, first part: exit status $?"
"${MPI[@]}" -np 2 "$TOOL" train --resume "$TMP/cut1to2.st" --save "$TMP/cut1to2.st" --svg '' \
    >"$TMP/res12.out" 2>&1 || fail "one process resumed by 2 ranks: exit status $? ($(tail -n 3 "$TMP/res12.out"))"
close "one process resumed by 2 ranks" full2 cut1to2 1e-4

# --- errors -----------------------------------------------------------------------
"${MPI[@]}" -np 2 "$TOOL" "${RUN[@]}" --epochs 1 --batch-size 63 >"$TMP/odd.out" 2>"$TMP/odd.err"
st=$?
[[ "$st" == 2 ]] || fail "--batch-size 63 on 2 ranks: exit status $st, expected 2"
grep -q -- '--batch-size 63 is the global batch and must be divisible by the 2 ranks' "$TMP/odd.err" ||
    fail "--batch-size 63 on 2 ranks: stderr is $(head -c 400 "$TMP/odd.err")"
# rank 0 cannot write the checkpoint: every rank stops (mpirun returns)
"${MPI[@]}" -np 2 "$TOOL" train --limit 64 --test-limit 64 --epochs 2 --svg '' \
    --save "$TMP/nowhere/x.st" >"$TMP/nosave.out" 2>"$TMP/nosave.err"
st=$?
[[ "$st" == 1 ]] || fail "unwritable --save on 2 ranks: exit status $st, expected 1"
grep -q -- "--save .*nowhere/x.st: .*No such file" "$TMP/nosave.err" ||
    fail "unwritable --save on 2 ranks: stderr is $(head -c 400 "$TMP/nosave.err")"
grep -q '^epoch 2/2' "$TMP/nosave.out" && fail "unwritable --save on 2 ranks: epoch 2 ran"

if ((FAILS > 0)); then
    printf '%d check(s) failed\n' "$FAILS" >&2
    exit 1
fi
printf 'all data-parallel tool checks passed\n'
