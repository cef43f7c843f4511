"""``segact-train``: compose the config (Hydra), run it, and say how it went.

One job is one run (``segact.runs.runner``); a multirun's end is ``segact.report.sweep_callback``.
Bad input is one line and exit 2, and leaves no run folder behind: a mistyped key, config group
or option is refused before Hydra composes anything (``check_overrides``), a single run's bad
config or data before it computes anything. Ctrl-C saves a checkpoint and exits 130.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra import initialize_config_dir
from hydra.core.config_loader import ConfigLoader
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException, OverrideParseException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from segact.config import ConfigError, check_known_keys, closest, config_dir, unknown_key
from segact.data.pairs import hydra_override, shell_word
from segact.hydra_private import apply_overrides, args_parser
from segact.io import describe, naming
from segact.report.tables import dice_table, format_table
from segact.runs import schema
from segact.runs.folder import RunFolder, read_result_csv, summary_mean, unusable_root
from segact.runs.identity import segment
from segact.runs.registration import register
from segact.runs.runner import refused_folder, run
from segact.training.interrupt import Interrupted, warned_before_training

log = logging.getLogger("segact")

# The entry point registers (plugins, resolvers, schemas) as it is imported: joblib's and
# submitit's workers import this module to unpickle the job's function, then compose the job's
# config, before any function of segact's runs there.
register()


SEGMENT_KEYS = (
    "experiment_name", "dataset.name", "model.arch", "model.encoder", "head.name",
    "activation.name", "loss.name", "loss.binarize",
)  # fmt: skip
"""Keys whose values name folders of a run's path (configs/config.yaml ``hydra.sweep``)."""
PROBE_BYTES = 256 * 1024
"""What the folder check writes (and removes): a disk that cannot take it is one line before
Hydra writes its .hydra/ files and job log there, which would fail with Hydra's traceback."""
MADE_FOR_RUN: list[Path] = []
"""The folders ``RunDirGuard`` created (absolute, outermost first): a refused run removes them."""
HIDDEN_GROUPS = frozenset({"hydra", "schema"})
"""Config groups that are no choice of a run (Hydra's own, segact's schemas)."""


def _refuse(message: str) -> None:
    print(f"segact: error: {message}", file=sys.stderr)
    sys.exit(2)


def _refuse_os(error: OSError) -> None:
    """One line naming the file and the cause; the run is not recorded as finished, and the
    same command resumes once the cause is fixed."""
    print(
        f"segact: error: {describe(error)}; fix it and run the same command again to resume",
        file=sys.stderr,
    )
    sys.exit(1)


class RunDirGuard(Callback):
    """Before Hydra creates any folder: the run or sweep folder must not be ``/`` or a home
    directory, and the values that name a run's folders must be plain folder names (in a
    multirun those of the command line and ``hydra.sweeper.params`` are checked here, the rest
    as each job starts)."""

    def on_run_start(self, config: DictConfig, **kwargs: object) -> None:
        HydraConfig.instance().set_config(config)  # as run_job does next: ${hydra:...} resolves
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        overrides = _sweep_overrides(config)
        for override in overrides:
            key = override.get_key_element().lstrip("+~")
            if key in SEGMENT_KEYS and not override.is_delete():
                sweep = override.is_sweep_override()
                for value in override.sweep_string_iterator() if sweep else [override.value()]:
                    segment(key, value)
        existed = Path(config.hydra.sweep.dir).is_dir()
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")
        if existed:  # a folder made now holds nothing of anyone's
            _refuse_foreign_run_folders(config, _job_overrides(overrides))

    @staticmethod
    def _check(folder: str, key: str) -> None:
        why = unusable_root(Path(folder))
        if why is not None:
            _refuse(f"{key} = {folder!r} {why}; choose a folder of its own for segact's runs")
        refused = refused_folder(Path(folder)) if key == "hydra.run.dir" else None
        if refused is not None:  # before Hydra writes its .hydra/ and job log there
            _refuse(refused)
        try:  # Hydra's log file goes there next: a traceback of its own if it cannot
            with naming(Path(folder)):
                path = Path(os.path.abspath(folder))
                MADE_FOR_RUN.extend(p for p in [*reversed(path.parents), path] if not p.exists())
                path.mkdir(parents=True, exist_ok=True)
            probe = Path(folder) / f".segact-probe-{os.getpid()}.tmp"
            try:
                with naming(probe):
                    probe.write_bytes(bytes(PROBE_BYTES))  # room for Hydra's own files at least
            finally:
                probe.unlink(missing_ok=True)
        except OSError as error:
            if key == "hydra.run.dir":
                remove_refused_run(Path(folder))  # the folders made for it, empty again
            _refuse_os(error)


