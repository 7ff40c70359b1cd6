from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from flexdownscale import errors
from flexdownscale.config import (
    DataConfig,
    DiffusionConfig,
    ModelConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    from_toml,
    to_dict,
)


def test_unknown_key_gets_close_match_hint():
    with pytest.raises(errors.ConfigError, match=r"unknown key 'preest'.*did you mean 'preset'"):
        from_dict(ModelConfig, {"preest": "small"})


def test_unknown_nested_key_names_its_table():
    with pytest.raises(errors.ConfigError, match=r"TrainConfig.optim.*did you mean 'lr'"):
        from_dict(TrainConfig, {"optim": {"lrr": 1e-3}})


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        from_dict(ModelConfig, {"backbone": "resnet"})


@pytest.mark.parametrize(
    ("cls", "values", "match"),
    [
        (ModelConfig, {"backbone": "resnet"}, r"'resnet' is not a valid option.*'flex'"),
        (ModelConfig, {"in_channels": "3"}, r"in_channels must be an integer"),
        (ModelConfig, {"in_channels": True}, r"in_channels must be an integer"),
        (ModelConfig, {"image_size": [128]}, r"must have 2 entries"),
        (ModelConfig, {"physical_condition": 1}, r"must be true or false"),
        (DiffusionConfig, {"shift": "big"}, r"shift must be a number"),
        (DataConfig, {"variables": 3}, r"variables must be a list"),
        (
            DataConfig,
            {"variables": "t2m,u"},
            r'write a list of names: data.variables = \["t2m", "u"\]',
        ),
        (TrainConfig, {"model": 3}, r"must be a table"),
    ],
)
def test_bad_values_are_rejected(cls, values, match):
    with pytest.raises(errors.ConfigError, match=match):
        from_dict(cls, values)


def test_round_trip_through_dict_and_toml(tmp_path):
    cfg = from_dict(
        TrainConfig,
        {
            "model": {
                "backbone": "dit",
                "preset": "small",
                "patch_size": 4,
                "image_size": [96, 160],
            },
            "diffusion": {"objective": "flow", "base": "coarse_plus_noise", "loss_scale": 100},
            "data": {
                "paths": ["a.nc", "b.nc"],
                "variables": ["t2m"],
                "train": ["2019-03-01", "2019-03-17"],
            },
            "steps": 10,
        },
    )
    assert cfg.model.image_size == (96, 160)
    assert cfg.diffusion.loss_scale == 100.0
    assert isinstance(cfg.diffusion.loss_scale, float)
    assert cfg.data.paths == ("a.nc", "b.nc")
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg

    lines = []

    def emit(prefix, table):
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            text = repr(value).replace("'", '"').replace("True", "true").replace("False", "false")
            lines.append(f"{key} = {text}")
        for key, value in table.items():
            if isinstance(value, dict):
                emit(f"{prefix}.{key}" if prefix else key, value)

    emit("", to_dict(cfg))
    path = tmp_path / "run.toml"
    path.write_text("\n".join(lines))
    assert from_toml(TrainConfig, path) == cfg


def test_frozen():
    cfg = ModelConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.preset = "big"


def test_overrides_parse_by_type_and_hint_unknown_keys():
    cfg = TrainConfig()
    new = apply_overrides(
        cfg,
        [
            "optim.lr=3e-4",
            "model.preset=small",
            'data.variables=["u", "v"]',
            "steps=5",
            "logger=none",
        ],
    )
    assert new.optim.lr == pytest.approx(3e-4)
    assert new.model.preset == "small"
    assert new.data.variables == ("u", "v")
    assert new.steps == 5
    assert new.logger == "none"
    assert cfg.optim.lr == pytest.approx(2e-4)  # the original is untouched
    with pytest.raises(errors.ConfigError, match=r"did you mean 'optim'"):
        apply_overrides(cfg, ["optimm.lr=1"])
    with pytest.raises(errors.ConfigError, match=r"key=value"):
        apply_overrides(cfg, ["steps"])
    with pytest.raises(errors.ConfigError, match=r"not a valid option"):
        apply_overrides(cfg, ["model.preset=huge"])


