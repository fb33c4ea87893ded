#!/usr/bin/env bash
#
# train_cli.sh TAPEGRAD DATA_DIR - tests of the tapegrad tool's train, eval
# and inspect commands on the real Fashion-MNIST files (Debian's
# dataset-fashion-mnist, installed by dev.sh), kept to seconds with --limit
# and --test-limit:
#
#   - train's report and last line format, the SVG file;
#   - two runs with the same seed and threads print the same numbers;
#   - a run cut by --stop-after and continued with --resume ends with a
#     checkpoint byte-identical to the uninterrupted run's and prints the
#     same numbers (MLP, and the CNN, whose dropout draws from the RNG);
#   - eval of the checkpoint agrees with train's last line; inspect lists it;
#   - usage errors exit 2, runtime errors exit 1, each with a message
#     (--dist in a build without MPI among them; the data-parallel runs
#     themselves are in train_mpi.sh).
#
# TG_TOOL_WRAP (e.g. "valgrind --error-exitcode=99 ...") runs every tool
# invocation under a wrapper, and TG_TEST_VALGRIND=1 (set by meson's
# valgrind setup) wraps it in valgrind; either makes the runs smaller and
# skips the SGD and CNN resume cases to stay short. A wrapper's own failure (status 99) fails every check it touches.
set -uo pipefail

TOOL="$1"
DATA="$2"
WRAP=()
if [[ -n "${TG_TOOL_WRAP:-}" ]]; then
    read -r -a WRAP <<<"$TG_TOOL_WRAP"
elif [[ "${TG_TEST_VALGRIND:-0}" == 1 ]]; then
    # meson's valgrind setup runs `valgrind env bash this-script`; env execs
    # bash untraced (no --trace-children), so valgrind the tool here.
    WRAP=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
        --show-leak-kinds=definite,indirect --suppressions="$DATA/../valgrind.supp")
fi
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tapegrad-tool.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
FAILS=0

fail() {
    printf 'FAIL: %s\n' "$*" >&2
    FAILS=$((FAILS + 1))
}

tg() {
    "${WRAP[@]}" "$TOOL" "$@"
}

# The numbers of an output, without the timing fields that differ between
# runs (samples/s, seconds, "trained ... in X s").
numbers() {
    sed -E -e 's/ +[0-9]+ samples\/s +[0-9.]+ s$//' \
        -e 's/^trained ([0-9]+) samples in .*(heap allocations.*)$/trained \1 samples; \2/' \
        -e '/^resuming /d' -e '/^stopped after /d' "$1"
}

# expect STATUS REGEX NAME -- ARGS...: the tool exits with STATUS and its
# stderr matches REGEX.
expect() {
    local want="$1" re="$2" name="$3"
    shift 4
    tg "$@" >"$TMP/out" 2>"$TMP/err"
    local got=$?
    if [[ "$got" != "$want" ]]; then
        fail "$name: exit status $got, expected $want (stderr: $(head -c 400 "$TMP/err"))"
    elif ! grep -Eq -- "$re" "$TMP/err"; then
        fail "$name: stderr does not match '$re': $(head -c 400 "$TMP/err")"
    fi
}

