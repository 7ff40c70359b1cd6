"""Physical units of variables: the same unit in other spellings, and conversions between units.

A model records the ``units`` attribute of each variable it was trained on; inputs and truths
must be in the same units. The spellings differ between producers (``m s**-1`` in ECMWF files,
``m s-1`` in CF, ``m/s`` by hand; ``K``, ``kelvin``, ``degK``), so the strings are compared as
units: parsed with pint and the CF / UDUNITS registry of cf-xarray. Two units are the same when
they convert into each other with scale 1 and offset 0; otherwise, when the dimensions agree,
:func:`linear_conversion` gives the ``scale`` and ``offset`` that convert the values (degC to K:
1 and 273.15; mm/h to m s-1: 1 / 3.6e6 and 0).

pint is imported on the first comparison of two strings that differ.
"""

from __future__ import annotations

import functools
import math
import re
import shlex
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "WATER_DENSITY",
    "UnitComparison",
    "compare_units",
    "conversion_code",
    "conversion_rule",
    "degree_units",
    "linear_conversion",
    "parse_units",
    "quantity_kind",
    "same_units",
    "water_equivalent",
]

#: every spelling of degrees once lower-cased with spaces and underscores removed:
#: degrees_north, degree_N, degreesN, degN, "degrees north", the degree sign (°N), degrees
_DEGREES = re.compile(r"(?:degrees|degree|deg|\u00b0)(n|north|e|east|s|south|w|west)?")
_DIRECTION = {"n": "north", "e": "east", "s": "south", "w": "west"}


def degree_units(units: Any) -> Literal["north", "east", "south", "west", "degrees"] | None:
    """Which degrees a coordinate's ``units`` names, in any spelling; ``None`` for other units.

    ``"north"`` for ``degrees_north``, ``degree_N``, ``degreesN``, ``degN``, ``°N`` and
    ``degrees north`` (case does not matter); ``"east"`` likewise; ``"south"`` / ``"west"`` for
    ``degrees_south``, ``°W``, ... (coordinates that increase the other way); ``"degrees"`` for
    plain ``degrees``, ``degree``, ``deg`` and ``°`` (rotated-pole and unlabelled axes).

    Parameters
    ----------
    units : object
        A ``units`` attribute (any value: it is read as a string).

    Returns
    -------
    {"north", "east", "south", "west", "degrees"} or None
        The direction the degrees name, ``"degrees"`` for plain degrees, ``None`` when
        ``units`` are not degrees.

    Examples
    --------
    >>> degree_units("Degrees_North"), degree_units("\u00b0E"), degree_units("m")
    ('north', 'east', None)
    """
    text = re.sub(r"[\s_]", "", str(units).lower())
    match = _DEGREES.fullmatch(text)
    if match is None:
        return None
    direction = match.group(1)
    if direction is None:
        return "degrees"
    return _DIRECTION.get(direction, direction)  # type: ignore[return-value]


@functools.cache
def _registry() -> Any:
    """pint's unit registry with CF / UDUNITS spellings (``m s-1``, ``degC``, ``1``)."""
    from cf_xarray.units import units

    return units


#: temperature spellings pint misreads or does not know: ``degree_C`` / ``degrees_C`` (ocean
#: products), ``degrees C`` (read as an angle times a Celsius interval), ``degree_K``, ``Kelvin``
_TEMPERATURE = re.compile(
    r"(?:(?:degrees?|deg|\u00b0)[\s_]*(?P<short>c|celsius|centigrade|k|kelvin|f|fahrenheit)"
    r"|(?P<word>celsius|centigrade|kelvin|fahrenheit))",
    re.IGNORECASE,
)
_TEMPERATURE_UNITS = {"c": "degC", "centigrade": "degC", "celsius": "degC", "k": "K"}
_TEMPERATURE_UNITS |= {"kelvin": "K", "f": "degF", "fahrenheit": "degF"}
#: the same spellings as one factor of a composite unit (``m Kelvin^2``, ``W m-2 (deg C)-1``):
#: not inside a longer word, so ``degrees_north``, ``kg`` and ``mK`` are left as they are
_TEMPERATURE_TOKEN = re.compile(
    r"(?<![A-Za-z\u00b0])(?:(?:degrees?|deg|\u00b0)[\s_]*"
    r"(?P<short>c|celsius|centigrade|k|kelvin|f|fahrenheit)"
    r"|(?P<word>celsius|centigrade|kelvin|fahrenheit))(?![A-Za-z])",
    re.IGNORECASE,
)