def test_overrides_unset_optional_keys_and_merge_inline_tables():
    """``none`` unsets what may be unset; an inline table changes only the keys it names."""
    cfg = from_dict(
        TrainConfig,
        {
            "micro_batch_size": 4,
            "optim": {"lr": 1e-3, "warmup_steps": 7, "ema_decay": 0.99},
            "data": {"condition": "reynolds_number", "factor": 8, "crop_size": 128},
            "model": {"out_channels": 1},
        },
    )
    new = apply_overrides(
        cfg,
        [
            "micro_batch_size=none",
            "data.condition=null",
            "model.out_channels=none",
            "optim={lr=2e-4,warmup_steps=10}",
            "data={factor=4}",
        ],
    )
    assert new.micro_batch_size is None
    assert new.data.condition is None
    assert new.model.out_channels is None
    assert (new.optim.lr, new.optim.warmup_steps) == (2e-4, 10)
    assert new.optim.ema_decay == 0.99  # kept: not named in the inline table
    assert (new.data.factor, new.data.crop_size) == (4, 128)
    # where None is not a value, "none" stays a word; a quoted "none" is always the string
    assert apply_overrides(cfg, ["logger=none"]).logger == "none"
    assert apply_overrides(cfg, ['data.condition="none"']).data.condition == "none"


def test_missing_or_broken_toml(tmp_path):
    with pytest.raises(errors.ConfigError, match="does not exist"):
        from_toml(TrainConfig, tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3")
    with pytest.raises(errors.ConfigError, match="not valid TOML"):
        from_toml(TrainConfig, bad)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("sampler.eta=3.0", r"sampler\.eta = 3\.0 is out of range; expected \[0, 1\]"),
        ("sampler.eta=-0.5", r"sampler\.eta = -0\.5"),
        ("sampler.eta=nan", r"sampler\.eta = nan"),
        ("sampler.delta=-5", r"sampler\.delta = -5\.0 is out of range; expected >= 0"),
        ("sampler.delta=inf", r"sampler\.delta = inf"),
        ("sampler.g1=-1", r"sampler\.g1 = -1\.0"),
        ("sampler.g2=-0.1", r"sampler\.g2 = -0\.1"),
        (
            "optim.betas=[1.5, 0.999]",
            r"optim\.betas\[0\] = 1\.5 is out of range; expected \[0, 1\)",
        ),
        ("optim.betas=[0.9, -0.1]", r"optim\.betas\[1\] = -0\.1"),
        ("optim.weight_decay=-0.01", r"optim\.weight_decay = -0\.01 .*>= 0"),
        ("optim.grad_clip=-1", r"optim\.grad_clip = -1\.0 .*0 turns clipping off"),
        ("optim.lr=inf", r"optim\.lr = inf"),
        ("optim.ema_decay=1.0", r"optim\.ema_decay = 1\.0"),
    ],
)
def test_optimiser_and_sampler_values_are_checked_at_load(override, match):
    """Refused when the configuration is built, naming the key: torch used to raise its own
    ValueError at the first step (betas, weight decay), Lion took any betas, a negative
    grad_clip turned clipping off silently, and sampler options failed at the first validation."""
    with pytest.raises(errors.ConfigError, match=match):
        apply_overrides(TrainConfig(), [override])
    lion = apply_overrides(TrainConfig(), ["optim.optimizer=lion"])
    if override.startswith("optim.betas"):
        with pytest.raises(errors.ConfigError, match=match):
            apply_overrides(lion, [override])


def test_zero_and_edge_values_that_stay_allowed():
    cfg = apply_overrides(
        TrainConfig(),
        [
            "optim.grad_clip=0",
            "optim.weight_decay=0",
            "optim.betas=[0.0, 0.0]",
            "sampler.eta=1.0",
            "sampler.delta=0.5",
            "sampler.g1=0.5",
            "sampler.g2=1.0",
        ],
    )
    assert cfg.optim.grad_clip == 0.0  # 0: no clipping (documented)
    assert cfg.sampler.eta == 1.0  # ancestral DDIM


# ---------------------------------------------------------------------------------------------
# seed, physical condition, time limit, condition scale, [model] and [diffusion] at load


@pytest.mark.parametrize("seed", [-1, 2**32, 2**63])
def test_a_seed_outside_numpys_range_is_refused_at_load(seed):
    """``seed = -1`` passed the configuration and failed in accelerate's set_seed with a
    ValueError traceback (exit 1)."""
    with pytest.raises(
        errors.ConfigError,
        match=rf"seed = {seed} is out of range; expected an integer in \[0, 4294967295\]",
    ):
        apply_overrides(TrainConfig(), [f"seed={seed}"])


