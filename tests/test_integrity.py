"""No writes outside the run folder, one line for OS errors, and where a run was computed:
``segact-train`` run as a real subprocess, its faults injected into that process."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from segact.runs.folder import RunFolder
from segact.train import _job_overrides, _sweep_overrides
from tests.helpers import TINY, numbers, segact_train

pytestmark = pytest.mark.slow


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _train_in(cwd: Path, *overrides: str, multirun: bool = False, env: dict | None = None):
    """``segact-train`` run from ``cwd``: its default outputs/ and multirun/ folders are there."""
    command = [sys.executable, "-m", "segact.train", *(["-m"] if multirun else []), *TINY]
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [*command, *overrides], capture_output=True, text=True, cwd=cwd, env=environment
    )


@pytest.mark.parametrize("multirun", [False, True])
@pytest.mark.parametrize("name", ["../../escaped", "/tmp/absolute_escape", "..", "a/b"])
def test_a_folder_name_that_leaves_its_folder_is_refused_before_any_write(tmp_path, name, multirun):
    work = tmp_path / "deep" / "work"
    work.mkdir(parents=True)
    done = _train_in(work, f"dataset.name={name}", multirun=multirun)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"segact: error: config key 'dataset.name' = {name!r} "
        + ("is empty or '.' or '..'" if name == ".." else "holds a path separator or NUL")
        + ": it names a run folder below the sweep or outputs folder; choose a plain name"
    ]
    assert _files(tmp_path) == {"deep", "deep/work"}  # nothing written, inside or outside
    assert not Path("/tmp/absolute_escape").exists()


def test_a_name_from_the_environment_is_checked_too(tmp_path):
    done = _train_in(tmp_path, "dataset.name=${oc.env:SEGACT_X}", env={"SEGACT_X": str(tmp_path)})
    assert done.returncode == 2 and "holds a path separator" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("folder", ["/", "HOME"])
def test_root_and_home_are_never_run_folders(tmp_path, folder, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    target = str(home) if folder == "HOME" else "/"
    done = segact_train(f"hydra.run.dir={target}", check=False)
    assert done.returncode == 2
    kind = "a home directory" if folder == "HOME" else "the filesystem root"
    assert done.stderr.strip() == (
        f"segact: error: hydra.run.dir = {target!r} is {kind}; choose a folder of its own for "
        "segact's runs"
    )
    assert list(home.iterdir()) == []


def test_a_folder_with_someone_elses_results_is_refused_and_left_alone(tmp_path):
    run = tmp_path / "theirs"
    run.mkdir()
    (run / "folds.csv").write_text("their,numbers\n1,2\n")
    done = segact_train(f"hydra.run.dir={run}", check=False)
    assert done.returncode == 2
    assert "holds files segact did not write (folds.csv)" in done.stderr
    assert (run / "folds.csv").read_text() == "their,numbers\n1,2\n"
    assert not (run / "summary.json").exists()


def test_a_refused_folder_receives_nothing_not_even_hydras_files(tmp_path):
    """Another Hydra app's output folder: its .hydra/config.yaml is not overwritten and no job
    log is added (issue 30, item 12)."""
    run = tmp_path / "theirs"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("their: config\n")
    (run / "model.ckpt").write_bytes(b"their weights")
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    done = segact_train(f"hydra.run.dir={run}", check=False)
    assert done.returncode == 2 and "holds files segact did not write (model.ckpt)" in done.stderr
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_refused_folder_in_a_multirun_receives_nothing_and_no_job_starts(tmp_path):
    """A multirun into an existing sweep folder where one run's folder holds someone else's
    files: refused before the first job, whose .hydra/ and log Hydra would write first."""
    sweep = tmp_path / "sweep"
    segact_train("activation=sigmoid,arctan", f"hydra.sweep.dir={sweep}", multirun=True)
    (theirs,) = {p.parents[1] for p in sweep.rglob(".hydra/config.yaml") if "arctan" in str(p)}
    (theirs / ".hydra" / "config.yaml").write_text("their: config\n")
    (theirs / "model.ckpt").write_bytes(b"their weights")
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    done = segact_train(
        "activation=sigmoid,arctan", f"hydra.sweep.dir={sweep}", multirun=True, check=False
    )
    assert done.returncode == 2
    assert "holds files segact did not write (model.ckpt)" in done.stderr
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before


FAULT = """
import errno, os, pathlib, sys
{patch}
sys.argv = ["segact-train", *sys.argv[1:]]
from segact.train import main
main()
"""
DISK_FULL_ON_REPLACE = """
real = os.replace
def replace(src, dst):
    if str(dst).endswith(("folds.csv", "summary.json", ".json")):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(src, dst)
