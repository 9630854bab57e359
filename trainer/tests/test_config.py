"""Configuration: the shipped file, overrides, type and value checks, path resolution."""

from __future__ import annotations

import pytest
from touchstone.trainer.config import (
    TrainerConfig,
    build_config,
    load_config,
    resolve_config_path,
)
from touchstone.trainer.errors import UsageError


def test_default_toml_holds_exactly_the_built_in_defaults(trainer_dir):
    assert load_config(trainer_dir / "configs" / "default.toml") == TrainerConfig()


def test_relative_config_path_falls_back_to_the_trainer_folder(tmp_path, trainer_dir):
    found = resolve_config_path("configs/default.toml", cwd=tmp_path)
    assert found.resolve() == (trainer_dir / "configs" / "default.toml").resolve()
    local = tmp_path / "configs" / "default.toml"
    local.parent.mkdir()
    local.write_text("seed = 1\n")
    assert resolve_config_path("configs/default.toml", cwd=tmp_path) == local  # cwd first
    with pytest.raises(UsageError, match="config file not found"):
        resolve_config_path("configs/nope.toml", cwd=tmp_path)


def test_overrides_are_read_as_toml_literals_of_the_key_type():
    config = build_config(
        {},
        [
            "seed=7",
            "model.logistic.C=2",  # an int where a float is expected
            "model.kind=hist_gradient_boosting",  # bare word -> string
            "model.hist_gradient_boosting.early_stopping=true",
            "data.start=2023-02-01T00:00:00Z",  # a TOML date-time, kept as text
            "labels.threshold = 0.002",
        ],
    )
    assert config.seed == 7
    assert config.model.logistic.C == 2.0 and isinstance(config.model.logistic.C, float)
    assert config.model.kind == "hist_gradient_boosting"
    assert config.model.hist_gradient_boosting.early_stopping is True
    assert config.data.start == "2023-02-01T00:00:00Z"
    assert config.labels.threshold == 0.002


def test_file_values_merge_over_defaults():
    config = build_config({"split": {"test_fraction": 0.3}, "model": {"logistic": {"C": 5}}}, [])
    assert config.split.test_fraction == 0.3
    assert config.model.logistic.C == 5.0
    assert config.model.logistic.max_iter == TrainerConfig().model.logistic.max_iter


@pytest.mark.parametrize(
    ("raw", "overrides", "message"),
    [
        ({}, ["model.depth=3"], "unknown config key 'model.depth'"),
        ({}, ["nope=1"], "unknown config key 'nope'"),
        ({}, ["seed.x=1"], "unknown config key 'seed.x'"),
        ({"labels": {"treshold": 0.1}}, [], "unknown config key 'labels.treshold'"),
        ({}, ["model=1"], "is a table"),
        ({}, ["seed"], "not of the form"),
        ({}, ["seed=abc"], "'seed' must be int"),
        ({}, ["seed=1.5"], "'seed' must be int"),
        ({}, ["model.hist_gradient_boosting.early_stopping=1"], "must be bool"),
        ({}, ["split.test_fraction=1.5"], "split.test_fraction must be in"),
        ({}, ["model.kind=forest"], "model.kind must be one of"),
        ({}, ["data.source=csv"], "data.csv_path is required"),
        ({"data": 3}, [], "must be a table"),
    ],
)
def test_bad_keys_types_and_values_are_usage_errors(raw, overrides, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build_config(raw, overrides)


def test_invalid_toml_file_is_a_usage_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("seed = = 3\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_config(path)