def _sweep_overrides(config: DictConfig) -> list[Override]:
    """The multirun's overrides, parsed once: ``hydra.sweeper.params`` first, then the command
    line's, as Hydra's basic sweeper takes them."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [*(f"{k}={v}" for k, v in params.items()), *config.hydra.overrides.task]
    return OverridesParser.create().parse_overrides(arguments)


def _job_overrides(overrides: list[Override]) -> list[list[str]]:
    """Each job's overrides, as Hydra's basic sweeper makes them (the cartesian product of the
    swept values)."""
    choices = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [f"{o.get_key_element()}={o.get_value_element_as_str()}"]
        for o in overrides
    ]
    return [list(job) for job in itertools.product(*choices)]


def _refuse_foreign_run_folders(config: DictConfig, jobs: list[list[str]]) -> None:
    """In a multirun Hydra writes each job's .hydra/ and log before segact sees the job: a run
    folder that holds someone else's files is refused here, before the first job starts (issue
    30, item 12). Only for a sweep folder that existed: composing every job costs ~0.1 s each."""
    loader = GlobalHydra.instance().config_loader()
    hydra_config = HydraConfig.instance()
    try:
        for overrides in jobs:
            job = loader.load_sweep_config(config, overrides)
            hydra_config.set_config(job)  # ${hydra:...} in the subdir resolves to this job's
            refused = refused_folder(Path(job.hydra.sweep.dir) / job.hydra.sweep.subdir)
            if refused is not None:
                _refuse(refused)
    finally:
        hydra_config.set_config(config)


def remove_refused_run(run_dir: Path) -> None:
    """A single run refused for bad config or data leaves no folder behind: in a folder made
    for it by this process, what Hydra wrote (``.hydra/``, the job log) is removed, and so are
    the folders made for it, each where nothing else is in it."""
    if Path(os.path.abspath(run_dir)) not in MADE_FOR_RUN:
        return  # the folder was there before: it stays as it was
    hydra_dir = run_dir / ".hydra"
    for path in [*hydra_dir.glob("*.yaml"), *run_dir.glob("*.log")]:
        path.unlink(missing_ok=True)
    try:
        if hydra_dir.is_dir():
            hydra_dir.rmdir()
        for folder in reversed(MADE_FOR_RUN):
            folder.rmdir()
    except OSError:  # something else is in it: it stays
        return


def _label(run_dir: Path) -> str:
    """The run folder relative to its sweep folder (multirun) or its outputs/ folder."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return os.path.relpath(run_dir, hydra_cfg.sweep.dir)
    return hydra_cfg.sweep.subdir if hydra_cfg.sweep.subdir else run_dir.name


def log_finished(run_dir: Path, summary: dict) -> None:
    """A finished run's Dice table and notes."""
    if summary.get("status") != "ok":
        return
    folds = read_result_csv(RunFolder(run_dir).folds_csv)
    log.info("%s\n%s", _label(run_dir), format_table(dice_table(folds)))  # its short form
    for note in summary.get("notes", []):
        log.warning("NOTE: %s", note)


# --- the settings that differ from the defaults, at a run's start ----------------------------

MAX_VALUE_CHARS = 60
"""A longer value (a threshold grid, a list of case starts) is cut there, with '...'."""