os.replace = replace
"""
DISK_FULL_ON_WRITE_BYTES = """
real = pathlib.Path.write_bytes
def write_bytes(self, data):
    if {marker!r} in self.name:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(self, data)
pathlib.Path.write_bytes = write_bytes
"""
DISK_FULL_ON_CHECKPOINT = DISK_FULL_ON_WRITE_BYTES.format(marker=".pt.")
DISK_FULL_BEFORE_HYDRA = DISK_FULL_ON_WRITE_BYTES.format(marker=".segact-probe-")
DISK_FULL_ON_LOCK = """
real = pathlib.Path.write_text
def write_text(self, data, *args, **kwargs):
    if ".lock." in self.name:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(self, data, *args, **kwargs)
pathlib.Path.write_text = write_text
"""
DISK_FULL_ON_MODEL = DISK_FULL_ON_WRITE_BYTES.format(marker=".safetensors.")  # issue 30, item 11


def _faulty_train(patch: str, *overrides: str) -> subprocess.CompletedProcess:
    code = FAULT.format(patch=textwrap.dedent(patch))
    return subprocess.run(
        [sys.executable, "-c", code, *TINY, *overrides], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("patch", "names"),
    [
        (DISK_FULL_ON_REPLACE, "fold0.json"),
        (DISK_FULL_ON_CHECKPOINT, "fold0.pt"),
        (DISK_FULL_ON_MODEL, "fold0.safetensors"),
        (DISK_FULL_BEFORE_HYDRA, ".segact-probe-"),  # a 4 KB tmpfs: before Hydra's own files
        (DISK_FULL_ON_LOCK, "fold0.lock"),
    ],
)
def test_a_full_disk_is_one_line_and_the_run_resumes_after(tmp_path, patch, names):
    run = tmp_path / "run"
    models = "runtime.save_models=true" if "safetensors" in names else "runtime.save_models=false"
    done = _faulty_train(patch, f"hydra.run.dir={run}", "runtime.checkpoint_every_s=0", models)
    assert done.returncode == 1
    (line,) = [x for x in done.stderr.strip().splitlines() if x.startswith("segact")]
    assert line.startswith("segact: error: ") and names in line
    assert "No space left on device; fix it and run the same command again" in line
    assert "Traceback" not in done.stderr
    assert RunFolder(run).finished_summary("any") is None
    segact_train(f"hydra.run.dir={run}")  # the space is back: the same command finishes
    fresh = tmp_path / "fresh"
    segact_train(f"hydra.run.dir={fresh}")
    pd.testing.assert_frame_equal(
        numbers(RunFolder(run).folds_csv).drop(columns="run_dir"),
        numbers(RunFolder(fresh).folds_csv).drop(columns="run_dir"),
    )


def test_a_run_folder_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    done = segact_train(f"hydra.run.dir={blocker}/run", check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"segact: error: {blocker}/run: Not a directory; fix it and run the same command again "
        "to resume"
    )


def test_summary_records_where_the_run_was_computed(tmp_path):
    run = tmp_path / "run"
    segact_train(f"hydra.run.dir={run}")
    summary = json.loads(RunFolder(run).summary_json.read_text())
    block = summary["provenance"]
    assert block["hardware"].startswith("cpu: ") and block["torch"]
    assert {"cpu", "cpu_vector_extensions", "gpu", "cuda", "cudnn", "segact", "git_commit"} <= set(
        block
    )
    folds = pd.read_csv(RunFolder(run).folds_csv)
    assert (folds["hardware"] == block["hardware"]).all()
    assert summary["fold_hardware"] == [block["hardware"]]
    assert errno.ENOSPC  # the module's own import stays used


def _folder_cfg(root: Path, cache: Path):
    from tests.helpers import compose_config

    return compose_config(
        *(option for option in TINY if not option.startswith("dataset.")),
        "dataset=folder",
        f"dataset.root={root}",
        "dataset.image_size=24",
        f"dataset.cache_dir={cache}",
        "trainer.max_epochs=1",
        tiny=False,
    )


def test_changed_data_is_another_run_and_gives_its_own_numbers(tmp_path):
    """Masks replaced by others of the same size, the old mtime restored: the finished run is
    not taken for this data, and the numbers are those of a fresh run on the new data."""
    from segact.runs.runner import train
    from tests.data_fixtures import write_folder

    root = write_folder(tmp_path / "data", n=8, seed=0)
    run, cache = tmp_path / "run", tmp_path / "cache"
    first = train(_folder_cfg(root, cache), run)
    assert train(_folder_cfg(root, cache), run)["config_hash"] == first["config_hash"]  # skipped
    other = write_folder(tmp_path / "other", n=8, seed=1)
    for mask in sorted((root / "masks").iterdir()):
        stat = mask.stat()
        mask.write_bytes((other / "masks" / mask.name).read_bytes())
        os.utime(mask, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = train(_folder_cfg(root, cache), run)
    assert second["config_hash"] != first["config_hash"]
    assert second["identity"]["dataset.fingerprint"] != first["identity"]["dataset.fingerprint"]
    fresh_root = tmp_path / "fresh"
    shutil.copytree(root, fresh_root)
    fresh = train(_folder_cfg(fresh_root, tmp_path / "fresh_cache"), tmp_path / "fresh_run")
    assert second["best_dice_mean"] == fresh["best_dice_mean"]
    assert second["best_dice_mean"] != first["best_dice_mean"]


READ_ONLY_FOLDER = """
real = pathlib.Path.write_bytes
def write_bytes(self, data):
    if self.name.startswith(".segact-probe"):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    return real(self, data)
