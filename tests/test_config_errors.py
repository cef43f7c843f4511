"""Every bad config fails with one clear error that names the key, before any training."""

import pytest
import torch
from hydra.errors import ConfigCompositionException

from segact.config import ConfigError, validate, validate_against_data
from segact.runs.folder import RunFolder
from tests.helpers import segact_train

BAD = [
    (("loss=ce",), "'loss'.*softmax2"),
    (("head=softmax2",), "'activation'.*softmax2"),
    (("head=softmax2", "activation=arctan"), "'activation'.*softmax2"),
    (("activation=softmax",), "'activation'.*softmax2"),
    (("activation.name=tanhh",), "'activation'.*unknown activation"),
    (("activation=custom", "activation._target_=nowhere.fn"), "activation._target_"),
    (("loss._target_=segact.nn.losses.Nope",), "loss._target_"),
    (("model.arch=UNetXL",), "model.arch"),
    (("model.encoder=resnet999",), "model.encoder"),
    (("eval.thresholds=[0.2,1.5]",), "eval.thresholds.*\\[0, 1\\]"),
    (("eval.thresholds=[-0.1,0.5]",), "eval.thresholds.*\\[0, 1\\]"),
    (("eval.thresholds=[0.5,0.2]",), "eval.thresholds.*increasing"),
    (("eval.thresholds=[]",), "eval.thresholds"),
    (("trainer.folds=1",), "trainer.folds"),
    (("trainer.batch_size=0",), "trainer.batch_size"),
    (("trainer.max_epochs=0",), "trainer.max_epochs"),
    (("trainer.lr=0",), "trainer.lr"),
    (("trainer.fold=2",), "trainer.fold"),
    (("trainer.device=tpu",), "trainer.device"),
    (
        ("+trainer.epochs=3",),
        "'trainer.epochs' = 3: trainer has no such setting; did you mean trainer.max_epochs\\?",
    ),
    (("+loss.gama=2",), "'loss.gama'.*the settings of loss are binarize, eps"),
]
if not torch.cuda.is_available():
    BAD.append((("trainer.device=cuda",), "trainer.device.*no CUDA"))


@pytest.mark.parametrize(("overrides", "message"), BAD)
def test_validation_errors_name_the_key(make_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_cfg(*overrides))


def test_more_folds_than_cases(make_cfg):
    cfg = make_cfg("trainer.folds=13")
    validate(cfg)
    with pytest.raises(ConfigError, match=r"trainer.folds.*only 12 cases"):
        validate_against_data(cfg, n_cases=12)
    with pytest.raises(ConfigError, match=r"at least 2 cases"):
        validate_against_data(cfg, n_cases=1)


@pytest.mark.parametrize(
    "override",
    [
        "trainer.batch_size=many",
        "trainer.batchsize=4",
        "trainer.precision=fp8",
        "eval.protocol=best",
        "eval.select_metric=accuracy",
        "loss.binarize=soft",
        "loss.smoothing=1",
        "head.name=softmax3",
        "runtime.progres=false",
        "dataset.n_imagez=3",
    ],
)
def test_schema_rejects_bad_values_while_composing(make_cfg, override):
    key = override.split("=")[0]
    with pytest.raises(ConfigCompositionException, match=key.split(".")[-1]):
        make_cfg(override)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (("loss=ce",), "'loss'"),
        (("trainer.folds=500", "dataset.n_images=10"), "'trainer.folds'"),
        (("eval.thresholds=[0.7,0.3]",), "'eval.thresholds'"),
        (("dataset.image_size=0",), "dataset.image_size"),
    ],
)
def test_cli_exits_non_zero_with_one_line_before_training(tmp_path, overrides, key):
    result = segact_train(f"hydra.run.dir={tmp_path}", *overrides, check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("segact: error:")]
    assert len(errors) == 1 and key in errors[0]
    assert "Traceback" not in result.stderr
    assert not (RunFolder(tmp_path).epochs_csv).exists()


@pytest.mark.slow
def test_cli_unknown_group_option_lists_choices(tmp_path):
    result = segact_train(f"hydra.run.dir={tmp_path}", "activation=tanhh", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("segact: error: config group 'activation' has no option")
    assert "(options: arctan, custom, hardtanh" in result.stderr


@pytest.mark.slow
def test_help_names_the_tool_and_lists_only_real_choices():
    result = segact_train("--help", check=False)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("segact-train:")
    assert "powered by Hydra" not in result.stdout and "schema" not in result.stdout
    assert "activation: arctan, custom, hardtanh" in result.stdout
    assert "experiment=sigmoid_vs_arctan" in result.stdout
    combination = lines.index(next(line for line in lines if line.startswith("combination:")))
    assert "two choices in one value" in lines[combination + 1]  # explained, not just listed