@functools.cache
def _default_choices(loader: ConfigLoader) -> dict[str, str | None]:
    """The config groups' options when nothing is overridden (configs/config.yaml)."""
    cfg = loader.load_configuration("config", [], RunMode.RUN)
    return dict(cfg.hydra.runtime.choices)


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of a resolved config container (lists are leaves)."""
    if not isinstance(node, dict):
        return {prefix: node}
    found: dict[str, Any] = {}
    for key, value in node.items():
        found |= _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    return found


def _shown(value: Any) -> str:
    """A value as an override writes it (``null``, ``true``), cut at ``MAX_VALUE_CHARS``."""
    text = str(value)
    if value is None or isinstance(value, bool):
        text = "null" if value is None else text.lower()
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def non_default_settings(cfg: DictConfig) -> list[str]:
    """``group=option (default X)`` for each config group whose option is not the default, then
    ``key=value (default X)`` for each resolved setting that differs from the defaults of the
    groups the run composed (what the command line and an experiment file changed)."""
    loader = GlobalHydra.instance().config_loader()
    defaults = _default_choices(loader)
    choices = {  # Hydra lists them last group first
        group: option
        for group, option in reversed(HydraConfig.get().runtime.choices.items())
        if not group.startswith("hydra/") and option is not None
    }
    lines = [
        f"{group}={option} (default {_shown(defaults.get(group))})"
        for group, option in choices.items()
        if option != defaults.get(group)
    ]
    groups = [f"{'' if g in defaults else '+'}{g}={o}" for g, o in choices.items()]
    reference = loader.load_configuration("config", groups, RunMode.RUN)
    with open_dict(reference):
        del reference["hydra"]
    resolve = {"resolve": True, "throw_on_missing": False}
    before = _leaves(OmegaConf.to_container(reference, **resolve))
    after = _leaves(OmegaConf.to_container(cfg, **resolve))
    for key, value in after.items():
        if key not in before:
            lines.append(f"{key}={_shown(value)} (not in the defaults)")
        elif value != before[key]:
            lines.append(f"{key}={_shown(value)} (default {_shown(before[key])})")
    lines += [f"~{key} (default {_shown(before[key])})" for key in before if key not in after]
    return lines


def log_settings(cfg: DictConfig) -> None:
    """The run's settings that differ from the defaults, as one block; a settings file that
    cannot be composed again (never expected) is left unsaid rather than stop the run."""
    try:
        lines = non_default_settings(cfg)
    except Exception as error:  # a printout never stops a run
        log.debug("settings not compared with the defaults: %s", error)
        return
    if lines:
        log.info("settings other than the defaults:\n  %s", "\n  ".join(lines))
    else:
        log.info("settings: the defaults")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """One job: its run, then its Dice table."""
    logging.raiseExceptions = False  # a log line lost on a full disk: no traceback per line
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    log_settings(cfg)
    try:
        with warned_before_training():
            summary = run(cfg, run_dir, _label(run_dir), raise_errors=not multirun)
    except ConfigError as error:  # a single run's: nothing was computed
        remove_refused_run(run_dir)
        _refuse(str(error))
    except (Interrupted, KeyboardInterrupt):
        print("segact: interrupted; run the same command to resume", file=sys.stderr)
        sys.exit(130)
    except OSError as error:  # disk full, read-only, permission denied: nothing is finished
        _refuse_os(error)
    log_finished(run_dir, summary)
    return summary_mean(summary, schema.THRESHOLD_AVERAGED_DICE)


# --- mistyped overrides, before Hydra ------------------------------------------------------


def _overrides_to_check(argv: list[str]) -> list[str] | None:
    """The overrides of a command that composes the run's config (a run, a multirun, --cfg);
    None for the others (--help, --info, another config) and for what Hydra's parser refuses."""
    if "--version" in argv:
        return None
    parser = args_parser()

    def refuse(message: str) -> None:
        raise ValueError(message)

    parser.error = refuse  # type: ignore[method-assign]  # Hydra says it in its own words
    try:
        args, _ = parser.parse_known_args(argv)
    except (ValueError, SystemExit):
        return None
    other = (args.config_path, args.config_name, args.config_dir, args.info)
    if args.help or args.hydra_help or args.shell_completion or any(o is not None for o in other):
        return None
    return list(args.overrides)