pathlib.Path.write_bytes = write_bytes
"""


def test_a_read_only_run_folder_is_one_line_before_hydra_sets_up_its_log(tmp_path):
    done = _faulty_train(READ_ONLY_FOLDER, f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("segact: error: ")
    assert "Read-only file system; fix it and run the same command again" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1  # no "Unable to configure handler" trace


def test_the_report_says_when_a_table_mixes_hardware(tmp_path):
    from segact.report import cli as report
    from tests.report_fixtures import ARCTAN, SIGMOID, write_run

    sweep = tmp_path / "sweep"
    write_run(sweep, "sigmoid", SIGMOID, keys={"hardware": "cpu: A (avx2)"})
    write_run(sweep, "arctan", ARCTAN, keys={"hardware": "gpu: B"})
    assert report.main([str(sweep), "--out", str(tmp_path / "out"), "--no-figures"]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Dataset toy mixes hardware: cpu: A (avx2) (5 folds); gpu: B (5 folds)." in text


def test_the_guard_checks_the_default_run_folder_quietly(tmp_path):
    """``outputs/...`` holds ``${hydra:...}`` interpolations: the guard resolves them as Hydra
    does, without a warning that it could not."""
    done = _train_in(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Callback RunDirGuard" not in done.stderr
    assert list((tmp_path / "outputs").rglob("summary.json"))


def test_a_multiruns_jobs_are_the_sweepers_product_parsed_once():
    """The jobs whose folders are checked before a multirun starts: ``hydra.sweeper.params``
    first, then the command line, as Hydra's basic sweeper makes them (one parse serves the
    folder-name check and the jobs)."""
    config = OmegaConf.create(
        {
            "hydra": {
                "sweeper": {"params": {"loss": "dice,bce"}},
                "overrides": {"task": ["activation=sigmoid,arctan", "trainer.seed=0"]},
            }
        }
    )
    overrides = _sweep_overrides(config)
    assert [o.get_key_element() for o in overrides] == ["loss", "activation", "trainer.seed"]
    assert _job_overrides(overrides) == [
        [f"loss={loss}", f"activation={activation}", "trainer.seed=0"]
        for loss in ("dice", "bce")
        for activation in ("sigmoid", "arctan")
    ]
