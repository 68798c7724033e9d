"""``ferryman calibrate``: thresholds for target strong-call shares, stored in the manifest.

An operator should be able to ask for "30 % strong calls" instead of an opaque
score threshold. This scores a reference prompt set that looks like real user
traffic — by default the 300 Chatbot Arena prompts of ``arena-bench-v1`` (not
the MMLU/GSM8K/MT-Bench evaluation prompts) — through the scorer's BatchScore
RPC, and writes the threshold for every share 0, 1, ..., 100 % into the
artifact's ``manifest.json`` (``calibration``), with the reference it used.

``ferryman calibrate points`` (:mod:`lab.eval.points`) is the other calibration: a ``cost_share``
policy's ``operating_points``, fitted on the operator's own graded prompts.

Threshold for share ``s`` of the reference prompts: ``ferryman.calibration.share_threshold``
(the rule the gateway's online calibration also uses on live traffic). Thresholds never
increase with the share.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ferryman import paths
from ferryman.calibration import share_threshold
from ferryman.cli import int_at_least
from lab.data.battles import load_battles, load_questions
from lab.data.benchmarks import default_data_dir
from lab.data.keys import prompt_key
from lab.data.report import DataError
from lab.eval.scoring import ScorerClient, ScorerUnreachableError, local_scorer
from scorer.artifacts import Calibration, CalibrationPoint, load_artifact, write_manifest
from scorer.errors import ArtifactError

DEFAULT_REFERENCE = Path("arena-bench-v1") / "questions.jsonl"
SHARES: tuple[float, ...] = tuple(i / 100 for i in range(101))
#: Subcommands beside ``ferryman calibrate ARTIFACT ...`` (``ferryman.cli``): chosen by the first argument.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "points": (
        "lab.eval.points",
        "fit a cost_share policy's operating_points on your own graded prompts (prints the YAML to paste)",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ferryman calibrate``."""
    parser.description = (
        "Score a reference prompt set that looks like real traffic (default: the 300 Chatbot Arena prompts of "
        "arena-bench-v1) through the scorer's BatchScore RPC and store, in each artifact's manifest.json, the "
        "threshold that sends 0, 1, ..., 100 % of those prompts to the strong model, so that an operator can ask "
        "for a strong-call share instead of a raw threshold. `ferryman calibrate points --help`: a cost_share "
        "policy's operating points fitted on your own graded prompts (an artifact directory named 'points': "
        "give it as ./points)."
    )
    parser.add_argument("artifacts", nargs="+", type=Path, help="router artifact directories to calibrate")
    parser.add_argument(
        "--reference",
        type=Path,
        help=f"reference prompts: a questions JSONL ({{question_id, turns}}) or a battles file "
        f"(Arena 55k schema); default: <data-dir>/{DEFAULT_REFERENCE}",
    )
    parser.add_argument("--data-dir", type=Path, help="public data (default: $FERRYMAN_DATA or ../shared/data)")
    parser.add_argument("--scorer", metavar="ADDRESS", help="use a running scorer (must have the routers loaded)")
    parser.add_argument("--encoder-dir", type=Path, default=paths.encoder_dir(), help="ONNX encoder")
    parser.add_argument("--threads", type=int_at_least(1), default=2, help="ONNX threads of the in-process scorer")
    parser.add_argument("--batch-size", type=int_at_least(1), default=128, help="items per BatchScore request")
    parser.add_argument("--dry-run", action="store_true", help="print the thresholds, do not write manifests")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def load_reference(path: Path) -> list[str]:
    """Distinct reference prompts (last user turn), from a questions JSONL or a battles file."""
    prompts: list[str]
    if path.suffix.lower() in (".jsonl", ".json") and _looks_like_questions(path):
        turns, report = load_questions(path)
        prompts = [t[-1] for t in turns.values()]
    else:
        battles, report = load_battles(path)
        prompts = [b.prompt for b in battles]
    print(report.summary(), file=sys.stderr, flush=True)
    unique = list(dict.fromkeys(prompts))
    if len(unique) < 2:
        raise DataError(f"{path}: need at least 2 distinct reference prompts, found {len(unique)}")
    return unique


def _looks_like_questions(path: Path) -> bool:
    import json

    with path.open("r", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                with contextlib.suppress(json.JSONDecodeError):
                    row = json.loads(line)
                    return isinstance(row, dict) and "turns" in row
                return False
    return False


def thresholds(scores: Sequence[float] | np.ndarray, shares: Sequence[float] = SHARES) -> tuple[CalibrationPoint, ...]:
    """Calibration points: for each share, the threshold that sends that share of ``scores`` strong."""
    ranked = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if len(ranked) < 2 or not np.isfinite(ranked).all():
        raise ValueError("need at least 2 finite scores")
    ranked_list = ranked.tolist()
    return tuple(CalibrationPoint(strong_share=float(s), threshold=share_threshold(ranked_list, s)) for s in shares)


def _reference_label(path: Path, prompts: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join(prompt_key(p) for p in prompts).encode()).hexdigest()[:12]
    return f"{path.parent.name}/{path.name}: {len(prompts)} prompts, last user turn (set sha256 {digest})"


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ferryman calibrate``."""
    try:
        reference = args.reference or (args.data_dir or default_data_dir()) / DEFAULT_REFERENCE
        prompts = load_reference(reference)
        artifacts = {}
        for path in args.artifacts:
            manifest = load_artifact(path).manifest
            if manifest.name in artifacts:
                raise ArtifactError(f"{path}: router name {manifest.name!r} given twice")
            artifacts[manifest.name] = path
    except (DataError, ArtifactError) as exc:
        print(f"ferryman calibrate: {exc}", file=sys.stderr)
        return 2
    label = _reference_label(reference, prompts)
    keys = [prompt_key(p) for p in prompts]
    with contextlib.ExitStack() as stack:
        target = args.scorer or stack.enter_context(local_scorer(artifacts, args.encoder_dir, threads=args.threads))
        try:  # empty strong/weak: each router's default pair, the one the gateway asks for by default
            client = stack.enter_context(ScorerClient(target, strong="", weak="", batch_size=args.batch_size))
        except ScorerUnreachableError as exc:
            print(f"ferryman calibrate: {exc}", file=sys.stderr)
            return 2
        for name, path in artifacts.items():
            scores = client.score(
                [(name, k, p) for k, p in zip(keys, prompts, strict=True)],
                label=f"calibrating {name}",
                progress=not args.quiet,
            )
            points = thresholds(scores)
            shown = ", ".join(f"{int(p.strong_share * 100)} %: {p.threshold:.4f}" for p in points[10:100:20])
            print(f"{name}: thresholds {shown} (reference {label})")
            if not args.dry_run:
                artifact = load_artifact(path)
                cal = Calibration(reference=label, points=points)
                written = write_manifest(path, replace(artifact.manifest, calibration=cal))
                print(f"{name}: wrote calibration ({len(points)} points) to {written}")
    return 0