class _Groups:
    """The config groups as the command line's ``hydra.searchpath`` makes them, through Hydra's
    public ``ConfigLoader``, each listing asked once. No primary config is read for its search
    path (``config_name`` None: reading it is most of a listing's time), since
    configs/config.yaml sets none (tests/test_cli_typos.py checks it)."""

    def __init__(self, loader: ConfigLoader, overrides: list[str]) -> None:
        self.loader, self.overrides = loader, overrides
        self._cache: dict[tuple[str, ObjectType], list[str]] = {}

    def _listed(self, parent: str, kind: ObjectType) -> list[str]:
        if (parent, kind) not in self._cache:
            listed = self.loader.get_group_options(parent, kind, None, self.overrides)
            self._cache[parent, kind] = listed
        return self._cache[parent, kind]

    def options(self, group: str) -> list[str]:
        return self._listed(group, ObjectType.CONFIG)

    def exists(self, group: str) -> bool:
        parent, _, name = group.rpartition("/")
        return name in self._listed(parent, ObjectType.GROUP)


def _option_typo(groups: _Groups, override: Override) -> str | None:
    """Each option a config group override names must be one of the group's."""
    group = override.key_or_group
    if override.is_delete() or isinstance(override.value(), dict):
        return None
    if override.is_sweep_override():
        values: list[object] = list(override.sweep_string_iterator())
    else:
        value = override.value()
        values = value if isinstance(value, list) else [value]
    options = groups.options(group)
    for value in values:
        if value is None or str(value) in ("null", *options) or "/" in str(value):
            continue
        close = closest(str(value), options)
        hint = f": did you mean {close}?" if close is not None else ""
        return (
            f"config group '{group}' has no option '{value}'{hint} (options: {', '.join(options)})"
        )
    return None


def _key_typo(loader: ConfigLoader, cfg: DictConfig, override: Override) -> str | None:
    """An override Hydra cannot apply: its key is missing (a mistyped key or group name), or
    None (another kind of error, Hydra's to report)."""
    key = override.key_or_group
    groups = sorted(set(loader.list_groups("")) - HIDDEN_GROUPS)
    if "." not in key and (override.package is not None or not override.is_add()):
        close = closest(key, [*groups, *(str(k) for k in cfg)])
        if close in groups or override.package is not None:
            hint = f": did you mean {close}?" if close in groups else ""
            return f"no config group '{key}'{hint} (groups: {', '.join(groups)})"
    if override.package is not None:
        return None
    return unknown_key(cfg, key, override.value(), shown=not override.is_delete())


def _path(override: Override) -> bool:
    """An override of where Hydra looks for configs: composed with the groups."""
    return override.key_or_group.startswith("hydra.searchpath")


def _concrete(parser: OverridesParser, override: Override) -> Override:
    """A sweep as its first value (what the first job of a multirun gets)."""
    if not override.is_sweep_override():
        return override
    first = next(iter(override.sweep_string_iterator()))
    return parser.parse_override(f"{override.get_key_element()}={first}")


MAX_VARIANTS = 16
"""Compositions the typo check tries at most: the first job, then each further option of a
swept group in turn (``loss=dice,bce loss.smooth=1``: smooth is a Dice setting, not BCE's)."""


GLOBAL_GROUPS = frozenset({"experiment", "combination"})
"""Groups whose options set keys anywhere in the config (``# @package _global_``)."""


def _variants(
    parser: OverridesParser, overrides: list[Override], is_group: list[bool]
) -> list[tuple[list[Override], str]]:
    """The first job's overrides, then one variant per further option of each swept group that
    a value override reaches into, each with the option that makes it (empty for the first)."""
    first = [_concrete(parser, o) for o in overrides]
    variants: list[tuple[list[Override], str]] = [(first, "")]
    keys = {o.key_or_group for o, g in zip(overrides, is_group, strict=True) if not g}
    for index, (override, group) in enumerate(zip(overrides, is_group, strict=True)):
        name = override.key_or_group
        touched = any(k.split(".")[0] == name or name in GLOBAL_GROUPS for k in keys)
        if not (group and override.is_sweep_override() and touched):
            continue
        for value in list(override.sweep_string_iterator())[1:]:
            choice = parser.parse_override(f"{override.get_key_element()}={value}")
            variants.append(([*first[:index], choice, *first[index + 1 :]], choice.input_line))
    return variants[:MAX_VARIANTS]


