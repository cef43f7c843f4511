"""``segact-predict``: apply a finished run's saved models to new images or volumes; the work is
``segact.runs.predict``.

segact-predict outputs/default/folder/Unet-resnet34/... new_images/ --out masks/
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from segact.errors import ConfigError
from segact.io import describe

INTERRUPTED = 130  # the shell's exit status for a command stopped by Ctrl-C (128 + SIGINT)


APPLIED = "segact.runs.predict"
"""The logger whose INFO line says which folds and threshold a prediction applies."""


class _Lines(logging.Handler):
    """segact's warnings (a model saved before model hashes) as ``segact-predict: warning: ...``
    lines on the current stderr, and the line saying which folds' models and which threshold it
    applies as ``segact-predict: applying ...`` on stdout."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            print(f"segact-predict: warning: {record.getMessage()}", file=sys.stderr)
        elif record.name == APPLIED:
            print(f"segact-predict: {record.getMessage()}")


LINES = _Lines()


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in [0, 1]")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segact-predict",
        description="Segment images (png, jpg, tif, bmp) or NIfTI volumes with a finished run's "
        "saved models: the folds' probabilities averaged, thresholded at the mean of their "
        "reported thresholds, one mask per input at the input's resolution.",
    )
    parser.add_argument("run_dir", type=Path, help="the folder of a finished segact run")
    parser.add_argument(
        "input", type=Path, help="an image or volume, or a folder of them (an MSD task: imagesTr/)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the masks")
    parser.add_argument("--fold", type=int, help="only this fold's model (default: every fold)")
    cut = parser.add_mutually_exclusive_group()
    cut.add_argument(
        "--threshold", type=_fraction, help="foreground where p >= this (default: the folds')"
    )
    cut.add_argument(
        "--argmax", action="store_true", help="softmax2 models: the more probable class"
    )
    parser.add_argument(
        "--probabilities",
        action="store_true",
        help="also write <name>_probability.png (16-bit, p x 65535) or .nii.gz (float32)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace masks an earlier segact-predict wrote into --out (listed in its "
        ".segact-predict.json) and unchanged since; other files are never replaced",
    )
    parser.add_argument("--device", default="auto", help="auto (a GPU if any), cpu, cuda, cuda:N")
    parser.add_argument(
        "--batch-size",
        type=_positive,
        help="images per forward pass (default: the run's eval.batch_size, which reproduces "
        "its evaluation's probabilities exactly; CPU kernels' sums change with the batch)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _predict(args: argparse.Namespace) -> list[Path]:
    from segact.runs.predict import PredictOptions, predict  # torch: inside main's Ctrl-C guard
    from segact.runs.registration import register

    register()  # plugins: their dataset formats read their inputs

    options = PredictOptions(
        fold=args.fold,
        threshold=args.threshold,
        argmax=args.argmax,
        probabilities=args.probabilities,
        overwrite=args.overwrite,
        device=args.device,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    return predict(args.run_dir, args.input, args.out, options)


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    segact_log, applied_log = logging.getLogger("segact"), logging.getLogger(APPLIED)
    segact_log.addHandler(LINES)
    level = applied_log.level
    applied_log.setLevel(logging.INFO)
    try:
        written = _predict(args)
    except KeyboardInterrupt:
        print("segact-predict: interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except ConfigError as error:
        print(f"segact-predict: error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        print(f"segact-predict: error: {describe(error)}", file=sys.stderr)
        sys.exit(1)
    finally:
        segact_log.removeHandler(LINES)
        applied_log.setLevel(level)
    print(f"segact-predict: wrote {len(written)} file(s) to {args.out}")


if __name__ == "__main__":
    main()