def test_the_ends_of_the_seed_range_are_allowed():
    assert apply_overrides(TrainConfig(), ["seed=0"]).seed == 0
    assert apply_overrides(TrainConfig(), ["seed=4294967295"]).seed == 2**32 - 1


def test_physical_condition_false_against_a_condition_is_refused_naming_both_keys():
    with pytest.raises(
        errors.ConfigError,
        match=r"model\.physical_condition = false but data\.condition = 'Re'.*leave "
        r"model\.physical_condition out",
    ):
        apply_overrides(TrainConfig(), ["data.condition=Re", "model.physical_condition=false"])
    # left out, it follows data.condition (set by training); true needs a condition
    assert apply_overrides(TrainConfig(), ["data.condition=Re"]).model.physical_condition is None
    both = apply_overrides(TrainConfig(), ["data.condition=Re", "model.physical_condition=true"])
    assert both.model.physical_condition is True
    plain = apply_overrides(TrainConfig(), ["model.physical_condition=false"])
    assert plain.model.physical_condition is False
    with pytest.raises(errors.ConfigError, match=r"physical_condition = true but data\.condition"):
        apply_overrides(TrainConfig(), ["model.physical_condition=true"])
    # a model built directly takes no condition by default
    assert not ModelConfig().physical_condition


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (
            "time_limit_minutes=nan",
            r"time_limit_minutes = nan .*finite number >= 0 \(0: no limit\)",
        ),
        ("time_limit_minutes=inf", r"time_limit_minutes = inf .*\(0: no limit\)"),
        ("data.condition_scale=0", r"data\.condition_scale = 0\.0 .*finite non-zero"),
        ("data.condition_scale=nan", r"data\.condition_scale = nan"),
        ("data.condition_scale=inf", r"data\.condition_scale = inf"),
    ],
)
def test_non_finite_limits_and_a_zero_condition_scale_are_refused_at_load(override, match):
    """NaN passed every comparison and meant "no limit" silently; a zero condition_scale was
    refused only when the data loaded, with a bare name."""
    with pytest.raises(errors.ConfigError, match=match):
        apply_overrides(TrainConfig(), [override])


#: [model] / [diffusion] settings the builders refuse, and settings next to them they take.
BUILD_CASES = [
    ({"model": {"dropout": 1.5}}, r"model\.dropout = 1\.5"),
    ({"model": {"dropout": -1.0}}, r"model\.dropout = -1\.0"),
    ({"model": {"dropout": 0.0}}, None),
    ({"model": {"in_channels": 0}}, r"model\.in_channels = 0"),
    ({"model": {"out_channels": 0}}, r"model\.out_channels = 0"),
    ({"model": {"task": "forecast", "past_frames": 0}}, r"model\.past_frames = 0"),
    ({"model": {"image_size": [0, -5]}}, r"model\.image_size = \[0, -5\]"),
    ({"model": {"image_size": [48, 24]}}, r"model\.image_size"),
    ({"model": {"image_size": [48, 32]}}, None),
    ({"model": {"backbone": "uvit", "patch_size": 0}}, r"model\.patch_size = 0"),
    ({"model": {"backbone": "dit", "patch_size": 3}}, r"model\.patch_size = 3 .*dit"),
    ({"model": {"backbone": "uvit", "patch_size": 4}}, None),
    ({"model": {"backbone": "flex", "patch_size": 3}}, None),  # FLEX has no patches
    ({"diffusion": {"shift": 0.0}}, r"diffusion\.shift = 0\.0"),
    ({"diffusion": {"shift": -1.0}}, r"diffusion\.shift = -1\.0"),
    ({"diffusion": {"logsnr_min": 30.0}}, r"diffusion\.logsnr_min = 30\.0 must be below"),
    ({"diffusion": {"loss_scale": 0.0}}, r"diffusion\.loss_scale = 0\.0"),
    ({"diffusion": {"loss_scale": float("inf")}}, r"diffusion\.loss_scale = inf"),
    ({"diffusion": {"objective": "flow", "t_min": 2.0}}, r"diffusion\.t_min = 2\.0"),
    ({"diffusion": {"objective": "flow", "t_max": 0.0}}, r"diffusion\.t_max = 0\.0"),
    ({"diffusion": {"objective": "flow", "t_min": 0.0, "t_max": 1.0}}, None),
    ({"diffusion": {"t_min": 2.0}}, None),  # vp has no time interval
    (
        {"diffusion": {"objective": "flow", "base": "coarse_plus_noise", "base_sigma": -1.0}},
        r"diffusion\.base_sigma = -1\.0",
    ),
    ({"diffusion": {"objective": "flow", "base_sigma": -1.0}}, None),  # gaussian base
    ({"diffusion": {"objective": "idff", "idff_sigma": -1.0}}, r"diffusion\.idff_sigma = -1\.0"),
    ({"diffusion": {"objective": "idff", "idff_c": 0.0}}, r"diffusion\.idff_c = 0\.0"),
    ({"diffusion": {"objective": "idff", "t_min": 0.0}}, r"diffusion\.t_min = 0\.0.*idff"),
    ({"diffusion": {"objective": "vp", "idff_sigma": -1.0}}, None),
]


