#!/usr/bin/env bash
# The real-data replication (results/PLAN.md): every grid as a Hydra multirun into a sweep folder
# under results/runs/, then segact-report into results/<grid>/. Resumes: a finished run (its
# summary.json says ok, files intact) is skipped, an interrupted one continues from its
# checkpoint, so running this again after a stop loses nothing and recomputes nothing.
#
#   scripts/replicate.sh [--quick] [--jobs N] [--datasets A,B] [--size PX] [GRID ...] [-- OVERRIDES]
#     GRID: sigmoid_vs_arctan paper_grid head_comparison binarize_gradients clean_protocol report
#           (default: all but clean_protocol; report builds every grid's report, clean_protocol's too)
#     --quick: a smoke run (1 seed, 2 folds, 2 epochs, 32 px, synthetic + ISBI) into /tmp
#     --datasets: only these datasets of each grid's list (the order of the plan's sessions)
#     --size: the input size instead of the plan's 48 px (ISBI 2012 and DRIVE need more)
#     -- OVERRIDES: more Hydra overrides for every sweep, e.g. trainer.device=cuda; like --size,
#        they are in the run folders' names, so runs at another scale sit beside the plan's
set -euo pipefail
cd "$(dirname "$0")/.."

TRAIN=${SEGACT_TRAIN:-.venv/bin/segact-train}
REPORT=${SEGACT_REPORT:-.venv/bin/segact-report}
JOBS=2
QUICK=0
ONLY=""
SIZE=48
GRIDS=()
EXTRA=()
while (($#)); do
    case "$1" in
        --quick) QUICK=1 ;;
        --jobs) JOBS="$2"; shift ;;
        --datasets) ONLY="$2"; shift ;;
        --size) SIZE="$2"; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        *) GRIDS+=("$1") ;;
    esac
    shift
