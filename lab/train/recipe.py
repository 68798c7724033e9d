"""Training recipes: one TOML file per shipped router (``lab/recipes/<name>.toml``).

A recipe says how a router is trained: its kind, seed, data (golden benchmarks and an optional
battles file under the data directory), encoder window and the kind's settings (the fields of its
trainer's settings dataclass; a field a recipe leaves out keeps the dataclass default). Both
``make routers`` (``ferryman train KIND``) and ``make crossfit`` (``ferryman train crossfit``)
read them, so the shipped recipe lives in one place. ``--set [NAME.]KEY=VALUE`` overrides one
value (KEY: a settings field, ``seed``, ``length_beta``, ``max_tokens`` or ``head_tokens``).

``length_beta`` (any kind that trains on data; default 0 = none): the artifact gets a length head
(``scorer.routers.length_head``), its logit plus ``length_beta`` times the standardised
log-length of the prompt, standardised on the prompts it trained on. :func:`train_recipe` trains
every recipe artifact (``ferryman train``, cross-fitting, leave-one-source-out) and adds it.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lab.data.benchmarks import default_data_dir
from lab.data.folds import FoldAssignment
from lab.train.data import TrainingData, load_training_data, parse_arena, parse_golden
from lab.train.jobs import Target, TrainContext, trainer_for
from scorer.artifacts import FULL_LAYERS, MANIFEST_NAME, EncoderSpec, parse_manifest, read_json_file, write_manifest
from scorer.routers import ROUTER_KINDS, truncation_refused
from scorer.routers.length_head import PARAM as LENGTH_HEAD
from scorer.routers.length_head import LengthHead

_TOP = {"kind", "seed", "length_beta", "data", "encoder", "settings"}
_ENCODER = {"max_tokens", "head_tokens", "layers"}


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe: what ``ferryman train`` needs besides run options (paths, threads)."""

    name: str
    kind: str
    seed: int
    golden: tuple[str, ...]
    battles: str | None  # path under the data directory
    encoder: EncoderSpec
    settings: Any  # the kind's settings dataclass
    source: str
    arena: tuple[str, ...] = ()  # named Arena sources (lab.data.sources)
    length_beta: float = 0.0  # weight of the length head (scorer.routers.length_head); 0 = none

    def battles_path(self, data_dir: Path | None) -> Path | None:
        """The battles file: an absolute path as it is, a relative one under the data directory."""
        if self.battles is None:
            return None
        path = Path(self.battles)
        if path.is_absolute():
            return path
        if data_dir is None:
            raise ValueError(f"{self.source}: data.battles {self.battles!r} needs the data directory")
        return data_dir / path


def shipped_names() -> list[str]:
    """Names of the recipes shipped in ``lab/recipes`` (sorted)."""
    root = resources.files("lab") / "recipes"
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


def recipe_source(name_or_path: str) -> tuple[str, str, dict[str, Any]]:
    """(name, source, raw table) of a shipped recipe name or a ``.toml`` path."""
    shipped = name_or_path in shipped_names()
    if not name_or_path.endswith(".toml") and not shipped and name_or_path in ROUTER_KINDS:
        return name_or_path, f"defaults of {name_or_path}", {"kind": name_or_path}  # no shipped recipe, no data
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read recipe ({exc.strerror})") from exc
        name, source = path.stem, str(path)
    else:
        ref = resources.files("lab") / "recipes" / f"{name_or_path}.toml"
        if not ref.is_file():
            raise ValueError(f"no shipped recipe {name_or_path!r}; shipped: {', '.join(shipped_names())}")
        text, name, source = ref.read_text(), name_or_path, f"lab/recipes/{name_or_path}.toml"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not valid TOML ({exc})") from exc
    return name, source, raw


def load_recipe(name_or_path: str, overrides: Sequence[str] = ()) -> Recipe:
    """A recipe from a shipped name (``mf``) or a file, with ``--set`` overrides applied."""
    name, source, raw = recipe_source(name_or_path)
    return parse_recipe(raw, name=name, source=source, overrides=overrides)