def _temperature_spelling(match: re.Match[str]) -> str:
    return _TEMPERATURE_UNITS[(match["short"] or match["word"]).lower()]


@functools.cache
def parse_units(units: str) -> Any | None:
    """The pint unit of a CF ``units`` string, or ``None`` when it is not a unit pint knows.

    An empty string is not parsed (CF writes dimensionless quantities as ``1``). Temperatures
    are read in every common spelling (``degC``, ``degree_C``, ``degrees C``, ``Celsius``,
    ``degree_K``, ``Kelvin``, ``degF``, ...), on their own and as factors of composite units
    (``m Kelvin^2``, the units of a spectrum of a field in ``Kelvin``; ``m (deg C)^2``).

    Parameters
    ----------
    units : str
        A ``units`` attribute.

    Returns
    -------
    pint.Unit or None
        The unit; ``None`` for an empty string or text that is no unit.

    Examples
    --------
    >>> parse_units("degrees_C") == parse_units("degC"), parse_units("Kelvin") == parse_units("K")
    (True, True)
    >>> parse_units("m Kelvin^2") == parse_units("m K^2")
    True
    """
    text = str(units).strip()
    if not text:
        return None
    temperature = _TEMPERATURE.fullmatch(text)
    if temperature is not None:
        text = _TEMPERATURE_UNITS[(temperature["short"] or temperature["word"]).lower()]
    else:  # a composite unit: each temperature factor in pint's spelling
        text = _TEMPERATURE_TOKEN.sub(_temperature_spelling, text)
    try:
        return _registry().Quantity(1.0, text).units
    except Exception:  # pint raises several error types for text that is no unit
        return None


#: words for the kinds of quantity met in weather and climate data, by a unit of each kind
#: (compared by dimension; the words of the Downscaler's units messages)
_KINDS = (
    ("K", "a temperature"),
    ("Pa", "a pressure"),
    ("m s-1", "a speed (or a depth per time, like mm/h)"),
    ("m", "a length"),
    ("s", "a time"),
    ("kg", "a mass"),
    ("kg m-2 s-1", "a mass flux (like a precipitation rate in kg m-2 s-1)"),
    ("kg m-2", "a mass per area (like a precipitation amount in kg m-2)"),
    ("kg m-3", "a density"),
    ("W m-2", "an energy flux (W m-2)"),
    ("s-1", "a rate per time (like vorticity in s-1)"),
    ("m s-2", "an acceleration"),
    ("m2 s-2", "an energy per mass (like geopotential in m2 s-2)"),
    ("1", "dimensionless (a pure number)"),
)


@functools.cache
def _kind_words() -> dict[Any, str]:
    return {parse_units(unit).dimensionality: words for unit, words in _KINDS}


def quantity_kind(units: str) -> str | None:
    """What a unit measures, in words: ``"a temperature"`` for ``K``, ``"a pressure"`` for ``hPa``.

    For error messages about values that cannot be converted into each other (``K`` against
    ``hPa`` are different quantities, not different units of one).

    Parameters
    ----------
    units : str
        A ``units`` attribute (any spelling :func:`parse_units` reads).

    Returns
    -------
    str or None
        ``"a temperature"``, ``"a pressure"``, ``"a speed (...)"``, ... for the common kinds,
        ``"a quantity of dimension [length] ** 3"`` (pint's dimensions) for the others;
        ``None`` when ``units`` is not a unit.

    Examples
    --------
    >>> quantity_kind("Kelvin"), quantity_kind("hPa"), quantity_kind("not_a_unit")
    ('a temperature', 'a pressure', None)
    """
    unit = parse_units(units)
    if unit is None:
        return None
    dimensionality = unit.dimensionality
    words = _kind_words().get(dimensionality)
    return words if words is not None else f"a quantity of dimension {dimensionality}"