@pytest.mark.parametrize(("values", "match"), BUILD_CASES)
def test_model_and_diffusion_values_are_checked_at_load_as_the_builders_do(values, match):
    """Refused when the configuration loads, naming ``section.key`` (the builders refused them
    with bare names once the data had loaded); the configuration refuses exactly what the model
    and objective builders refuse."""
    from flexdownscale.diffusion import build_objective
    from flexdownscale.models import build_model

    section = next(iter(values))
    base = {"model": {"preset": "tiny"}}
    merged = {**base, section: {**base.get(section, {}), **values[section]}}
    if match is None:
        config = from_dict(TrainConfig, merged)
    else:
        with pytest.raises(errors.ConfigError, match=match):
            from_dict(TrainConfig, merged)
    built = from_dict(TrainConfig, merged, _check=False)  # a saved run's, read unchecked
    build = (
        (lambda: build_model(built.model, device="meta"))
        if section == "model"
        else (lambda: build_objective(built.diffusion))
    )
    if match is None:
        build()
        assert config == built
    else:
        with pytest.raises(errors.ConfigError):
            build()


# ---------------------------------------------------------------------------------------------
# docs/training.md: the defaults it documents are the dataclasses'


def _flat_defaults() -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(TrainConfig(), f.name)
        if dataclasses.is_dataclass(value):
            for g in dataclasses.fields(value):
                out[f"{f.name}.{g.name}"] = getattr(value, g.name)
        else:
            out[f.name] = value
    return out


