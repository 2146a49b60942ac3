"""Model folders that ship their own Python code are refused, never run.

A Hugging Face folder can name classes from its own ``.py`` files in the ``auto_map`` of a config
(``config.json``, ``tokenizer_config.json``, ``preprocessor_config.json``). ``transformers`` imports
that code when ``trust_remote_code=True``, and when the argument is left out it *asks on the
terminal* ("Do you wish to run the custom code? [y/N]"), so one keystroke runs whatever the folder
holds. This project therefore passes ``trust_remote_code=False`` to every ``transformers`` /
``diffusers`` loader, and the folder checks (:func:`model.backbone.validate_wan_folder`,
:func:`model.depth.check_model_folder`) refuse a folder whose configs carry an ``auto_map`` before
any loader runs, with a message that names the file and the classes.
"""

from __future__ import annotations

from pathlib import Path


def custom_code_problem(config_path: Path, config: dict) -> str | None:
    """Why ``config`` (parsed from ``config_path``) cannot be loaded safely, or None.

    Returns:
        One line naming ``config_path`` and every class its ``auto_map`` points to, e.g.
        ``".../tokenizer_config.json: ships custom code (auto_map: my_tok.MyTokenizer); ..."``, or
        None when the config has no ``auto_map``.
    """
    auto_map = config.get("auto_map")
    if not auto_map:
        return None
    values = auto_map.values() if isinstance(auto_map, dict) else [auto_map]
    targets: list[str] = []
    for value in values:  # a class reference, or [slow, fast] for tokenizers (either may be null)
        for target in value if isinstance(value, list) else [value]:
            if target and str(target) not in targets:
                targets.append(str(target))
    listing = ", ".join(targets) or repr(auto_map)
    return (
        f"{config_path}: ships custom code (auto_map: {listing}); code from a model folder is never run "
        "(trust_remote_code=False): use a folder saved with the library's own classes"
    )