# Under a wrapper (valgrind: 20-50 times slower) the runs are smaller.
if ((${#WRAP[@]} == 0)); then
    NTRAIN=640 NTEST=1000
else
    NTRAIN=128 NTEST=200
fi
SMALL=(--limit "$NTRAIN" --test-limit "$NTEST" --batch-size 64)

# --- train: output format ----------------------------------------------------
if ! tg train --model mlp --epochs 1 "${SMALL[@]}" --svg "$TMP/c.svg" >"$TMP/a.out" 2>"$TMP/a.err"; then
    fail "train mlp: exit status $? ($(cat "$TMP/a.err"))"
fi
last="$(tail -n 1 "$TMP/a.out")"
[[ "$last" =~ ^test_accuracy=0\.[0-9]{4}$ ]] || fail "train: last line is '$last'"
for want in '^epoch 1/1  loss [0-9.]+  train_acc 0\.[0-9]{4}  test_loss [0-9.]+  test_acc 0\.[0-9]{4}  lr ' \
    '^ +precision +recall +f1-score +support$' '^ T-shirt/top +0\.[0-9]{4} +0\.[0-9]{4} +0\.[0-9]{4} +[0-9]+$' \
    '^  Ankle boot ' "^    accuracy +0\\.[0-9]{4} +$NTEST\$" '^   macro avg ' '^weighted avg ' \
    '^confusion matrix' '^ 9 Ankle boot ' 'heap allocations in [0-9]+ steady-state steps: 0$'; do
    grep -Eq -- "$want" "$TMP/a.out" || fail "train: no line matching '$want'"
done
# The confusion matrix's entries add up to the test samples.
sum="$(grep -A 11 '^confusion matrix' "$TMP/a.out" | tail -n 10 |
    awk '{ for (i = NF - 9; i <= NF; i++) s += $i } END { print s }')"
[[ "$sum" == "$NTEST" ]] || fail "train: the confusion matrix sums to $sum, not $NTEST"
head -c 200 "$TMP/c.svg" | grep -q '<svg xmlns="http://www.w3.org/2000/svg"' || fail "svg: no <svg> element"
[[ "$(tail -n 1 "$TMP/c.svg")" == "</svg>" ]] || fail "svg: not closed"
grep -q '>epoch</text>' "$TMP/c.svg" || fail "svg: no axis label"

# --- determinism ---------------------------------------------------------------
tg train --model mlp --epochs 1 "${SMALL[@]}" --svg '' >"$TMP/b.out" 2>&1 || fail "train (second run)"
if ! diff <(numbers "$TMP/a.out" | grep -v '^curves') <(numbers "$TMP/b.out") >"$TMP/diff"; then
    fail "two runs with the same seed differ: $(head -c 600 "$TMP/diff")"
fi

# --- resume is bit-exact -------------------------------------------------------
# resume_case NAME ARGS...: 2 epochs in one run versus 1 + 1 through a checkpoint.
resume_case() {
    local name="$1"
    shift
    tg train "$@" --epochs 2 --save "$TMP/$name-full.st" --svg '' >"$TMP/$name-full.out" 2>&1 ||
        fail "$name: uninterrupted run ($(tail -n 3 "$TMP/$name-full.out"))"
    tg train "$@" --epochs 2 --stop-after 1 --save "$TMP/$name-cut.st" --svg '' \
        >"$TMP/$name-part1.out" 2>&1 || fail "$name: first part ($(tail -n 3 "$TMP/$name-part1.out"))"
    grep -q '^stopped after epoch 1 of 2' "$TMP/$name-part1.out" || fail "$name: no 'stopped after' line"
    tg train --resume "$TMP/$name-cut.st" --save "$TMP/$name-cut.st" --svg '' \
        >"$TMP/$name-part2.out" 2>&1 || fail "$name: resumed part ($(tail -n 3 "$TMP/$name-part2.out"))"
    cmp -s "$TMP/$name-full.st" "$TMP/$name-cut.st" ||
        fail "$name: the resumed run's checkpoint differs from the uninterrupted run's"
    # The epoch lines and the final line agree.
    grep -E '^epoch|^test_accuracy' "$TMP/$name-full.out" | sed -E 's/ +[0-9]+ samples\/s +[0-9.]+ s$//' >"$TMP/$name-a"
    { grep -E '^epoch' "$TMP/$name-part1.out"; grep -E '^epoch|^test_accuracy' "$TMP/$name-part2.out"; } |
        sed -E 's/ +[0-9]+ samples\/s +[0-9.]+ s$//' >"$TMP/$name-b"
    cmp -s "$TMP/$name-a" "$TMP/$name-b" ||
        fail "$name: printed numbers differ: $(diff "$TMP/$name-a" "$TMP/$name-b" | head -c 600)"
    [[ "$(grep -c '^epoch' "$TMP/$name-b")" == 2 ]] || fail "$name: expected 2 epoch lines"
}
resume_case mlp --model mlp --limit "$NTRAIN" --test-limit "$NTEST" --optimizer adam --schedule cosine
if ((${#WRAP[@]} == 0)); then
    resume_case sgd --model mlp --limit 320 --test-limit 300 --optimizer sgd --schedule onecycle --seed 7
    resume_case cnn --model cnn --limit 192 --test-limit 200 --batch-size 32 --optimizer adamw --schedule step
fi

# --- eval and inspect ----------------------------------------------------------
CK="$TMP/mlp-full.st"
tg eval --model "$CK" --test-limit "$NTEST" >"$TMP/eval.out" 2>"$TMP/eval.err" ||
    fail "eval: exit status $? ($(cat "$TMP/eval.err"))"
[[ "$(tail -n 1 "$TMP/eval.out")" == "$(tail -n 1 "$TMP/mlp-full.out")" ]] ||
    fail "eval says '$(tail -n 1 "$TMP/eval.out")', train said '$(tail -n 1 "$TMP/mlp-full.out")'"
grep -q '^weighted avg ' "$TMP/eval.out" || fail "eval: no report"
tg inspect "$CK" >"$TMP/inspect.out" 2>&1 || fail "inspect: exit status $?"
for want in '^fc1\.weight +F32 +\[256,784\] +200704 +802816$' '^optim\.step +I64 ' \
    '^parameters: 235146 in 6 tensors' '^  format = tapegrad\.checkpoint$' '^  model = mlp$' \
    '^  epoch = 2$' '^total: [0-9]+ tensors'; do
    grep -Eq -- "$want" "$TMP/inspect.out" || fail "inspect: no line matching '$want'"
done

# --- version: the BLAS it loads, or why not -------------------------------------
if ! tg version >"$TMP/v.out" 2>&1 || ! grep -Eq '^BLAS: .*blas' "$TMP/v.out"; then
    fail "version: no BLAS line naming a library: $(cat "$TMP/v.out")"
fi
if ! TG_BLAS_LIB=/nonexistent/libnothing.so tg version >"$TMP/v.out" 2>&1 ||
    ! grep -q "^BLAS: none, products on tapegrad's own loops (cannot load /nonexistent/libnothing.so" \
        "$TMP/v.out"; then
    fail "version without a BLAS: $(cat "$TMP/v.out")"
fi

# --- errors --------------------------------------------------------------------
expect 2 "unknown option '--epoch'" "unknown option" -- train --epoch 3
expect 2 "--epochs: 'abc' is not a whole number" "bad number" -- train --epochs abc
expect 2 "--epochs: 0 is out of range" "zero epochs" -- train --epochs 0
expect 2 "--lr: 'nan' is not a finite number" "nan lr" -- train --lr nan
expect 2 "--model: unknown value 'rnn'" "unknown model" -- train --model rnn
expect 2 "--batch-size needs a value" "missing value" -- train --batch-size
expect 2 "unknown command" "unknown command" -- frobnicate
expect 2 "--dist takes no value" "flag with a value" -- train --dist=yes
# Without MPI (TG_EXPECT_MPI=0 from tools/meson.build), --dist is refused;
# the MPI build's runs are in train_mpi.sh (suite mpi).
if [[ "${TG_EXPECT_MPI:-1}" == 0 ]]; then
    expect 1 "--dist asks for data-parallel training, but this tapegrad was built without MPI" \
        "--dist without MPI" -- train --dist --epochs 1 --limit 64 --test-limit 64 --svg ''
    OMPI_COMM_WORLD_SIZE=2 expect 1 "started by mpirun with several processes, but this tapegrad was built without MPI" \
        "mpirun without MPI" -- train --epochs 1 --limit 64 --test-limit 64 --svg ''
fi
expect 2 "--model PATH is required" "eval without model" -- eval
expect 2 "expected one safetensors file" "inspect without path" -- inspect
expect 1 "cannot read the Fashion-MNIST images" "missing data" -- train --data "$TMP/nowhere" --epochs 1
expect 1 "cannot read checkpoint" "missing checkpoint" -- eval --model "$TMP/nothing.st"
head -c 1000 "$CK" >"$TMP/truncated.st"
expect 1 "cannot read checkpoint .*truncated.st" "truncated checkpoint" -- eval --model "$TMP/truncated.st"
expect 1 "truncated.st" "inspect truncated" -- inspect "$TMP/truncated.st"
expect 1 "cannot read checkpoint" "resume truncated" -- train --resume "$TMP/truncated.st"
printf 'not a safetensors file at all' >"$TMP/garbage.st"
expect 1 "garbage.st" "inspect garbage" -- inspect "$TMP/garbage.st"
expect 1 "not a tapegrad checkpoint" "eval of a foreign file" -- eval --model "$DATA/safetensors/torch_written.safetensors"
# The MLP's checkpoint relabelled as a CNN (same length, so the file stays valid).
LC_ALL=C sed 's/"model":"mlp"/"model":"cnn"/' "$CK" >"$TMP/relabelled.st"
cmp -s "$CK" "$TMP/relabelled.st" && fail "could not relabel the checkpoint"
expect 1 "cannot load .*relabelled.st as a cnn: .*conv1.weight" "eval of a mislabelled checkpoint" -- eval --model "$TMP/relabelled.st"
expect 1 "relabelled.st: .*conv1.weight" "resume of a mislabelled checkpoint" -- train --resume "$TMP/relabelled.st"
expect 1 "trained with --model mlp" "resume as another architecture" -- train --resume "$CK" --model cnn
expect 1 "trained with --lr 0.001" "resume with another lr" -- train --resume "$CK" --lr 0.01
expect 1 "more than --epochs 1" "resume past the end" -- train --resume "$CK" --epochs 1
expect 1 "--save .*nowhere/x.st: .*No such file" "unwritable checkpoint" -- train --epochs 1 --limit 64 --test-limit 64 --svg '' --save "$TMP/nowhere/x.st"

if ((FAILS > 0)); then
    printf '%d check(s) failed\n' "$FAILS" >&2
    exit 1
fi
printf 'all tool checks passed\n'
