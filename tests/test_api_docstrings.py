"""Every public callable documents exactly its signature's parameters (numpydoc).

Walks the public functions and methods of the modules in ``MODULES`` (their ``__all__``: the
API reference's pages); a class's constructor
parameters are documented in the class docstring (numpydoc convention: Parameters, or
Attributes for a dataclass's fields).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Callable, Iterator

import pytest
from api_pages import load_docs_extension

MODULES = (
    "flexdownscale.metrics",
    "flexdownscale.plot",
    "flexdownscale.pipeline",
    "flexdownscale.data",
    "flexdownscale.accessor",
    "flexdownscale.hub",
    "flexdownscale.config",
    "flexdownscale.train",
    "flexdownscale.units",
    "flexdownscale.demo",
    "flexdownscale.errors",
    "flexdownscale.diffusion",
    "flexdownscale.models",
    "flexdownscale.models.layers",
    "flexdownscale.models.devices",
    "flexdownscale.provenance",
    # more modules are added here, one line each, as their docstrings are completed
)
_UNDERLINE = re.compile(r"^-{3,}$")
_HEADING_AFTER = ("Returns", "Yields", "Raises", "Warns", "Notes", "Examples", "See Also")


def section(doc: str, title: str) -> list[str] | None:
    """Lines of the numpydoc section ``title`` of a dedented docstring; None if absent."""
    lines = doc.splitlines()
    for i in range(len(lines) - 1):
        if lines[i].strip() == title and _UNDERLINE.match(lines[i + 1].strip()):
            body = []
            for j in range(i + 2, len(lines)):
                if (
                    j + 1 < len(lines)
                    and lines[j].strip()
                    and _UNDERLINE.match(lines[j + 1].strip())
                ):
                    break
                body.append(lines[j])
            return body
    return None


def documented_names(doc: str, title: str = "Parameters") -> list[str] | None:
    """Parameter names of a section: unindented lines ``name[, name] [: type]``.

    As numpydoc reads them: an entry's names are on one line, so a list wrapped onto a second
    line gives an empty name (the first line ends in a comma), which the tests refuse."""
    body = section(doc, title)
    if body is None:
        return None
    names = []
    for line in body:
        if not line.strip() or line[0].isspace():
            continue
        head = line.split(" : ")[0]
        names += [n.strip().lstrip("*") for n in head.split(",")]
    return names


def signature_names(func: Callable, skip_first: bool) -> tuple[list[str], set[str]]:
    """(named parameters, names of its ``*args`` / ``**kwargs``) of a callable's signature."""
    params = list(inspect.signature(func).parameters.values())
    if skip_first:
        params = params[1:]
    named = [
        p.name
        for p in params
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and not p.name.startswith("_")
    ]
    var = {p.name for p in params if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return named, var


def public_callables() -> Iterator[tuple[str, Callable, str, bool]]:
    """(qualified name, callable, docstring, skip first parameter) of the public API."""
    seen: set[int] = set()
    for modname in MODULES:
        module = importlib.import_module(modname)
        for name, obj in ((n, getattr(module, n)) for n in module.__all__):
            qual = f"{modname}.{name}"
            if inspect.isfunction(obj) and id(obj) not in seen:
                seen.add(id(obj))
                yield qual, obj, inspect.getdoc(obj) or "", False
            if not inspect.isclass(obj) or not obj.__module__.startswith("flexdownscale"):
                continue
            # a typing.Protocol's constructor is typing's (*args, **kwargs): nothing to document
            protocol = getattr(obj, "_is_protocol", False)
            # the class's own constructor or one it inherits from a class of the package (a
            # private base's included: the page shows its parameters on this class)
            init = obj.__init__
            constructor = dataclasses.is_dataclass(obj) or (
                inspect.isfunction(init) and init.__module__.startswith("flexdownscale")
            )
            if constructor and not protocol and id(obj) not in seen:
                seen.add(id(obj))
                yield qual, obj.__init__, inspect.getdoc(obj) or "", True
            for klass in obj.__mro__:
                if not klass.__module__.startswith("flexdownscale"):
                    continue
                for attr, member in vars(klass).items():
                    if attr.startswith("_") and attr != "__call__":
                        continue
                    skip = True
                    if isinstance(member, staticmethod):
                        member, skip = member.__func__, False
                    elif isinstance(member, classmethod):
                        member = member.__func__
                    if not inspect.isfunction(member) or id(member) in seen:
                        continue
                    seen.add(id(member))
                    yield f"{qual}.{attr}", member, inspect.getdoc(member) or "", skip


CALLABLES = sorted(public_callables(), key=lambda item: item[0])


def test_the_walk_finds_the_api():
    names = {item[0] for item in CALLABLES}
    assert len(CALLABLES) >= 90
    for expected in (
        "flexdownscale.metrics.ssim",
        "flexdownscale.metrics.rmse",
        "flexdownscale.plot.plot_panels",
        "flexdownscale.pipeline.Forecaster.__call__",
        "flexdownscale.pipeline.Downscaler.__call__",
        "flexdownscale.pipeline.resolve_downscaler",
        "flexdownscale.data.Normalizer.transform",
        "flexdownscale.data.GridSpec.coarsen",
        "flexdownscale.data.regrid",
        "flexdownscale.hub.resolve_model_path",
        "flexdownscale.hub.ModelFolderHeader",
        "flexdownscale.config.TrainConfig",
        "flexdownscale.train.Trainer.fit",
        "flexdownscale.units.linear_conversion",
        "flexdownscale.diffusion.sample_euler",
        "flexdownscale.diffusion.CosineSchedule.alpha_sigma",
        "flexdownscale.models.count_parameters",
    ):
        assert expected in names


def test_the_parser_reads_grouped_and_typeless_entries():
    doc = inspect.cleandoc(
        """Summary.

        Parameters
        ----------
        fcst, obs : DataArray or Dataset
            Text with a colon : inside.
        device
            No type.
        **kwargs
            Passed on.

        Returns
        -------
        float
        """
    )
    assert documented_names(doc) == ["fcst", "obs", "device", "kwargs"]
    wrapped = "Summary.\n\nParameters\n----------\na, b,\nc\n    Text.\n"
    assert documented_names(wrapped) == ["a", "b", "", "c"]  # numpydoc's reading
    assert documented_names(doc, "Returns") == ["float"]
    assert documented_names("No sections.") is None


@pytest.mark.parametrize(
    ("name", "func", "doc", "skip"), CALLABLES, ids=[item[0] for item in CALLABLES]
)
def test_parameters_section_matches_the_signature(name, func, doc, skip):
    named, var = signature_names(func, skip)
    documented = documented_names(doc)
    if documented is None and func.__name__ == "__init__":
        documented = documented_names(doc, "Attributes")  # a dataclass's fields
    if not named and not var:
        return  # nothing to document (a Parameters section is optional then)
    assert documented is not None, f"{name}: no Parameters section; signature has {named}"
    extra = [n for n in documented if n not in named and n not in var]
    missing = [n for n in named if n not in documented]
    assert "" not in documented, f"{name}: an entry's names wrap onto a second line"
    assert not missing, f"{name}: undocumented {missing}"
    assert not extra, f"{name}: documented but not in the signature: {extra}"
    assert len(documented) == len(set(documented)), f"{name}: a name documented twice"
    # numpydoc's PR03: in the signature's order (a reader matches the two line by line)
    in_order = [n for n in documented if n in named]
    assert in_order == [n for n in named if n in in_order], f"{name}: not in signature order"


@pytest.mark.parametrize(
    ("name", "func", "doc", "skip"),
    [item for item in CALLABLES if not item[0].split(".")[-1].startswith("_")],
    ids=[item[0] for item in CALLABLES if not item[0].split(".")[-1].startswith("_")],
)
def test_functions_say_what_they_return(name, func, doc, skip):
    hints = inspect.signature(func).return_annotation
    if hints in (None, "None", inspect.Signature.empty) or inspect.isclass(func):
        return
    assert section(doc, "Returns") is not None or section(doc, "Yields") is not None, name


def test_sampler_option_defaults_quoted_are_the_shipped_folders():
    """Downscaler.__call__ says which ``delta`` the shipped folders store (not 0)."""
    from flexdownscale.hub import load_model_folder
    from flexdownscale.pipeline import Downscaler

    doc = " ".join(inspect.getdoc(Downscaler.__call__).split())
    quoted = dict(re.findall(r'``"([\w-]+)"`` (?:stores )?``delta = ([\d.]+)``', doc))
    assert set(quoted) == {"era5-t2m-x4", "kolmogorov-x8"}
    for name, value in quoted.items():
        assert load_model_folder(name).sampler.delta == float(value), name
    assert "0, the model's default" not in doc


def test_benchmark_numbers_in_the_docs_are_the_reports():
    """docs quote benchmarks/results as the reports give them."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    speed = (root / "benchmarks/results/metrics_speed.md").read_text()
    rows = [line.split("|") for line in speed.splitlines() if re.match(r"\| \d+ \|", line)]
    ecdf = [float(r[-3].strip().rstrip("x")) for r in rows]
    fair = [float(r[-2].strip().rstrip("x")) for r in rows]
    metrics = " ".join((root / "docs/metrics.md").read_text().split())
    assert f"{min(ecdf):g}-{max(ecdf):g}x faster for the ecdf" in metrics
    assert f"{min(fair):g}-{max(fair):g}x for the fair" in metrics
    nfe = (root / "benchmarks/results/idff_nfe.md").read_text()
    (whole,) = re.findall(r"whole run (\d+) s", nfe)
    diffusion = " ".join((root / "docs/diffusion.md").read_text().split())
    assert f"(whole run {whole} s on 2 CPUs" in diffusion
    assert "4 minutes on one CPU core" not in diffusion


def public_overrides() -> Iterator[tuple[str, object]]:
    """(qualified name, own member) of every public method or property of an API class that
    overrides one of a base class (helpers of a private base class included: their docstrings are
    the subclass's on the API page)."""
    seen: set[tuple[type, str]] = set()
    for modname in MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            cls = getattr(module, name)
            if not inspect.isclass(cls) or not cls.__module__.startswith("flexdownscale"):
                continue
            mro = cls.__mro__
            for i, klass in enumerate(mro):
                if not klass.__module__.startswith("flexdownscale"):
                    continue
                for attr, member in vars(klass).items():
                    if attr.startswith("_") and attr != "__call__":
                        continue
                    if isinstance(member, staticmethod | classmethod):
                        member = member.__func__
                    elif isinstance(member, property):
                        member = member.fget
                    if not inspect.isfunction(member) or (klass, attr) in seen:
                        continue
                    if any(attr in vars(base) for base in mro[i + 1 :]):
                        seen.add((klass, attr))
                        yield f"{klass.__module__}.{klass.__qualname__}.{attr}", member


OVERRIDES = sorted(public_overrides(), key=lambda item: item[0])


def test_the_override_walk_finds_the_objectives():
    names = {item[0] for item in OVERRIDES}
    for cls in ("VPDiffusion", "FlowMatching", "IDFF"):
        for method in ("loss", "velocity", "score", "denoise", "sampler_defaults"):
            assert f"flexdownscale.diffusion.objectives.{cls}.{method}" in names
    # defined on the private base of FlowMatching and IDFF, shown on their pages
    assert "flexdownscale.diffusion.objectives._BridgeBase.time_grid" in names


@pytest.mark.parametrize(("name", "member"), OVERRIDES, ids=[item[0] for item in OVERRIDES])
def test_overrides_have_their_own_docstring(name, member):
    """An override's page entry is its own docstring: without one the API reference shows
    nothing (or the base's generic text) for what this class computes."""
    assert (member.__doc__ or "").strip(), f"{name} overrides a base method without a docstring"


def untyped_entries(doc: str, title: str = "Attributes") -> list[str]:
    """Entries of a numpydoc section written without ``: type``."""
    body = section(doc, title) or []
    return [
        line
        for line in body
        if line.strip() and not line[0].isspace() and not re.search(r"\s:\s*\S", line)
    ]


def test_untyped_entries_are_found():
    doc = inspect.cleandoc(
        """Summary.

        Attributes
        ----------
        steps : int, default 2
            Text: with a colon.
        eta
            No type.
        g1, g2
            No type either.
        """
    )
    assert untyped_entries(doc) == ["eta", "g1, g2"]


#: Classes whose Attributes sections still lack types (none left). Strict: once typed, an
#: entry here fails and is removed.
UNTYPED_PENDING: set[str] = set()


def attribute_sections() -> Iterator[tuple[str, str]]:
    """(qualified name, docstring) of every API class documenting Attributes."""
    seen: set[int] = set()
    for modname in MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            cls = getattr(module, name)
            if not inspect.isclass(cls) or id(cls) in seen:
                continue
            seen.add(id(cls))
            doc = inspect.cleandoc(cls.__doc__ or "")
            if section(doc, "Attributes"):
                yield f"{modname}.{name}", doc


ATTRIBUTE_SECTIONS = sorted(attribute_sections())


@pytest.mark.parametrize(
    ("name", "doc"),
    [
        pytest.param(
            name,
            doc,
            marks=pytest.mark.xfail(name in UNTYPED_PENDING, reason="untyped", strict=True),
        )
        for name, doc in ATTRIBUTE_SECTIONS
    ],
    ids=[item[0] for item in ATTRIBUTE_SECTIONS],
)
def test_attributes_are_typed(name, doc):
    """``name : type`` for every attribute (with its default where it has one): ``help()``
    shows the docstring only, not the annotations."""
    assert not untyped_entries(doc), f"{name}: Attributes without a type: {untyped_entries(doc)}"


def test_entry_types_render_without_double_parentheses():
    """griffe reads an entry's type as a Python expression where it can, so ``int, optional``,
    ``float, default -20.0`` (attributes) and ``torch.device, str or None`` are tuples, which the
    page printed as ``((int, optional))``; the docs extension rewrites them into forms printed as
    written (``type, default: <value>``, ``A or B or None``)."""
    import logging
    from pathlib import Path

    griffe = pytest.importorskip("griffe")
    root = Path(__file__).resolve().parents[1]
    rst = load_docs_extension()
    package = griffe.load("flexdownscale", search_paths=[str(root)], resolve_aliases=False)
    demo = package["demo.DemoCase"]
    text = rst.rst_to_markdown(demo, demo.docstring.value)
    assert "\ncondition_dim : str, default: None\n" in text
    assert "\ncrop : tuple of (int, int), default: None\n" in text
    assert ", optional" not in text
    # a default_factory field; an entry without a default keeps only its type; descriptions and
    # bracketed commas stay; parameters keep their defaults (griffe reads those itself)
    text = rst.rst_to_markdown(
        package["config.TrainConfig"],
        "Attributes\n----------\nmodel : ModelConfig, optional\n    Section.\n"
        "nothing : int, optional\n    Not a field.\nsteps : int, default 1000\n"
        "    Steps, default 1000 (a description line is left alone).\n"
        "size : tuple of (int, int), default (1, 2)\n    Size.\n\n"
        "Parameters\n----------\ngenerator : Generator, sequence of Generator, or None, default None\n"
        '    Seeds.\nwindow : {"hann", None}, default None\n    Taper.\n'
        "figsize : (float, float), default (5.0, 3.5)\n    Inches.\n",
    )
    assert "model : ModelConfig, default: ModelConfig()\n" in text
    assert "nothing : int\n" in text
    assert "steps : int, default: 1000\n    Steps, default 1000 (a description" in text
    assert "size : tuple of (int, int), default: (1, 2)\n" in text
    assert "generator : Generator or sequence of Generator or None, default None\n" in text
    assert 'window : one of {"hann", None}, default None\n' in text
    assert "figsize : tuple of (float, float), default (5.0, 3.5)\n" in text

    # no entry of the package is read as a tuple (printed in parentheses the source does not
    # have: ``('a', 'b')`` for the choices ``{"a", "b"}``, ``((float, float))``)
    def walk(obj):
        yield obj
        for member in obj.members.values():
            if not member.is_alias:
                yield from walk(member)

    kinds = {
        griffe.DocstringSectionKind.attributes,
        griffe.DocstringSectionKind.parameters,
        griffe.DocstringSectionKind.other_parameters,
    }
    misread = []
    logging.disable(logging.WARNING)  # griffe's notes on entries are the docs build's business
    try:
        for obj in walk(package):
            if obj.docstring is None:
                continue
            text = rst.rst_to_markdown(obj, obj.docstring.value)
            for part in griffe.Docstring(text, parent=obj, parser="numpy").parse():
                if part.kind not in kinds:
                    continue
                for item in part.value:
                    if isinstance(item.annotation, griffe.ExprTuple):
                        misread.append(f"{obj.path}: {item.name} : {item.annotation}")
    finally:
        logging.disable(logging.NOTSET)
    assert not misread


def undescribed_entries(doc: str, title: str = "Returns") -> list[str]:
    """Entry lines of a Returns-like section without an indented description under them.

    numpydoc reads every unindented line of such a section as a type (``name : type`` or
    ``type``) and the indented lines after it as its description, so a sentence written there
    is a "type" with no description (numpydoc's RT03; the API reference printed it as code)."""
    body = section(doc, title) or []
    found = []
    for i, line in enumerate(body):
        if not line.strip() or line[0].isspace():
            continue
        rest = [b for b in body[i + 1 :] if b.strip()]
        if not rest or not rest[0][0].isspace():
            found.append(line.strip())
    return found


def test_undescribed_entries_are_found():
    doc = inspect.cleandoc(
        """Summary.

        Returns
        -------
        Same type as ``obj``, on the
        coarse grid.

        Yields
        ------
        int
            Described.
        """
    )
    assert undescribed_entries(doc) == ["Same type as ``obj``, on the", "coarse grid."]
    assert undescribed_entries(doc, "Yields") == []


@pytest.mark.parametrize(
    ("name", "doc"),
    [(name, doc) for name, func, doc, _ in CALLABLES if func.__name__ != "__init__"],
    ids=[name for name, func, _, _ in CALLABLES if func.__name__ != "__init__"],
)
def test_returns_entries_are_a_type_and_a_description(name, doc):
    """``Returns`` / ``Yields``: a type line, then the description indented under it."""
    for title in ("Returns", "Yields"):
        assert not undescribed_entries(doc, title), f"{name}: {undescribed_entries(doc, title)}"


def test_roles_on_entry_lines_become_plain_text():
    """The docs extension writes a role as link HTML; on an entry's own line (printed as code by
    griffe) that HTML came out escaped, so there the role becomes its text."""
    from pathlib import Path

    griffe = pytest.importorskip("griffe")
    root = Path(__file__).resolve().parents[1]
    rst = load_docs_extension()
    package = griffe.load("flexdownscale", search_paths=[str(root)], resolve_aliases=False)
    obj = package["config.apply_overrides"]
    text = rst.rst_to_markdown(
        obj,
        "Summary :func:`from_dict`.\n\nReturns\n-------\nBuilt by :func:`from_dict`.\n\n"
        "Raises\n------\n:class:`~flexdownscale.errors.ConfigError`\n"
        "    Described with :func:`from_dict`.\n",
    )
    lines = text.splitlines()
    assert lines[4] == "Built by from_dict."
    assert lines[8] == "ConfigError"
    assert lines[0].startswith("Summary <autoref")
    assert lines[9].count("<autoref") == 1


def test_main_entry_points_have_examples():
    """The doors a user starts from show a call that runs (doctests: ``--doctest-modules`` over
    the package, in ``addopts``, so an example that stops working fails the suite)."""
    from flexdownscale import metrics
    from flexdownscale.accessor import FlexDatasetAccessor
    from flexdownscale.pipeline import Downscaler

    for obj in (
        FlexDatasetAccessor.downscale,
        Downscaler,
        metrics.downscaling_skill,
        metrics.rank_histogram,
        metrics.spread_skill_ratio,
    ):
        doc = inspect.getdoc(obj) or ""
        assert section(doc, "Examples"), f"{obj.__qualname__} has no Examples section"
        assert ">>> " in "\n".join(section(doc, "Examples") or []), obj.__qualname__
    import tomllib
    from pathlib import Path

    pytest_options = tomllib.loads(
        (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    )["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in pytest_options["addopts"]
    assert "flexdownscale" in pytest_options["testpaths"]


@pytest.mark.parametrize(
    ("method", "target"), [("downscale", "Downscaler"), ("forecast", "Forecaster")]
)
def test_accessor_lists_every_keyword_it_passes_on(method, target):
    """``ds.flex.downscale`` / ``forecast`` name the keywords their ``**kwargs`` go to; the list
    left out ``batch_invariant``."""
    from flexdownscale import pipeline
    from flexdownscale.accessor import FlexDatasetAccessor

    doc = " ".join((inspect.getdoc(getattr(FlexDatasetAccessor, method)) or "").split())
    listed = re.search(r"Go to :meth:`[\w.]+__call__` \(([^)]*)\)", doc)
    assert listed, f"{method}: no keyword list"
    names = re.findall(r"``(\w+)``", listed[1])
    own = set(inspect.signature(getattr(FlexDatasetAccessor, method)).parameters)
    takes = [
        n
        for n in inspect.signature(getattr(pipeline, target).__call__).parameters
        if n not in {"self", "ds"} | own
    ]
    assert names == takes


def documented_types(doc: str, title: str = "Parameters") -> dict[str, str]:
    """``name -> type`` of a section's entries (``""`` for an entry without a type)."""
    types: dict[str, str] = {}
    for line in section(doc, title) or []:
        if not line.strip() or line[0].isspace():
            continue
        head, _, kind = line.partition(" : ")
        for name in head.split(","):
            types[name.strip().lstrip("*")] = kind.strip()
    return types


@pytest.mark.parametrize(
    ("name", "func", "doc", "skip"), CALLABLES, ids=[item[0] for item in CALLABLES]
)
def test_typed_parameters_with_a_default_say_so(name, func, doc, skip):
    """numpydoc: a typed entry of a parameter that has a default ends in ``default <value>``
    (or ``optional``), so ``help()`` shows what leaving it out means (``radius : float`` of
    ``area_weights`` hid the Earth radius it takes)."""
    types = documented_types(doc)
    params = list(inspect.signature(func).parameters.values())[1 if skip else 0 :]
    silent = [
        p.name
        for p in params
        if p.default is not p.empty
        and types.get(p.name)
        and not re.search(r"\b(default|optional)\b", types[p.name])
    ]
    assert not silent, f"{name}: typed without their default: {silent}"


@pytest.mark.parametrize(
    ("name", "func"),
    [(name, func) for name, func, _, _ in CALLABLES if func.__name__ == "__init__"],
    ids=[name for name, func, _, _ in CALLABLES if func.__name__ == "__init__"],
)
def test_constructors_take_no_private_parameters(name, func):
    """A dataclass field with a leading underscore is still a constructor parameter (and shown
    as one in the API reference): ``TileLayout(..., _norm=...)``. Such a field is
    ``field(init=False)``, set in ``__post_init__``."""
    private = [p for p in inspect.signature(func).parameters if p.startswith("_")]
    assert not private, f"{name} takes {private}"
