"""The API reference: every public name is in it, and the docstring rewriting of the docs build.

The site itself is built (with warnings as errors) by ``.ci/test``; these tests pin what the
build cannot see: a public name that no page renders, and how reStructuredText constructs of
the docstrings become Markdown.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import pkgutil
import subprocess
import sys
from pathlib import Path

import griffe
import pytest
from api_pages import API_PAGES, api_directives, load_docs_extension
from docblocks import code_blocks, run_blocks

import flexdownscale

ROOT = Path(__file__).resolve().parents[1]
#: Modules documented as commands (docs/inference.md, docs/training.md), not as an API:
#: ``evaluation`` is the work of ``flexdownscale evaluate``.
COMMAND_MODULES = {"flexdownscale.cli", "flexdownscale.evaluation"}


rst = load_docs_extension()


@pytest.fixture(scope="module")
def package() -> griffe.Module:
    return griffe.load("flexdownscale", search_paths=[str(ROOT)])


def _public_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(flexdownscale.__path__, "flexdownscale."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def test_every_public_name_is_in_the_api_reference():
    directives = api_directives()
    missing = []
    for name in _public_modules():
        if name in COMMAND_MODULES:
            continue
        module = importlib.import_module(name)
        public = getattr(module, "__all__", None)
        assert public is not None, f"{name} has no __all__: say what is public"
        if name in directives:
            listed = directives[name]
            if listed is not None:
                missing += [f"{name}.{n}" for n in public if n not in listed]
            continue
        parent = name.rpartition(".")[0]
        parent_public = set(getattr(importlib.import_module(parent), "__all__", ()))
        documented_parent = parent in directives or parent == "flexdownscale"
        for n in public:
            if n in parent_public and documented_parent:
                continue
            if any(f"{name}.{n}" == target for target in directives):
                continue
            missing.append(f"{name}.{n}")
    top = {"Downscaler": "flexdownscale.pipeline", "Forecaster": "flexdownscale.pipeline"}
    for n, home in top.items():
        assert n in flexdownscale.__all__
        assert n in (directives[home] or importlib.import_module(home).__all__)
    assert "flexdownscale.metrics" in directives
    assert not missing, f"public names no API page renders: {missing}"


def test_api_pages_are_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in API_PAGES:
        assert f"api/{page.name}" in nav, f"{page.name} is not in mkdocs.yml's nav"


def test_import_stays_light_and_lazy_names_load():
    code = (
        "import sys, flexdownscale as fd; "
        "assert 'torch' not in sys.modules and 'flexdownscale.metrics' not in sys.modules; "
        "assert fd.Forecaster.__name__ == 'Forecaster' and fd.Downscaler.__name__ == "
        "'Downscaler'; assert callable(fd.metrics.rmse); "
        # a subpackage by attribute, as `fd.metrics` (reviewer-103: fd.data raised AttributeError)
        "assert callable(fd.data.degrade) and callable(fd.plot.plot_spectra)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    with pytest.raises(AttributeError, match="no attribute 'Downscale'"):
        flexdownscale.Downscale
    # dir() (tab completion) lists the lazy names, not the module's typing imports
    listed = dir(flexdownscale)
    assert {"Downscaler", "Forecaster", "metrics", "data", "plot", "__version__"} <= set(listed)
    assert not {"Any", "TYPE_CHECKING", "annotations"} & set(listed)


def test_roles_become_links_or_code(package):
    regrid = package["data.regrid"]
    text = rst.rst_to_markdown(
        regrid,
        "See :func:`~flexdownscale.metrics.power_spectrum`, :class:`TypeError`, "
        ":func:`xarray.apply_ufunc` and :func:`_edges`.",
    )
    assert (
        '<autoref identifier="flexdownscale.metrics.power_spectrum" optional>'
        "<code>power_spectrum()</code></autoref>" in text
    )
    assert "`TypeError`" in text
    assert "`xarray.apply_ufunc()`" in text
    # private helpers are shown as code, never linked
    assert "<code>_edges()</code>" in text
    assert 'identifier="flexdownscale.data.regrid._edges"' not in text


def test_relative_names_resolve_in_the_docstring_scope(package):
    call = package["pipeline.Downscaler.__call__"]
    text = rst.rst_to_markdown(
        call, ":func:`time_step_seed` and :meth:`Downscaler.from_pretrained`"
    )
    assert 'identifier="flexdownscale.pipeline.time_step_seed"' in text
    assert 'identifier="flexdownscale.pipeline.Downscaler.from_pretrained"' in text
    # an imported name resolves to where it is defined
    text = rst.rst_to_markdown(package["data.regrid"], ":class:`GridError`")
    assert 'identifier="flexdownscale.errors.GridError"' in text
    # a method inherited from a (private) base class links to the class's own rendering of it
    text = rst.rst_to_markdown(package["pipeline.Forecaster"], ":meth:`save_pretrained`")
    assert 'identifier="flexdownscale.pipeline.Forecaster.save_pretrained"' in text


def test_a_dangling_reference_is_a_warning(package, caplog):
    with caplog.at_level(logging.WARNING):
        text = rst.rst_to_markdown(package["pipeline"], "Use :func:`no_such_function`.")
    assert "`no_such_function()`" in text
    assert any("no_such_function" in r.getMessage() for r in caplog.records)


def test_math_literal_blocks_and_combined_entries():
    obj = griffe.Module("m")
    text = rst.rst_to_markdown(
        obj,
        "Schedule\n\n.. math:: z = a x\n\nand\n\n    .. math::\n\n        a = 1,\n        b = 2\n\n"
        "Per point::\n\n    x = 1\n",
    )
    assert "$$\nz = a x\n$$" in text
    assert "    $$\n    a = 1,\n    b = 2\n    $$" in text
    assert "Per point:\n\n    x = 1" in text
    entries = rst.rst_to_markdown(
        obj,
        "Parameters\n----------\nfcst, obs : DataArray\n    The fields.\nseed\n    Seed.\n\n"
        "Returns\n-------\na, b\n    Kept.",
    )
    assert "fcst : DataArray\n    The fields.\nobs : DataArray\n    The fields.\n" in entries
    assert "a, b\n    Kept." in entries


#: User-guide pages whose python blocks run as written (``READER_DATA_PAGES`` below: the pages
#: of calls on the reader's own data).
RUNNABLE_GUIDE_PAGES = ("data.md", "metrics.md", "models.md", "diffusion.md")


@pytest.mark.parametrize("name", RUNNABLE_GUIDE_PAGES)
def test_guide_examples_run_as_written(name, tmp_path, monkeypatch, shared_data):
    page = ROOT / "docs" / name
    # the pages read the real data as ../shared/data, relative to a project folder
    work = tmp_path / "project"
    work.mkdir()
    (tmp_path / "shared").symlink_to(shared_data.parent)
    monkeypatch.chdir(work)
    python = sum(lang == "python" for lang, _, _ in code_blocks(page))
    assert run_blocks(page, work, commands=False) == python > 0


#: Pages whose examples are calls on the reader's own data and model folders: they run with the
#: shipped samples standing in for that data (``reader_data``) and these placeholders replaced.
READER_DATA_PAGES = {
    "README.md": {"path/to/model": "reader-model"},
    "docs/index.md": {},
    "docs/inference.md": {
        "path/to/model": "reader-model",
        "path/to/forecast-model": "reader-forecast-model",
    },
    "docs/shipped-models.md": {},
}


@pytest.fixture(scope="module")
def reader_data(tmp_path_factory):
    """A reader's folder: 2 m temperature at 1 and 0.25 degree (two hours of the shipped ERA5
    sample, as files and as ``coarse`` / ``truth``), coarse Kolmogorov vorticity at Re = 4000
    (``kf``), a copy of a shipped model and an (untrained) forecast model, as folders."""
    import torch

    import flexdownscale as fd
    from flexdownscale.config import DiffusionConfig, ModelConfig, SamplerConfig
    from flexdownscale.data import Normalizer, degrade, normalize_grid
    from flexdownscale.demo import open_sample
    from flexdownscale.models import build_model

    folder = tmp_path_factory.mktemp("reader")
    era5 = normalize_grid(open_sample("era5_t2m_uk"))
    truth = era5.isel(time=slice(0, 2), latitude=slice(0, 32), longitude=slice(0, 48))
    coarse = degrade(truth, 4)
    truth.to_netcdf(folder / "t2m_025deg.nc")
    coarse.to_netcdf(folder / "t2m_1deg.nc")
    # a quarter of the box keeps the run short (no longer periodic: halos reflect)
    kf = degrade(open_sample("kolmogorov").sel(reynolds_number=4000.0), 8).isel(
        x=slice(0, 16), y=slice(0, 16)
    )
    for dim in ("x", "y"):  # a window of the box: its cut axes are not periodic
        kf[dim].attrs.pop("periodic")
    fd.Downscaler.from_pretrained("era5-t2m-x4").save_pretrained(folder / "reader-model")
    torch.manual_seed(0)
    fd.Forecaster(
        build_model(ModelConfig(preset="tiny", task="forecast", past_frames=2)),
        DiffusionConfig(),
        normalizer=Normalizer.fit(truth[["t2m"]]),
        variables=["t2m"],
        units={"t2m": "K"},
        sampler=SamplerConfig(steps=2),
    ).save_pretrained(folder / "reader-forecast-model")
    return folder, {"ds": coarse, "coarse": coarse, "truth": truth, "kf": kf}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(READER_DATA_PAGES))
def test_examples_on_the_readers_data_run(name, reader_data, tmp_path, monkeypatch):
    """The python blocks of pages written for the reader's data run on stand-ins for it."""
    import shutil

    folder, namespace = reader_data
    work = tmp_path / "reader"
    shutil.copytree(folder, work)
    monkeypatch.chdir(work)
    page = ROOT / name
    python = sum(lang == "python" for lang, _, _ in code_blocks(page))
    replace = READER_DATA_PAGES[name]
    ran = run_blocks(page, work, commands=False, replace=replace, namespace=dict(namespace))
    assert ran == python > 0
    for placeholder in replace:  # each placeholder is still on the page
        assert placeholder in page.read_text(), f"{name} no longer has {placeholder!r}"