def linear_conversion(found: str, expected: str) -> tuple[float, float] | None:
    """``(scale, offset)`` with ``value_in_expected = value_in_found * scale + offset``.

    ``None`` when either string is not a known unit or the dimensions differ (K and m s-1).
    Identical strings give ``(1.0, 0.0)`` without parsing.

    Parameters
    ----------
    found : str
        The units the values are in (a CF ``units`` string, any common spelling).
    expected : str
        The units wanted.

    Returns
    -------
    tuple of (float, float) or None
        ``(scale, offset)``; a scale within 1e-12 of 1 is 1 and an offset that small is 0, so
        that two spellings of one unit give exactly ``(1.0, 0.0)``. ``None`` when the values
        cannot be converted.

    Examples
    --------
    >>> linear_conversion("degC", "K")
    (1.0, 273.15)
    >>> linear_conversion("m s**-1", "m/s")
    (1.0, 0.0)
    """
    if str(found).strip() == str(expected).strip():
        return 1.0, 0.0
    a, b = parse_units(found), parse_units(expected)
    if a is None or b is None:
        return None
    registry = _registry()
    try:
        zero = registry.Quantity(0.0, a).to(b).magnitude
        one = registry.Quantity(1.0, a).to(b).magnitude
    except Exception:  # DimensionalityError and friends: not convertible
        return None
    scale, offset = float(one - zero), float(zero)
    # round-off of the registry's definitions (1.0000000000000002): snap to exact identities
    if math.isclose(scale, 1.0, rel_tol=1e-12):
        scale = 1.0
    if math.isclose(offset, 0.0, abs_tol=1e-12 * max(1.0, abs(scale))):
        offset = 0.0
    return scale, offset


WATER_DENSITY = 1000.0
"""The density of liquid water (kg m-3) by which a water depth (``mm``, ``m``) is a mass per
area (``kg m-2``), and a depth per time (``mm s-1``) a mass flux (``kg m-2 s-1``)."""


@functools.cache
def water_equivalent(found: str, expected: str) -> float | None:
    """The scale of the liquid-water equivalence from ``found`` to ``expected``, when one is a
    depth (or depth per time) and the other a mass per area (or per area and time).

    Such units measure different quantities, so :func:`linear_conversion` has no conversion;
    for liquid water of density :data:`WATER_DENSITY` they are the standard equivalence
    (1 mm of water is 1 kg m-2). An error message may offer it: it is never applied on its
    own, since a depth of snow, or a length that is no water at all, is not so converted.

    Parameters
    ----------
    found : str
        The units the values are in.
    expected : str
        The units wanted.

    Returns
    -------
    float or None
        ``scale`` with ``value_in_expected = value_in_found * scale`` for liquid water (1 for
        mm to kg m-2, 1000 for m to kg m-2, 0.001 for kg m-2 to m); ``None`` when the pair is
        not a depth against a mass per area (each per time or neither), or either is no unit.

    Examples
    --------
    >>> water_equivalent("m", "kg m-2"), water_equivalent("mm", "kg m-2")
    (1000.0, 1.0)
    >>> water_equivalent("kg m-2 s-1", "mm s-1"), water_equivalent("K", "kg m-2")
    (1.0, None)
    """
    a, b = parse_units(found), parse_units(expected)
    if a is None or b is None:
        return None
    depths = {parse_units("m").dimensionality, parse_units("m s-1").dimensionality}
    registry = _registry()
    density = registry.Quantity(WATER_DENSITY, "kg m-3")
    if a.dimensionality in depths:
        amount = registry.Quantity(1.0, a) * density
    elif b.dimensionality in depths:
        amount = registry.Quantity(1.0, a) / density
    else:
        return None
    try:
        scale = float(amount.to(b).magnitude)
    except Exception:  # DimensionalityError: a depth against something else than water
        return None
    return float(f"{scale:.12g}")  # 1.0000000000000002 of the definitions is 1