done
((${#GRIDS[@]})) || GRIDS=(sigmoid_vs_arctan paper_grid head_comparison binarize_gradients report)

# The scale of results/PLAN.md. trainer.threads is fixed (not cores / jobs), so a checkout on a
# machine with another core count finds the same run identities and skips the finished runs.
SCALE=(model=tiny trainer=paper trainer.threads=1)
SEEDS=trainer.seed=0,1,2
RUNS=results/runs
OUT=results
ALL_DATASETS=synthetic,ph2,cvc_clinicdb,kvasir_seg,isbi2012,drive_vessels  # see results/PLAN.md
if ((QUICK)); then
    SIZE=32
    SCALE=(model=tiny trainer=paper trainer.max_epochs=2 trainer.folds=2 trainer.threads=1)
    SEEDS=trainer.seed=0
    RUNS=/tmp/segact_replicate_quick/runs
    OUT=/tmp/segact_replicate_quick
    ALL_DATASETS=synthetic,isbi2012
fi

datasets() {  # datasets LIST: LIST, or its members that --datasets names
    [[ -z $ONLY ]] && { echo "$1"; return; }
    local kept=() d
    for d in ${1//,/ }; do [[ ",$ONLY," == *",$d,"* ]] && kept+=("$d"); done
    ((${#kept[@]})) || return 1
    (IFS=,; echo "${kept[*]}")
}

sweep() {  # sweep NAME OVERRIDES...: one multirun, finished runs skipped; failures do not stop us
    local name=$1
    shift
    "$TRAIN" -m launcher=joblib hydra.launcher.n_jobs="$JOBS" runtime.progress=false \
        "${SCALE[@]}" dataset.image_size="$SIZE" hydra.sweep.dir="$RUNS/$name" "$@" \
        ${EXTRA[@]+"${EXTRA[@]}"} || echo "replicate: $name had failed runs"
}

# The clean-protocol grid (issue 34, results/PLAN.md): per dataset its input size and the epoch
# budget of each claim's pair, dice and BCE (scripts/plan_compute.py --clean-protocol: the larger
# of the pair's median epochs_run in the paper-protocol runs), cheapest datasets first
CLEAN_CELLS=(ph2:48:42:45 drive_vessels:96:94:13 isbi2012:96:184:79 cvc_clinicdb:48:22:35
    kvasir_seg:48:39:47)
((QUICK)) && CLEAN_CELLS=(synthetic:32:2:2)

clean_sweep() {  # clean_sweep DATASET SIZE BUDGET COMBINATIONS: holdout, fixed budget, no early stop
    SIZE=$2 sweep clean_protocol dataset="$1" "$SEEDS" eval.protocol=holdout \
        trainer.max_epochs="$3" trainer.patience="$3" +combination="$4"
}

for grid in "${GRIDS[@]}"; do
    case "$grid" in
        sigmoid_vs_arctan)
            list=$(datasets "$ALL_DATASETS") || continue
            sweep sigmoid_vs_arctan dataset="$list" "$SEEDS" \
                +combination=dice_sigmoid,dice_arctan,bce_sigmoid,bce_normal_cdf ;;
        paper_grid)
            list=$(datasets isbi2012,synthetic) || continue
            sweep paper_grid dataset="$list" "$SEEDS" \
                activation=sigmoid,arctan,normal_cdf,softsign,inv_sqrt,hardtanh,linear loss=bce,mse,dice ;;
        head_comparison)
            list=$(datasets ph2,isbi2012) || continue
            sweep head_comparison dataset="$list" "$SEEDS" \
                +combination=sigmoid1_bce,softmax2_ce,sigmoid1_dice,softmax2_dice ;;
        binarize_gradients)
            # PH2, not ISBI 2012: ISBI's membranes vanish at 48 px (results/PLAN.md)
            list=$(datasets ph2) || continue
            sweep binarize_gradients dataset="$list" trainer.seed=0 loss=dice,boundary \
                loss.binarize=none,hard,ste ;;
        clean_protocol)
            for cell in "${CLEAN_CELLS[@]}"; do
                IFS=: read -r dataset size dice bce <<< "$cell"
                datasets "$dataset" > /dev/null || continue
                clean_sweep "$dataset" "$size" "$dice" dice_sigmoid,dice_arctan
                clean_sweep "$dataset" "$size" "$bce" bce_sigmoid,bce_normal_cdf
            done ;;
        report)
            # the 8 reports at once (about half the wall time of one after another on 2 cores);
            # their output is printed in order once all have finished
            logs=$(mktemp -d)
            reports=()
            report() {  # report LOG ARGS...: segact-report ARGS into $logs/LOG, its status beside
                local rc=0
                "$REPORT" "${@:2}" > "$logs/$1" 2>&1 || rc=$?
                echo "$rc" > "$logs/$1.rc"
            }
            for name in clean_protocol sigmoid_vs_arctan paper_grid head_comparison binarize_gradients; do
                [[ -d "$RUNS/$name" ]] || continue
                options=()
                sources=("$RUNS/$name")
                # ISBI 2012's Dice-loss sigmoid and arctan ran on the GPU here and again on the
                # CPU (the device check; the paper grid's seeds 1 and 2): the report keeps the
                # GPU runs and sets the CPU ones beside them ('Device as a replicate')
                # the paper's comparisons, framed by its claims (the runs record no experiment)
                [[ $name == clean_protocol ]] &&
                    options=(--pair sigmoid arctan --pair sigmoid normal_cdf --paper-claims)
                if [[ $name == sigmoid_vs_arctan ]]; then
                    options=(--pair sigmoid arctan --pair sigmoid normal_cdf --paper-claims)
                    for extra in "$RUNS"/device_check \
                        "$RUNS"/paper_grid/isbi2012/*/sigmoid1-{sigmoid,arctan}-dice-none/seed[12]; do
                        [[ -d $extra ]] && sources+=("$extra")
                    done
                fi
                # the paper grid's 21 cells are ranked against each other: until every cell has
                # every seed, each is a mean over the seeds they all have (results.csv keeps all);
                # ISBI's cells ran partly on a GPU, partly on the CPU: one row each all the same
                [[ $name == paper_grid ]] && options=(--pair sigmoid arctan --pair sigmoid normal_cdf
                    --common-seeds --pool resolved --paper-claims)
                [[ $name == head_comparison ]] && options=(--pair sigmoid softmax)
                reports+=("$name" "$name.paper")
                report "$name" "${sources[@]}" --out "$OUT/$name" "${options[@]}" &
                # the same figures as the selected epoch's report: drawn once, there
                report "$name.paper" "${sources[@]}" --out "$OUT/$name/paper_aggregation" \
                    --aggregate paper --no-figures "${options[@]}" &
            done
            wait
            failed=0
            for report in "${reports[@]}"; do
                [[ $report == *.paper ]] || cat "$logs/$report"
                if [[ $(cat "$logs/$report.rc") != 0 ]]; then
                    failed=1
                    echo "replicate: report $report failed:" >&2
                    tail -5 "$logs/$report" >&2
                fi
            done
            rm -rf "$logs"
            ((failed == 0)) || exit 1 ;;
        *) echo "replicate: unknown grid '$grid'" >&2; exit 2 ;;
    esac
done