def _documented_defaults() -> dict[str, str]:
    """``key -> default`` as written in the defaults table of docs/training.md."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    table = page.split("## Defaults", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([\w.]+)` \| (`[^`]*`|unset) \|", table, re.MULTILINE)
    assert rows
    return {key: value for key, value in rows}


def test_the_documented_defaults_are_the_dataclass_defaults():
    import tomllib

    defaults = _flat_defaults()
    documented = _documented_defaults()
    for key, text in documented.items():
        assert key in defaults, f"docs/training.md documents {key}, which is not a setting"
        value = None if text == "unset" else tomllib.loads(f"v = {text.strip('`')}")["v"]
        expected = defaults[key]
        if isinstance(expected, tuple):
            expected = list(expected)
        assert value == expected, f"docs/training.md: {key} defaults to {expected!r}, not {text}"
    top_level = [k for k in defaults if "." not in k]
    assert set(top_level) <= set(documented), "every top-level key has a documented default"


def test_the_example_says_which_of_its_values_are_not_the_defaults():
    """The example run file of docs/training.md lists the values that differ from the defaults
    (preset "small" and not "tiny", warmup_steps, eval_every, ...)."""
    import re
    import tomllib
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    section = page.split("## The configuration", 1)[1]
    example = tomllib.loads(re.search(r"```toml\n(.*?)```", section, re.DOTALL)[1])
    said = section.split("Values of this example that differ from the defaults:", 1)[1]
    said = said.split("\n\n", 1)[0]
    defaults = _flat_defaults()
    for key, value in example.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            name = key if sub is None else f"{key}.{sub}"
            expected = defaults[name]
            expected = list(expected) if isinstance(expected, tuple) else expected
            if v != expected and name not in ("run_dir", "data.paths", "data.variables"):
                assert f"`{name}`" in said, f"{name} = {v!r} differs from {expected!r}"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: TrainConfig(steps="abc"),
            "steps must be an integer, got 'abc' (TrainConfig.steps)",
        ),
        (
            lambda: TrainConfig(batch_size=2.5),
            "batch_size must be an integer, got 2.5 (TrainConfig.batch_size)",
        ),
        (
            lambda: DataConfig(paths=3),
            "data.paths must be a list, got int 3 (DataConfig.paths)",
        ),
        (
            lambda: DataConfig(degradation="mean"),
            "data.degradation = 'mean' is not a valid option; expected one of 'area_mean', "
            "'strided', 'gaussian' (DataConfig.degradation)",
        ),
        (
            lambda: TrainConfig(data={"factor": "4"}),
            "data.factor must be an integer, got '4' (TrainConfig.data.factor)",
        ),
    ],
)
def test_a_config_built_in_python_is_checked_like_one_read_from_toml(build, message):
    """Built directly, ``TrainConfig(steps="abc")`` was a bare TypeError from the range checks,
    ``DataConfig(paths="a.nc")`` was taken (and read letter by letter)."""
    with pytest.raises(errors.ConfigError) as info:
        build()
    assert str(info.value) == message


def test_a_config_built_in_python_is_normalised_like_one_read_from_toml():
    data = DataConfig(paths=["a.nc"], factor=np.int64(4), condition_scale=4)
    assert data == from_dict(DataConfig, {"paths": ["a.nc"], "factor": 4, "condition_scale": 4})
    assert data.paths == ("a.nc",)
    assert type(data.factor) is int
    assert type(data.condition_scale) is float
    assert hash(data) == hash(from_dict(DataConfig, to_dict(data)))  # still hashable and frozen
    nested = TrainConfig(data={"factor": 2, "crop_size": 32})
    assert nested.data == DataConfig(factor=2, crop_size=32)
    with pytest.raises(errors.ConfigError, match=r"must be an integer, got np.True_"):
        DataConfig(factor=np.True_)


def test_file_and_folder_fields_take_a_pathlib_path(tmp_path):
    """``TrainConfig(run_dir=Path(...))`` and ``DataConfig(paths=[Path(...)])`` were refused
    ("must be a string, got PosixPath(...)"), though a ``Path`` is what Python code holds; they
    are stored as strings, so the config still writes to TOML and compares equal. Other string
    fields still take strings only."""
    from pathlib import Path

    config = TrainConfig(run_dir=tmp_path / "run", data=DataConfig(paths=[Path("a.nc"), "b*.nc"]))
    assert config.run_dir == str(tmp_path / "run")
    assert type(config.run_dir) is str
    assert config.data.paths == ("a.nc", "b*.nc")
    assert config == TrainConfig(run_dir=str(tmp_path / "run"), data={"paths": ["a.nc", "b*.nc"]})
    assert to_dict(config)["run_dir"] == str(tmp_path / "run")  # as a run's config.toml holds
    with pytest.raises(errors.ConfigError, match=r"split_dim must be a string, got PosixPath"):
        DataConfig(split_dim=Path("time"))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"variables": "t2m"}, {"variables": ("t2m",)}),
        ({"paths": "era5.nc"}, {"paths": ("era5.nc",)}),
        ({"paths": Path("data") / "era5.nc"}, {"paths": (str(Path("data") / "era5.nc"),)}),
        ({"paths": "runs/a,b.nc"}, {"paths": ("runs/a,b.nc",)}),  # a comma in a file name
    ],
)
def test_a_single_name_or_path_is_a_list_of_one(values, expected):
    """``variables = "t2m"`` trains on t2m, as inference's ``variables="t2m"`` downscales it
    (it was refused: must be a list); a command line's ``data.variables=t2m`` likewise."""
    config = DataConfig(**values)
    for key, value in expected.items():
        assert getattr(config, key) == value
    assert from_dict(DataConfig, values) == config


def test_a_single_variable_in_toml_or_on_the_command_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[data]\nvariables = "t2m"\npaths = "era5.nc"\n')
    config = from_toml(TrainConfig, path)
    assert (config.data.variables, config.data.paths) == (("t2m",), ("era5.nc",))
    assert apply_overrides(TrainConfig(), ["data.variables=t2m"]).data.variables == ("t2m",)
    with pytest.raises(errors.ConfigError, match=r"data.variables=\[t2m,u\] on a command line"):
        apply_overrides(TrainConfig(), ["data.variables=t2m,u"])