@dataclass(frozen=True)
class UnitComparison:
    """How values in one unit relate to another unit (:func:`compare_units`): the one
    classification the unit checks of the metrics, the Downscaler, the normalizer and
    ``flexdownscale evaluate`` share; each words its own message around it.

    Attributes
    ----------
    found : str
        The units the values are in.
    expected : str
        The units wanted.
    conversion : tuple of (float, float) or None
        ``(scale, offset)`` with ``value_in_expected = value_in_found * scale + offset``
        (:func:`linear_conversion`); ``None`` when no conversion exists.

    Examples
    --------
    Wind speeds in km/h where m/s are expected: convertible, by a factor 1 / 3.6, said in
    words and in Python; a pressure against a temperature is another kind of quantity:

    >>> wind = compare_units("km h-1", "m s-1")
    >>> wind.outcome, round(wind.conversion[0], 6)
    ('convertible', 0.277778)
    >>> wind.rule
    'values in m s-1 = values in km h-1 x 0.2777777778'
    >>> wind.code("ws10")
    "ds['ws10'] = (ds['ws10'] * 0.2777777778).assign_attrs(units='m s-1')"
    >>> other = compare_units("hPa", "K")
    >>> other.outcome, other.found_kind, other.expected_kind
    ('other_kind', 'a pressure', 'a temperature')
    """

    found: str
    expected: str
    conversion: tuple[float, float] | None

    @property
    def outcome(self) -> Literal["same", "convertible", "not_a_unit", "other_kind"]:
        """``"same"`` (two spellings of one unit), ``"convertible"`` (degC and K),
        ``"not_a_unit"`` (either string names no unit: the attribute is wrong) or
        ``"other_kind"`` (units of different quantities: K and hPa)."""
        if self.conversion == (1.0, 0.0):
            return "same"
        if self.conversion is not None:
            return "convertible"
        if self.found_kind is None or self.expected_kind is None:
            return "not_a_unit"
        return "other_kind"

    @property
    def found_kind(self) -> str | None:
        """What ``found`` measures, in words (:func:`quantity_kind`); ``None``: no unit."""
        return quantity_kind(self.found)

    @property
    def expected_kind(self) -> str | None:
        """What ``expected`` measures, in words (:func:`quantity_kind`); ``None``: no unit."""
        return quantity_kind(self.expected)

    @property
    def water_scale(self) -> float | None:
        """For ``"other_kind"`` units that are a water depth against a mass per area (``mm``
        and ``kg m-2``; ``m s-1`` and ``kg m-2 s-1``), the scale of the liquid-water
        equivalence (:func:`water_equivalent`); ``None`` otherwise."""
        if self.outcome != "other_kind":
            return None
        return water_equivalent(self.found, self.expected)

    @property
    def water_rule(self) -> str | None:
        """The liquid-water equivalence in words, ``"values in kg m-2 = values in m x 1000"``
        (``"values in kg m-2 s-1 = values in mm/h / 3600"``: a scale below 1 whose inverse is
        a whole number is a division); ``None`` when :attr:`water_scale` is."""
        scale = self.water_scale
        if scale is None:
            return None
        return f"values in {self.expected} = values in {self.found}{_factor(scale, ' x ')}"

    def water_hint(
        self,
        variable: str | None = None,
        *,
        form: Literal["python", "command", "words"] = "python",
        target: str = "ds",
        file: str = "FILE",
    ) -> str | None:
        """The advice for a water depth against a mass per area (:attr:`water_scale`): the
        liquid-water equivalence, that flexdownscale does not assume it, and how to convert;
        the one wording of every units message that meets such a pair.

        Parameters
        ----------
        variable : str or None, default None
            The variable's name (in ``target`` for ``"python"``, in ``file`` for
            ``"command"``); ``None`` for ``"python"`` converts ``target`` itself (a
            DataArray).
        form : {"python", "command", "words"}, default "python"
            How the conversion is given: a line of Python (``ds['tp'] = (ds['tp'] *
            1000).assign_attrs(units='kg m-2')``), NCO commands that convert ``variable`` in
            ``file`` in place (``ncap2`` and ``ncatted``), or in words (``convert obs first
            (values in kg m-2 = values in m x 1000) and set its attrs['units'] = 'kg m-2'``).
        target : str, default "ds"
            The Python name of the dataset (``"python"``) or, for ``"words"``, what is
            converted (``"obs"``).
        file : str, default "FILE"
            The file ``"command"`` converts (the default is a placeholder).

        Returns
        -------
        str or None
            One sentence (no final full stop) starting ``"for liquid water (1000 kg m-3)"``;
            ``None`` when the units are no water depth against a mass per area.

        Examples
        --------
        >>> print(compare_units("m", "kg m-2").water_hint("tp"))  # doctest: +NORMALIZE_WHITESPACE
        for liquid water (1000 kg m-3) a depth is a mass per area, values in kg m-2 = values
        in m x 1000 (1 mm of water is 1 kg m-2); flexdownscale does not assume it (a depth of
        snow is not so converted): if the values are liquid water (a precipitation amount or
        rate), convert first: ds['tp'] = (ds['tp'] * 1000).assign_attrs(units='kg m-2')
        """
        scale = self.water_scale
        if scale is None:
            return None
        amounts = {parse_units(u).dimensionality for u in ("m", "kg m-2")}
        if parse_units(self.found).dimensionality in amounts:
            what = "a depth is a mass per area"
        else:  # each per time (water_equivalent pairs no amount with a rate)
            what = "a depth per time is a mass per area and time"
        act = "convert first: "
        if form == "python":
            term = target if variable is None else f"{target}[{variable!r}]"
            scaled = term if scale == 1.0 else f"({term}{_factor(scale, ' * ')})"
            fix = f"{term} = {scaled}.assign_attrs(units={self.expected!r})"
        elif form == "command":
            if variable is None:
                from .errors import ConfigError

                raise ConfigError(
                    "water_hint(form='command') needs the variable's name in the file, e.g. "
                    "water_hint('tp', form='command', file='obs.nc')"
                )
            file = shlex.quote(file)
            attribute = f"ncatted -O -a units,{variable},o,c,'{self.expected}' {file}"
            fix = attribute
            if scale != 1.0:
                step = _factor(scale, "*").replace(" ", "")
                fix = f"ncap2 -O -s '{variable}={variable}{step}' {file} {file} && {attribute}"
        elif scale == 1.0:  # words: the values stay, the attribute changes
            act = ""
            fix = f"set {target}'s attrs['units'] = {self.expected!r} (the values stay as they are)"
        else:
            inverse = _factor(scale, " x ")
            how = (
                f"divide by{inverse[2:]}"
                if inverse.startswith(" / ")
                else f"multiply by {scale:.10g}"
            )
            act = ""
            fix = f"convert {target} first ({how}) and set its attrs['units'] = {self.expected!r}"
        return (
            f"for liquid water ({WATER_DENSITY:g} kg m-3) {what}, {self.water_rule} (1 mm of "
            "water is 1 kg m-2); flexdownscale does not assume it (a depth of snow is not so "
            "converted): if the values are liquid water (a precipitation amount or rate), "
            f"{act}{fix}"
        )

    def _no_conversion(self, member: str) -> str:
        """The message of :attr:`rule` and :meth:`code` on units that do not convert."""
        kinds = (
            f"{self.found_kind or 'no unit'} against {self.expected_kind or 'no unit'}"
            if self.outcome == "other_kind"
            else "one of them names no unit"
        )
        return (
            f"{self.found!r} does not convert to {self.expected!r} (outcome "
            f"{self.outcome!r}: {kinds}), so it has no {member}; .{member} is for 'same' and "
            "'convertible' outcomes only: check .conversion is not None (or .outcome) first"
        )

    @property
    def rule(self) -> str:
        """The conversion in words, ``"values in K = values in degC + 273.15"``
        (:func:`conversion_rule`); for ``"convertible"`` (and ``"same"``) outcomes only."""
        if self.conversion is None:
            from .errors import UnitsError

            raise UnitsError(self._no_conversion("rule"))
        return conversion_rule(self.found, self.expected, *self.conversion)

    def code(self, variable: str) -> str:
        """One line of Python that converts ``ds[variable]`` into ``expected`` and sets its
        units (:func:`conversion_code`); for ``"convertible"`` outcomes only.

        Parameters
        ----------
        variable : str
            The variable's name in ``ds``.

        Returns
        -------
        str
            E.g. ``ds['t2m'] = (ds['t2m'] + 273.15).assign_attrs(units='K')``.
        """
        if self.conversion is None:
            from .errors import UnitsError

            raise UnitsError(self._no_conversion("code"))
        return conversion_code(variable, *self.conversion, self.expected)