def test_blocks_that_show_an_error_must_raise_it(tmp_path):
    page = tmp_path / "page.md"
    shown = "```python\n{}\n# ValueError: bad\n#     value\n```\n"
    page.write_text(
        "- item\n\n  "
        + shown.format("raise ValueError('bad  value, really')").replace("\n", "\n  ")
    )
    assert code_blocks(page)[0][0] == "python"  # indented in a list item, dedented
    assert run_blocks(page, tmp_path) == 1
    page.write_text(shown.format("x = 1"))
    with pytest.raises(AssertionError, match="the block shows ValueError, none raised"):
        run_blocks(page, tmp_path)
    page.write_text(shown.format("raise ValueError('other')"))
    with pytest.raises(AssertionError, match="the message is 'other'"):
        run_blocks(page, tmp_path)
    page.write_text(shown.format("raise KeyError('bad value')"))
    with pytest.raises(AssertionError, match="raised KeyError"):
        run_blocks(page, tmp_path)


def test_documented_run_files_are_valid_configurations(tmp_path):
    from flexdownscale.config import TrainConfig, from_toml

    pages = [ROOT / "docs" / "training.md", *sorted((ROOT / "docs" / "tutorials").glob("*.md"))]
    checked = 0
    for page in pages:
        for lang, line, code in code_blocks(page):
            if lang == "toml" or (lang.startswith("file:") and lang.endswith(".toml")):
                path = tmp_path / f"{page.stem}_{line}.toml"
                path.write_text(code)
                config = from_toml(TrainConfig, path)
                assert config.steps > 0, f"{page.name}:{line}"
                checked += 1
    assert checked >= 2
