"""A mistyped key, config group or option is refused before Hydra runs anything: one line that
names the closest existing name, exit 2, nothing written (issue 25, point 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from segact.config import config_dir
from segact.train import _overrides_to_check, _typo
from tests.helpers import composed

ACTIVATIONS = "arctan, custom, hardtanh, inv_sqrt, linear, normal_cdf, sigmoid, softmax, softsign"
TYPOS = [
    (
        ["trainer.epochs=3"],
        "config key 'trainer.epochs' = 3: trainer has no such setting; "
        "did you mean trainer.max_epochs?",
    ),
    (
        ["+trainer.epochs=3"],
        "config key 'trainer.epochs' = 3: trainer has no such setting; "
        "did you mean trainer.max_epochs?",
    ),
    (
        ["activation=arctann"],
        "config group 'activation' has no option 'arctann': did you mean arctan? "
        f"(options: {ACTIVATIONS})",
    ),
    (["activaton=arctan"], "no config group 'activaton': did you mean activation? (groups: "),
    (
        ["-m", "activation=sigmoid,arctann"],
        "config group 'activation' has no option 'arctann': did you mean arctan?",
    ),
]


def typo(*argv: str) -> str | None:
    """What ``segact-train <argv>`` is refused with, checked in this process."""
    composed()  # Hydra initialized on the config tree, as segact-train's check does
    overrides = _overrides_to_check(list(argv))
    return None if overrides is None else _typo(GlobalHydra.instance().config_loader(), overrides)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        *TYPOS,
        (["trainr.max_epochs=2"], "the config has no setting 'trainr'; did you mean trainer."),
        (["~trainer.epochs"], "config key 'trainer.epochs': trainer has no such setting; did"),
        (["hydra/launcher=jobli"], "config group 'hydra/launcher' has no option 'jobli': did"),
        (["+combination=dice_arctn"], "has no option 'dice_arctn': did you mean dice_arctan?"),
        (["experiment=sigmoid_vs_arcta"], "did you mean sigmoid_vs_arctan?"),
        (["-m", "trainer.sed=0,1"], "trainer has no such setting; did you mean trainer.seed?"),
        (["-m", "activation=glob(arc*)", "los=bce"], "no config group 'los': did you mean loss?"),
        (["model.kwargs.depth=3"], "model.kwargs takes new keys: add it with +model.kwargs.depth"),
        (["+activaton=arctan"], "'activaton' = 'arctan': the config has no such setting; did you"),
        (["-m", "loss=dice,bce", "loss.smooth=1"], "no such setting; the settings of loss are"),
        (["-m", "loss=dice,bce", "loss.smooth=1"], "eps (in the jobs with loss=bce)"),
    ],
)
def test_a_typo_names_the_closest_existing_name(argv, message):
    found = typo(*argv)
    assert found is not None and message in found
    assert "\n" not in found


@pytest.mark.parametrize(
    "argv",
    [
        ["trainer.max_epochs=3", "activation=arctan", "loss=bce"],
        ["~activation", "++trainer.max_epochs=2", "+model.kwargs.foo=1"],
        ["experiment=sigmoid_vs_arctan", "+combination=dice_arctan"],
        ["-m", "activation=glob(*)", "trainer.seed=range(0,3)", "loss=choice(dice,bce)"],
        ["-m", "dataset=folder", "dataset.root=/data", "dataset.image_size=32,64"],
        ["hydra.run.dir=/tmp/x", "hydra/launcher=joblib", "launcher=joblib"],
        ["dataset=folder", "dataset.mask_pattern='{stem}_mask'"],
        ["--cfg", "job", "trainer.lr=1e-4", "eval.thresholds=[0.2,0.5]"],
        ["trainer.max_epochs=many"],  # a wrong value, not a typo: Hydra says it as it does
        ["+trainer.max_epochs=3"],  # the key exists: Hydra's own message (use ++ or no +)
        ["trainer.max_epochs=1,2"],  # a sweep without -m: Hydra's own message
        ["--help", "activation=arctann"],  # --help, --info and other configs: left to Hydra
        ["--info", "defaults", "activation=arctann"],
        ["-cn", "other", "activation=arctann"],
    ],
)
def test_valid_input_and_other_errors_are_left_to_hydra(argv):
    assert typo(*argv) is None


def _segact_train(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "segact.train", *argv]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "message"), TYPOS, ids=[" ".join(a) for a, _ in TYPOS])
def test_cli_refuses_a_typo_in_one_line_and_writes_nothing(tmp_path, argv, message):
    result = _segact_train(tmp_path, *argv)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"segact: error: {message}")
    assert "To append" not in result.stderr and result.stdout == ""  # Hydra's advice to add +
    assert list(tmp_path.iterdir()) == []  # no outputs/, no multirun/


def test_options_of_an_added_config_search_path_count(tmp_path):
    (tmp_path / "activation").mkdir()
    (tmp_path / "activation" / "log.yaml").write_text("name: log\n")
    search = f"hydra.searchpath=[file://{tmp_path}]"
    assert typo("-m", search, "activation=sigmoid,log") is None
    assert "did you mean log?" in str(typo("-m", search, "activation=sigmoid,lgo"))


def test_the_primary_config_adds_no_search_path():
    """The typo check lists config groups without reading config.yaml's hydra.searchpath."""
    primary = OmegaConf.load(config_dir() / "config.yaml")
    assert OmegaConf.select(primary, "hydra.searchpath") is None