def _factor(scale: float, times: str) -> str:
    """``scale`` as a factor after a value: ``""`` for 1, ``times + "1000"``, and ``" / 3600"``
    for a scale below 1 whose inverse is a whole number (1 / 3600 is not written in full)."""
    if scale == 1.0:
        return ""
    inverse = 1.0 / scale
    if scale < 1.0 and math.isclose(inverse, round(inverse), rel_tol=1e-9):
        return f" / {round(inverse)}"
    return f"{times}{scale:.10g}"


def compare_units(found: str, expected: str) -> UnitComparison:
    """Classify values in ``found`` against the units ``expected``.

    Parameters
    ----------
    found : str
        The units the values are in (a ``units`` attribute, any spelling
        :func:`parse_units` reads).
    expected : str
        The units wanted.

    Returns
    -------
    UnitComparison
        Its ``outcome`` is ``"same"``, ``"convertible"``, ``"not_a_unit"`` or
        ``"other_kind"``; ``rule`` and ``code(variable)`` give a conversion in words and in
        Python.

    Examples
    --------
    >>> compare_units("degC", "K").rule
    'values in K = values in degC + 273.15'
    >>> [compare_units(a, "K").outcome for a in ("kelvin", "degC", "hPa", "not_a_unit")]
    ['same', 'convertible', 'other_kind', 'not_a_unit']
    """
    found, expected = str(found), str(expected)
    return UnitComparison(found, expected, linear_conversion(found, expected))