def parse_recipe(raw: Mapping[str, Any], *, name: str, source: str, overrides: Sequence[str] = ()) -> Recipe:
    """Validate a recipe table; unknown keys and wrong types are errors naming ``source``."""
    _known(raw, _TOP, source, "")
    kind = raw.get("kind")
    if not isinstance(kind, str):
        raise ValueError(f"{source}: 'kind' must name a router kind")
    trainer = trainer_for(kind)
    data = raw.get("data", {})
    encoder = raw.get("encoder", {})
    settings = raw.get("settings", {})
    for table, what in ((data, "data"), (encoder, "encoder"), (settings, "settings")):
        if not isinstance(table, dict):
            raise ValueError(f"{source}: [{what}] must be a table")
    _known(data, {"golden", "arena", "battles"}, source, "data.")
    _known(encoder, _ENCODER, source, "encoder.")
    values: dict[str, Any] = {
        "seed": raw.get("seed", 0),
        "length_beta": raw.get("length_beta", 0.0),
        **encoder,
        **settings,
    }
    origin: dict[str, str] = {}  # where a value came from, when not the recipe: the --set that gave it
    for item in overrides:
        key, value = _override(item, name)
        if key is not None:
            values[key] = value
            origin[key] = f"--set {item}"
    fields = {f.name: f for f in dataclasses.fields(trainer.settings)}
    hints = typing.get_type_hints(trainer.settings)
    chosen: dict[str, Any] = {}
    seed = 0
    length_beta = 0.0
    for key, value in values.items():
        where = origin.get(key, source)
        if key == "seed":
            seed = _coerce(value, int, where, key)
        elif key == "length_beta":
            length_beta = _coerce(value, float, where, key)
        elif key in _ENCODER:
            encoder = {**encoder, key: _coerce(value, int, where, f"encoder.{key}")}
        elif key in fields:
            chosen[key] = _coerce(value, hints[key], where, key)
        else:
            known = ", ".join(["seed", "length_beta", *_ENCODER, *fields])
            raise ValueError(f"{where}: {kind} has no setting {key!r}; known: {known}")
    golden = data.get("golden", [])
    if not isinstance(golden, list) or not all(isinstance(g, str) for g in golden):
        raise ValueError(f"{source}: data.golden must be a list of benchmark names")
    arena = data.get("arena", [])
    if not isinstance(arena, list) or not all(isinstance(a, str) for a in arena):
        raise ValueError(f"{source}: data.arena must be a list of arena source names")
    battles = data.get("battles", "")
    if not isinstance(battles, str):
        raise ValueError(f'{source}: data.battles must be a path under the data directory (or "")')
    if not (math.isfinite(length_beta) and length_beta >= 0):
        raise ValueError(f"{source}: length_beta must be a number >= 0 (0 = no length head), is {length_beta}")
    if length_beta and chosen.get("length_joint"):
        raise ValueError(f"{source}: length_joint fits the length head's beta; length_beta must then be 0")
    layers = int(encoder.get("layers", FULL_LAYERS))
    if not 1 <= layers <= FULL_LAYERS:
        raise ValueError(f"{source}: encoder.layers must be 1..{FULL_LAYERS} (the base encoder's layers)")
    if layers != FULL_LAYERS and (why := truncation_refused(kind)):  # was: trained at full depth, labelled N
        raise ValueError(f"{origin.get('layers', source)}: encoder.layers {layers}: {why}")
    if length_beta and not trainer.needs_data:
        raise ValueError(f"{source}: a {kind} router has no training prompts to standardise a length head on")
    try:
        return Recipe(
            name=name,
            kind=kind,
            seed=seed,
            golden=tuple(parse_golden(",".join(golden))),
            battles=battles or None,
            arena=tuple(parse_arena(arena)),
            encoder=EncoderSpec(**{k: int(v) for k, v in encoder.items()}),  # type: ignore[arg-type]
            settings=trainer.settings(**chosen),
            source=source,
            length_beta=length_beta,
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from exc


def describe(recipe: Recipe) -> str:
    """One line: where a recipe comes from and every value it sets (for ``--help`` and logs)."""
    named = ",".join([*recipe.golden, *recipe.arena])
    data = named + (f" + {recipe.battles}" if recipe.battles else "") or "none"
    values = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(recipe.settings).items())
    window = f"max_tokens={recipe.encoder.max_tokens}, head_tokens={recipe.encoder.head_tokens}"
    if recipe.encoder.layers != FULL_LAYERS:
        window += f", layers={recipe.encoder.layers}"
    head = f", length_beta={recipe.length_beta:g}" if recipe.length_beta else ""
    return f"{recipe.source}: seed={recipe.seed}, data {data}, {window}{head}" + (f", {values}" if values else "")


def recipe_data(
    recipe: Recipe, data_dir: Path | None, *, exclude: FoldAssignment | None = None, fold: int | None = None
) -> TrainingData:
    """The recipe's training data (golden labels, arena sources, battles file), without fold ``fold`` of
    ``exclude``; ``data_dir`` defaults to ``$FERRYMAN_DATA`` when the recipe names data there."""
    named = recipe.golden or recipe.arena or recipe.battles
    data_dir = data_dir or (default_data_dir() if named else None)
    return load_training_data(
        battles=recipe.battles_path(data_dir),
        golden=list(recipe.golden),
        arena=list(recipe.arena),
        data_dir=data_dir,
        exclude=exclude,
        fold=fold,
    )


def train_recipe(recipe: Recipe, data: TrainingData | None, target: Target, ctx: TrainContext) -> Path:
    """Train one artifact of ``recipe`` with its kind's trainer, then add its length head (if any)."""
    out = trainer_for(recipe.kind).train(data, target, recipe.encoder, recipe.settings, ctx)
    if recipe.length_beta:
        if data is None:
            raise ValueError(f"{recipe.source}: a length head needs the training prompts")
        add_length_head(out, LengthHead.of_lengths(recipe.length_beta, data.prompts()))
    return out


def add_length_head(out_dir: Path, head: LengthHead) -> None:
    """Record ``head`` in an artifact's manifest (``params.length_head``, and in its provenance)."""
    path = out_dir / MANIFEST_NAME
    manifest = parse_manifest(read_json_file(path, missing="manifest not found"), path)
    params = {**manifest.params, LENGTH_HEAD: head.to_params()}
    prov = {**manifest.provenance, "length_beta": f"{head.beta:g}"}
    write_manifest(out_dir, dataclasses.replace(manifest, params=params, provenance=prov))


def _known(table: Mapping[str, Any], allowed: set[str], source: str, prefix: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {', '.join(prefix + k for k in unknown)}")


def _override(item: str, name: str) -> tuple[str | None, str]:
    """``[NAME.]KEY=VALUE`` -> (KEY, VALUE) when it applies to recipe ``name``, else (None, ...)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--set {item!r}: expected [ROUTER.]KEY=VALUE")
    router, dot, field = key.rpartition(".")
    if dot and router != name:
        return None, value
    return (field if dot else key), value


def _coerce(value: Any, kind: Any, source: str, key: str) -> Any:
    """A TOML or ``--set`` value as the field's type (int, float, bool or str)."""
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "false"):
                return str(value).lower() == "true"
            raise ValueError(value)
        if kind is int:
            if isinstance(value, (float, bool)):
                raise ValueError(value)
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except ValueError:
        raise ValueError(f"{source}: {key} must be {getattr(kind, '__name__', kind)}, got {value!r}") from None