def _composition_typo(
    loader: ConfigLoader, concrete: list[Override], is_group: list[bool]
) -> str | None:
    """Compose the groups, then apply each value override: the first that names no key."""
    first = [g or _path(o) for o, g in zip(concrete, is_group, strict=True)]  # then the values
    choices = [o.input_line for o, f in zip(concrete, first, strict=True) if f]
    cfg = loader.load_configuration("config", choices, RunMode.RUN)
    for override in (o for o, f in zip(concrete, first, strict=True) if not f):
        try:
            apply_overrides([override], cfg)
        except ConfigCompositionException:
            return _key_typo(loader, cfg, override)
    try:
        check_known_keys(cfg)
    except ConfigError as error:
        return str(error)
    return None


def _typo(loader: ConfigLoader, argv_overrides: list[str]) -> str | None:
    """The first mistyped override, as one line naming the closest existing name; None when
    every key, group and option exists (or a check cannot tell: Hydra decides)."""
    parser = OverridesParser.create(config_loader=loader)
    overrides = parser.parse_overrides(argv_overrides)
    searchpath = [o.input_line for o in overrides if o.get_key_element() == "hydra.searchpath"]
    groups = _Groups(loader, searchpath)  # the only override that changes where groups are
    is_group = [groups.exists(o.key_or_group) for o in overrides]  # hydra.searchpath's too
    for override, group in zip(overrides, is_group, strict=True):
        message = _option_typo(groups, override) if group else None
        if message is not None:
            return message
    if any(o.is_sweep_override() and not o.is_discrete_sweep() for o in overrides):
        return None  # no first job to compose: Hydra decides
    for concrete, made_by in _variants(parser, overrides, is_group):
        message = _composition_typo(loader, concrete, is_group)
        if message is not None:
            return f"{message} (in the jobs with {made_by})" if made_by else message
    return None


def _parses(parser: OverridesParser, line: str) -> bool:
    try:
        parser.parse_overrides([line])
    except OverrideParseException:
        return False
    return True


def _unparsed(overrides: list[str]) -> str | None:
    """The first override Hydra's grammar refuses, as one line with Hydra's reason and, where
    quoting its value makes it parse, the quoted form (``"dataset.mask_pattern='{stem}_mask'"``);
    None if every override parses (or quoting mends none: Hydra reports it)."""
    parser = OverridesParser.create()
    for line in overrides:
        try:
            parser.parse_overrides([line])
        except OverrideParseException as error:  # its message: Hydra's reason, then a link
            key, equals, value = line.partition("=")
            quoted = hydra_override(key, value)
            if not equals or not _parses(parser, quoted):
                return None
            reason = str(error.message).splitlines()[0]
            return f"cannot read {line!r} ({reason}): quote its value, {shell_word(quoted)}"
    return None


def check_overrides(argv: list[str]) -> None:
    """Refuse a mistyped override (a key, config group or group option that does not exist)
    with one line naming the closest existing one, and an unquoted value Hydra cannot read with
    its quoted form, exit 2, before Hydra composes the config or writes anything. Valid input,
    and errors of another kind, are left to Hydra as they are."""
    overrides = _overrides_to_check(argv)
    if not overrides:
        return
    unparsed = _unparsed(overrides)
    if unparsed is not None:
        _refuse(unparsed)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            message = _typo(GlobalHydra.instance().config_loader(), overrides)
    except Exception:  # e.g. an override Hydra cannot parse: Hydra reports it as it does
        return
    if message is not None:
        _refuse(message)


def main() -> None:
    """``segact-train``: mistyped overrides refused, then Hydra's main (``hydra_main``)."""
    check_overrides(sys.argv[1:])
    hydra_main()


if __name__ == "__main__":  # python -m segact.train: the module Hydra's callbacks import, once
    from segact.train import main as module_main

    module_main()