def same_units(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name the same unit (``K`` and ``kelvin``; not ``degC``).

    Parameters
    ----------
    a, b : str
        CF ``units`` strings.

    Returns
    -------
    bool
        True when :func:`linear_conversion` converts one into the other with scale 1 and
        offset 0; False for other units, different dimensions and strings that are not units
        (two identical strings are the same unit all the same).

    Examples
    --------
    >>> same_units("K", "kelvin"), same_units("m s-1", "m/s")
    (True, True)
    >>> same_units("K", "degC"), same_units("mm", "m")  # convertible, but not the same
    (False, False)
    """
    return linear_conversion(a, b) == (1.0, 0.0)


def conversion_rule(found: str, expected: str, scale: float, offset: float) -> str:
    """In words: ``"values in K = values in degC + 273.15"``.

    Parameters
    ----------
    found : str
        The units the values are in.
    expected : str
        The units they are converted into.
    scale, offset : float
        The conversion ``value_in_expected = value_in_found * scale + offset`` (as
        :func:`linear_conversion` gives it).

    Returns
    -------
    str
        The rule, with ``x scale`` left out when the scale is 1 and the offset left out when it
        is 0 (numbers to 10 significant digits).

    Examples
    --------
    >>> conversion_rule("degC", "K", *linear_conversion("degC", "K"))
    'values in K = values in degC + 273.15'
    >>> conversion_rule("m", "mm", 1000.0, 0.0)
    'values in mm = values in m x 1000'
    """
    rule = f"values in {expected} = values in {found}"
    if scale != 1.0:
        rule += f" x {scale:.10g}"
    if offset:
        rule += f" {'+' if offset > 0 else '-'} {abs(offset):.10g}"
    return rule


def conversion_code(variable: str, scale: float, offset: float, units: str) -> str:
    """Python that converts ``ds[variable]`` with ``scale`` and ``offset`` and sets ``units``.

    Parameters
    ----------
    variable : str
        The variable's name in ``ds``.
    scale, offset : float
        The conversion ``new = old * scale + offset`` (as :func:`linear_conversion` gives it).
    units : str
        The ``units`` attribute the converted variable gets.

    Returns
    -------
    str
        One line of Python, e.g.
        ``ds['t2m'] = (ds['t2m'] + 273.15).assign_attrs(units='K')``, for an error message.

    Examples
    --------
    >>> conversion_code("t2m", 1.0, -273.15, "degC")
    "ds['t2m'] = (ds['t2m'] - 273.15).assign_attrs(units='degC')"
    >>> conversion_code("tp", *linear_conversion("m", "mm"), "mm")
    "ds['tp'] = (ds['tp'] * 1000).assign_attrs(units='mm')"
    """
    term = f"ds[{variable!r}]"
    if scale != 1.0:
        term = f"{term} * {scale:.10g}"
    if offset:
        term = f"({term} {'+' if offset > 0 else '-'} {abs(offset):.10g})"
    elif scale != 1.0:
        term = f"({term})"
    return f"ds[{variable!r}] = {term}.assign_attrs(units={units!r})"
