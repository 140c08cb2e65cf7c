"""``python -m harness [overrides]`` (or ``loss-harness``): one training run (or a sweep with ``-m``) from the Hydra
config tree: ``harness/conf`` in an installed package, ``conf/`` at the top of a source checkout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig


def _conf_dir() -> str:
    here = Path(__file__).resolve().parent
    packaged = here / "conf"  # a wheel ships conf/ as harness/conf
    return str(packaged if (packaged / "config.yaml").is_file() else here.parent / "conf")


CONF_DIR = _conf_dir()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    from .run import main_job

    return main_job(cfg)


def _keys_of(parent: str) -> list[str] | None:
    """Keys under the dotted ``parent`` of the config composed with the command line's group choices only (for
    suggestions when a key is misspelt)."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from omegaconf import OmegaConf

    args, _ = get_args_parser().parse_known_args()
    groups = [
        o for o in args.overrides
        if "=" in o and "." not in o.split("=")[0] and not o.startswith(("+", "~")) and not any(c in o for c in ",(")
    ]
    if args.config_dir:
        groups.append(f"hydra.searchpath=[file://{Path(args.config_dir).resolve()}]")
    try:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            node = OmegaConf.select(compose("config", overrides=groups), parent) if parent else compose("config", overrides=groups)
    except Exception:  # noqa: BLE001 - no suggestions then
        return None
    return [str(k) for k in node.keys()] if node is not None and OmegaConf.is_dict(node) else None


def shadowed(config_dir: str | Path) -> list[str]:
    """The ``group/option.yaml`` files of a user's ``--config-dir`` that have the name of a built-in option: Hydra
    composes the built-in one for them, so the user's would be ignored without a word."""
    root = Path(config_dir)
    if not root.is_dir():
        return []
    return sorted(
        str(path.relative_to(root)) for path in root.glob("*/*.yaml") if (Path(CONF_DIR) / path.relative_to(root)).is_file()
    )


def _warn_shadowed() -> None:
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args()
    for name in shadowed(args.config_dir) if args.config_dir else []:
        group, option = name.split("/")[0], Path(name).stem
        print(
            f"warning: --config-dir {args.config_dir}: {name} has the name of a built-in option, and Hydra uses the "
            f"built-in one; rename yours (e.g. {group}/my_{option}.yaml)",
            file=sys.stderr,
            flush=True,
        )


def _register_plugins() -> None:
    """Make the harness's own Hydra plugins known even where Hydra's scan of ``hydra_plugins`` cannot list them (an
    editable install's import hook)."""
    from hydra.core.plugins import Plugins
    from hydra_plugins.harness_launcher.launcher import HarnessLauncher
    from hydra_plugins.harness_optuna_sweeper.optuna_sweeper import OptunaSweeper

    Plugins.instance().register(OptunaSweeper)
    Plugins.instance().register(HarnessLauncher)


def main() -> None:
    """Hydra's main, except that a config Hydra cannot compose (an unknown option or key) is one line naming the
    closest valid names, with exit status 2, and that options of a ``--config-dir`` that built-in ones shadow are
    named in a warning. ``HYDRA_FULL_ERROR=1`` keeps Hydra's own report."""
    _warn_shadowed()
    _register_plugins()
    user_full = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let composition errors reach us instead of Hydra's exit(1)
    try:
        _hydra_main()
    except Exception as err:
        from .cli_errors import describe

        message = None if user_full else describe(err, _keys_of)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)
    finally:
        if user_full is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)


if __name__ == "__main__":
    main()
