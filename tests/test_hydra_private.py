"""The private Hydra calls segact wraps (``segact.hydra_private``) still exist, take what segact
passes them and behave as segact relies on: a Hydra release that changes one fails here."""

from __future__ import annotations

import inspect

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from segact.hydra_private import apply_overrides, args_parser


def test_the_wrapped_symbols_have_the_signatures_used():
    assert list(inspect.signature(get_args_parser).parameters) == []
    applied = inspect.signature(ConfigLoaderImpl._apply_overrides_to_config)
    assert list(applied.parameters) == ["overrides", "cfg"]
    assert isinstance(inspect.getattr_static(ConfigLoaderImpl, "_apply_overrides_to_config"),
                      staticmethod)  # fmt: skip


def test_hydras_parser_tells_flags_from_overrides():
    """The attributes segact-train reads (train._overrides_to_check)."""
    args, _ = args_parser().parse_known_args(["-m", "loss=dice,bce", "trainer.lr=0.1"])
    assert args.multirun and args.overrides == ["loss=dice,bce", "trainer.lr=0.1"]
    assert not (args.help or args.hydra_help or args.shell_completion)
    assert (args.config_path, args.config_name, args.config_dir, args.info) == (None,) * 4
    shown, _ = args_parser().parse_known_args(["--help", "--info", "config", "-cn", "other"])
    assert shown.help and shown.info == "config" and shown.config_name == "other"


def _cfg():
    cfg = OmegaConf.create({"trainer": {"lr": 0.1, "seed": 0}})
    OmegaConf.set_struct(cfg, True)  # as Hydra composes it
    return cfg


def _parsed(*lines: str):
    return OverridesParser.create().parse_overrides(list(lines))


def test_value_overrides_apply_as_hydras_compose_applies_them():
    cfg = _cfg()
    apply_overrides(_parsed("trainer.lr=0.5", "+trainer.extra=1", "++trainer.seed=3"), cfg)
    assert OmegaConf.to_container(cfg) == {"trainer": {"lr": 0.5, "seed": 3, "extra": 1}}
    apply_overrides(_parsed("~trainer.extra"), cfg)
    assert "extra" not in cfg.trainer


@pytest.mark.parametrize("line", ["trainer.lrr=0.5", "+trainer.lr=0.5", "~trainer.nope"])
def test_an_override_hydra_cannot_apply_is_its_composition_error(line):
    with pytest.raises(ConfigCompositionException):
        apply_overrides(_parsed(line), _cfg())
