"""Local sentence encoder: tokenizer + ONNX session, no torch, no remote API.

The encoder is all-MiniLM-L6-v2 written as ONNX by ``ferryman build encoder``
(``scorer.graphs``, no torch) with mean pooling and L2 normalisation inside the
graph, so ``encode`` returns unit-length embeddings directly.

Two graphs per precision may exist: ``model.<p>.onnx`` takes an attention mask (padded
batches), ``model.<p>.unpadded.onnx`` takes none and is used for every run without padding
(with int8, every run: one sequence per run, see ``allowed_rows_per_run``). Without a mask the
attention skips the masking arithmetic (``Where``/``IsNaN`` on every layer's scores) and
the pooling is a plain mean: the same embeddings (cosine to the masked graph ≥ 0.999999 on
the Arena prompts) about 1.1x faster (``ferryman bench encoder``). An encoder directory
without the unpadded graph (built before it existed) still works, on the masked graph.

Truncation keeps the end of a long prompt: the question usually comes last
(after context or few-shot examples), while the first few tokens often name
the task. We keep ``head_tokens`` from the start and fill the remaining window
from the end (see ``truncate_ids``).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import mmap
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from scorer.artifacts import FULL_LAYERS, EncoderSpec, read_json_file
from scorer.errors import ArtifactError

Precision = Literal["int8", "fp32"]
# A text longer than this many characters per window token is cut before tokenizing (see
# ``WordpieceTokenizer._long_text_ids``), and the cut first holds this many per token it needs;
# English averages about 4.5 characters per wordpiece. Was 8: the same ids, but about twice the
# text was tokenized (tokenizer p50 on the bench mix's 257-2k-token prompts 0.54 -> 0.42 ms,
# > 2k 0.61 -> 0.47); at 6 no prompt of the mix needed a second, longer cut (at 5, 8 of 114 did).
_CHARS_PER_TOKEN = 6
# Where a text can be cut without changing its ids: before a space or newline (the pre-tokenizer
# splits words there) or a CJK ideograph (the normaliser puts spaces around each one). Not at
# other whitespace: the normaliser deletes some characters Python calls whitespace (U+001C-1F).
_CUT = re.compile("[ \n\u3400-\u4dbf\u4e00-\u9fff]")
_CUT_SEARCH = 4096
# Shorter runs always take one thread: handing work to a second thread costs about what it saves.
WIDE_MIN_TOKENS = 48
# What ``Encoder.fingerprint`` embeds: a short prompt, one of ~85 wordpieces and one longer than
# any encoder window (~850), so that the graph, its session options, the tokenizer and the
# truncation all show in the numbers.
PROBE_TEXTS = (
    "Hi!",
    "Write a Python function that merges two sorted lists of integers into one sorted list, "
    "explain its time complexity, and give two test cases, one with duplicate values and one "
    "where a list is empty. Then say how you would change it to merge k sorted lists at once "
    "using a heap, and what that costs in time and memory compared with merging pairwise. Keep "
    "the answer short enough to read in two minutes.",
    " ".join(f"Step {i}: the committee reviewed item {i * 7 % 13} and noted {i % 5} open questions." for i in range(60))
    + " Summarise the decisions above in three sentences.",
)
ENCODER_META = "encoder.json"
#: The key of ``encoder.json`` under which ``ferryman build encoder`` records the SHA-256 of the base encoder's
#: files it was written from (``scorer.graphs.base.base_digests``), as a built BERT graph records its own.
BASE_DIGESTS_KEY = "base_sha256"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TOKENIZER_FILE = "tokenizer.json"


def model_file(precision: Precision, *, unpadded: bool = False, layers: int = FULL_LAYERS) -> str:
    """File name of the encoder graph for a precision (``unpadded``: the mask-free graph).

    A graph of the first ``layers`` layers only (``EncoderSpec.layers``) is ``model.<p>[.unpadded].L<n>.onnx``;
    the full encoder's names are unchanged.
    """
    depth = "" if layers == FULL_LAYERS else f".L{layers}"
    return f"model.{precision}{'.unpadded' if unpadded else ''}{depth}.onnx"


def truncate_ids(ids: Sequence[int], max_tokens: int, head_tokens: int) -> list[int]:
    """Cut wordpiece ids (without [CLS]/[SEP]) to ``max_tokens - 2``, keeping head and tail."""
    budget = max_tokens - 2
    if len(ids) <= budget:
        return list(ids)
    head = min(head_tokens, budget)
    tail = budget - head
    return list(ids[:head]) + (list(ids[-tail:]) if tail > 0 else [])


def _next_cut(text: str, start: int) -> int:
    """Index of the first word boundary (``_CUT``) at or after ``start``; ``len(text)`` past the end, -1: none."""
    if start >= len(text):
        return len(text)
    m = _CUT.search(text, start)
    return m.start() if m else -1


def _prev_cut(text: str, end: int) -> int:
    """Index of the last word boundary (``_CUT``) at or before ``end``, looking back at most ``_CUT_SEARCH`` chars."""
    if end <= 0:
        return 0
    lo = max(0, end - _CUT_SEARCH)
    last = -1
    for m in _CUT.finditer(text, lo, end + 1):
        last = m.start()
    return last


#: Session option that makes int8 results independent of the x86 CPU (see ``make_session``).
EXACT_INT8_OPTION = "session.x64quantprecision"
#: How long a spinning intra-op thread waits for work before it sleeps (``make_session``).
SPIN_US = 200
#: onnxruntime graph fusions every session leaves out (``make_session``): ``SkipLayerNormFusion``
#: turned each feed-forward residual ``Add`` + ``LayerNormalization`` into ``SkipLayerNormalization``,
#: whose CPU kernel was 7.7x slower than the pair (256 x 384: 0.38 vs 0.05 ms) and 15 % of a
#: 256-token int8 run; without it that run is 14 % faster on one thread (docs/lab-log.md, 2026-12-05).
DISABLED_FUSIONS = ("SkipLayerNormFusion",)
#: CPU flags (``/proc/cpuinfo``) of the instructions whose int8 products are exact already.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni"})


def has_vnni(cpuinfo: str | None = None) -> bool:
    """True when the CPU has VNNI (AVX512-VNNI or AVX-VNNI), read from ``/proc/cpuinfo``'s flags.

    False when that cannot be read (not Linux): the exact option is then set, which is always correct.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return bool(VNNI_FLAGS & set(line.partition(":")[2].split()))
    return False


@functools.cache
def _exact_int8_needed() -> bool:
    return not has_vnni()


def make_session(path: Path, threads: int, *, spin: bool = False) -> ort.InferenceSession:
    """An onnxruntime CPU session with a fixed intra-op thread count.

    With more than one thread the pool's threads do not spin waiting for work unless ``spin``: on a
    machine whose cores are shared, spinning threads took cores from the very thread they waited
    for (a 256-token run 62 vs 92 ms p50 at load average 7.6 on 2 vCPUs, measured interleaved),
    while on free cores spinning saves the wake-up at each of the graph's ~160 operators (7.9 vs
    9.7 ms, docs/lab-log.md 2026-12-05). ``GraphPair`` keeps both and measures which pays. A
    spinning thread gives up after ``SPIN_US`` without work: onnxruntime's default kept one core
    busy for ~20 ms after every run (CPU time of the process in the 20 ms after a 256-token run:
    20.0 ms; with 200 us 2.2 ms, and the run as fast: 8.14 vs 8.16 ms p50).

    Int8 graphs give the same results on every x86 CPU: without VNNI (AVX2, AVX-512 without
    VNNI, e.g. AMD EPYC Milan, Intel Skylake) onnxruntime's fast uint8 x int8 kernel adds
    pairs of products in saturating 16-bit arithmetic, so embeddings moved by up to 0.034
    (cosine 0.989) against a VNNI machine and MT-Bench APGR by 0.005-0.014 with byte-identical
    files. ``EXACT_INT8_OPTION`` makes such CPUs use the exact uint8 x uint8 kernel instead. It is
    set only where VNNI is missing: VNNI's products are exact already (identical embeddings with
    and without it), and on a VNNI CPU the option costs 1.55x per encoder run (200 tokens, 15.2 vs
    23.7 ms p50, measured interleaved); docs/lab-log.md has the measurements.

    Every session leaves out the fusions in ``DISABLED_FUSIONS`` (faster, and its rounding is part
    of the numbers: ``Encoder.fingerprint`` and the routers trained on them).
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 1:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        if spin:
            opts.add_session_config_entry("session.intra_op.spin_duration_us", str(SPIN_US))
    if _exact_int8_needed():
        opts.add_session_config_entry(EXACT_INT8_OPTION, "1")
    try:
        return ort.InferenceSession(
            str(path),
            sess_options=opts,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(DISABLED_FUSIONS),
        )
    except Exception as exc:  # onnxruntime raises several unrelated types for bad files
        raise ArtifactError(f"{path}: cannot load ONNX model ({type(exc).__name__})") from exc


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_idle_threads() -> int:
    """Intra-op threads for a scoring call that runs alone: every usable CPU, at most 4.

    Measured on 2 vCPUs only (docs/scorer.md); above 4 threads a 256-token MiniLM run has
    too few rows per thread to gain, which was not measured here.
    """
    return max(1, min(usable_cpus(), 4))


class Activity:
    """How many scoring calls run at once in this process, so that a lone call may use idle cores.

    The inference workers each run one ONNX session call at a time with ``threads`` intra-op
    threads; while only one call is running the other cores may be idle, and a long sequence can
    then run on more threads (onnxruntime splits each operator's rows over its threads and every
    output element is still computed by one thread in the same order, so the results are
    bit-identical; ``tests/scorer/test_encoder.py`` checks it). Whether that is faster depends on
    what else the machine runs, so ``LoneRunChooser`` measures it.
    """

    def __init__(self) -> None:
        self._running = 0
        self._lock = threading.Lock()

    @contextmanager
    def running(self) -> Iterator[None]:
        """Count one scoring call for the duration of the block."""
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1

    def alone(self) -> bool:
        """True when at most one scoring call (the caller's) is running."""
        return self._running <= 1


class LoneRunChooser:
    """For a lone run: whichever of a graph's sessions costs least per token lately.

    The sessions (``GraphPair``) are the one-thread session, a wide one whose threads sleep
    between operators and a wide one whose threads spin. On an idle 2-vCPU machine two threads cut
    a 256-token run by ~1.5x, spinning ones by ~1.9x; on one whose cores other processes keep busy,
    a second thread waits for a core at every operator and the run can take twice as long, and
    spinning makes that worse (all measured on the development VM). So the choice is measured: each
    session's cost is the median milliseconds per token of its last ``RECENT`` lone runs, the
    cheapest one is used, and one run in ``EXPLORE_EVERY`` tries one of the others, in turn, so that
    a change of load is noticed within two tries of a session (``2 * EXPLORE_EVERY * (options - 1)``
    lone runs); one slow run moves no median. Sessions never measured are tried first, in order.
    Runs that started while another call was running are not counted. With three sessions each
    dearer one is tried on 1 run in 32, which costs 1/32 of its extra cost: at load 7.6 a sleeping
    2-thread run was 1.25x a one-thread one and a spinning one 1.48x that (docs/lab-log.md,
    2026-12-04, and ``make_session``), together about +3.4 %.
    """

    EXPLORE_EVERY = 16
    RECENT = 3

    def __init__(self, options: int = 2) -> None:
        if options < 1:
            raise ValueError(f"a chooser needs at least one option, got {options}")
        self._recent = [collections.deque[float](maxlen=self.RECENT) for _ in range(options)]
        self._runs = 0
        self._tries = 0
        self._lock = threading.Lock()

    @property
    def options(self) -> int:
        """How many sessions the chooser picks from."""
        return len(self._recent)

    def cost(self, option: int) -> float | None:
        """Seconds per token of the session's recent lone runs (their median); None before any."""
        with self._lock:
            recent = self._recent[option]
            return float(np.median(recent)) if recent else None

    def pick(self) -> int:
        """The session (an index into the options) to run on this time."""
        with self._lock:
            self._runs += 1
            for option, recent in enumerate(self._recent):
                if not recent:
                    return option
            medians = [float(np.median(r)) for r in self._recent]
            best = min(range(len(medians)), key=medians.__getitem__)
            if len(medians) == 1 or self._runs % self.EXPLORE_EVERY:
                return best
            others = [o for o in range(len(medians)) if o != best]
            self._tries += 1
            return others[self._tries % len(others)]

    def record(self, option: int, seconds: float, tokens: int) -> None:
        """Add one lone run's cost per token to its session's recent runs."""
        with self._lock:
            self._recent[option].append(seconds / max(tokens, 1))


@dataclass(frozen=True)
class Threads:
    """Intra-op threads per ONNX run: ``busy`` while other calls run, ``idle`` for a lone call."""

    busy: int = 1
    idle: int = 1
    activity: Activity | None = None

    def __post_init__(self) -> None:
        if self.busy < 1 or self.idle < 1:
            raise ValueError(f"intra-op threads must be >= 1, got busy {self.busy}, idle {self.idle}")


def length_buckets(lengths: Sequence[int], rows_per_run: int, slack: float = 0.15) -> list[list[int]]:
    """Group indices into runs of similar length so that padding stays small.

    On CPU a transformer's cost is proportional to the padded token count, and
    batching saves only per-call overhead, so a batch padded to its longest
    prompt can be slower than no batching at all. Indices are sorted by length
    and a bucket grows while its padded size stays within ``1 + slack`` of its
    real token count (and holds at most ``rows_per_run`` items).
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    buckets: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]
        # Sorted ascending, so ``n`` is the new bucket width.
        if current and (len(current) >= rows_per_run or n * (len(current) + 1) > (1 + slack) * (real + n)):
            buckets.append(current)
            current, real = [], 0
        current.append(i)
        real += n
    if current:
        buckets.append(current)
    return buckets


def allowed_rows_per_run(path: Path, rows_per_run: int) -> int:
    """How many of the requested ``rows_per_run`` sequences one ONNX run of this graph may hold
    without changing any result.

    Dynamically quantised graphs (``DynamicQuantizeLinear``) pick one activation scale
    per tensor, i.e. per batch, so a prompt's score would depend on its batch mates
    (we measured win rates moving by 0.04). Such graphs run one sequence per call;
    on CPU that costs nothing measurable, because the cost is per token, not per call.
    """
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        quantized = data.find(b"DynamicQuantizeLinear") >= 0
    return 1 if quantized else rows_per_run


@dataclass(frozen=True)
class Batch:
    """Padded model inputs for a list of texts."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray


class WordpieceTokenizer:
    """Fast tokenizer with Ferryman's head+tail truncation and dynamic padding."""

    def __init__(self, tokenizer_path: Path, spec: EncoderSpec) -> None:
        if not tokenizer_path.is_file():
            raise ArtifactError(f"{tokenizer_path}: tokenizer not found; run `make setup`")
        self._tok = Tokenizer.from_file(str(tokenizer_path))
        self._tok.no_truncation()
        self._tok.no_padding()
        self.spec = spec
        cls_id = self._tok.token_to_id("[CLS]")
        sep_id = self._tok.token_to_id("[SEP]")
        pad_id = self._tok.token_to_id("[PAD]")
        if cls_id is None or sep_id is None or pad_id is None:
            raise ArtifactError(f"{tokenizer_path}: not a BERT wordpiece tokenizer")
        self._cls, self._sep, self._pad = cls_id, sep_id, pad_id

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with [CLS]/[SEP], truncated to the spec's window.

        A text much longer than the window is not tokenized whole: only a head and a tail cut at
        spaces are (``_long_text_ids``), with the same ids as tokenizing everything and truncating.
        """
        spec = self.spec
        out: list[list[int] | None] = [None] * len(texts)
        short: list[int] = []
        for i, text in enumerate(texts):
            window = self._long_text_ids(text) if len(text) > _CHARS_PER_TOKEN * spec.max_tokens else None
            if window is None:
                short.append(i)
            else:
                out[i] = [self._cls, *window, self._sep]
        if short:
            encs = self._tok.encode_batch([texts[i] for i in short], add_special_tokens=False)
            for i, e in zip(short, encs, strict=True):
                out[i] = [self._cls, *truncate_ids(e.ids, spec.max_tokens, spec.head_tokens), self._sep]
        return [ids for ids in out if ids is not None]  # every slot is filled above

    def _encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def _long_text_ids(self, text: str) -> list[int] | None:
        """``truncate_ids`` of the whole text's ids, from a head and a tail of it; None when it cannot tell.

        BERT's normaliser and pre-tokenizer work character by character and split words at
        spaces, so the ids of ``text`` are the ids of ``text[:p]`` followed by those of
        ``text[p:]`` whenever ``text[p]`` is a word boundary (``_CUT``). Cutting the head just before
        such a character and the tail just at one, growing both until they hold enough tokens,
        gives exactly the window's ids when the two cuts do not overlap (there are then at least
        ``max_tokens - 2`` tokens in all, so the whole text would have been truncated the same way).
        Tokenizing a 1 MB prompt whole took 0.8 s; this takes about a millisecond. A text with
        no boundary where one is needed (a 4,096-character word) returns None and is tokenized whole.
        """
        budget = self.spec.max_tokens - 2
        head_n = min(self.spec.head_tokens, budget)
        tail_n = budget - head_n
        head: list[int] = []
        head_end = 0
        chars = _CHARS_PER_TOKEN * head_n
        while len(head) < head_n:
            head_end = _next_cut(text, chars)
            if head_end < 0:
                return None
            head = self._encode(text[:head_end])
            if len(head) < head_n and head_end == len(text):
                return None
            chars *= 4
        tail: list[int] = []
        tail_start = len(text)
        chars = _CHARS_PER_TOKEN * tail_n
        while len(tail) < tail_n:
            tail_start = _prev_cut(text, len(text) - chars)
            if tail_start < head_end or tail_start <= 0:
                return None
            tail = self._encode(text[tail_start:])
            chars *= 4
        return head[:head_n] + (tail[len(tail) - tail_n :] if tail_n else [])

    def batch(self, texts: Sequence[str]) -> Batch:
        """Tokenize and pad to the longest sequence of the batch."""
        return self.pad(self.ids(texts))

    def pad(self, seqs: Sequence[Sequence[int]]) -> Batch:
        """Pad token id sequences (from ``ids``) to the longest one."""
        width = max(len(s) for s in seqs)
        ids = np.full((len(seqs), width), self._pad, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return Batch(ids, mask, np.zeros_like(ids))


def feeds(batch: Batch, names: set[str]) -> dict[str, np.ndarray]:
    """The batch's arrays that a graph with inputs ``names`` takes (``INPUTS`` order)."""
    arrays = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    arrays["token_type_ids"] = batch.token_type_ids
    return {k: v for k, v in arrays.items() if k in names}


class GraphPair:
    """An ONNX graph over a padded batch and, optionally, its mask-free twin for batches without padding.

    The masked graph takes ``input_ids`` and ``attention_mask`` (and ``token_type_ids`` if it
    declares it); the unpadded one takes ``input_ids`` and no mask. ``run`` picks the unpadded
    graph whenever the batch has no padding (see the module docstring for why). With
    ``threads.idle`` above ``threads.busy``, the graph that runs unpadded batches gets two more
    sessions with that many intra-op threads, one whose threads sleep between operators and one
    whose threads spin (``make_session``), which a long run may use while no other scoring call
    runs (``Activity``) and it is measured to be faster (``LoneRunChooser``). Every session
    computes bit-identical results (``tests/scorer/test_encoder.py``).
    """

    def __init__(self, path: Path, unpadded_path: Path | None, threads: Threads | int) -> None:
        self.threads = threads if isinstance(threads, Threads) else Threads(threads, threads)
        busy = self.threads.busy
        self.session = make_session(path, busy)
        self.inputs = {i.name for i in self.session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= self.inputs <= set(INPUTS):
            raise ArtifactError(f"{path}: graph inputs must be input_ids, attention_mask[, token_type_ids]")
        self.unpadded: ort.InferenceSession | None = None
        self.unpadded_inputs: set[str] = set()
        if unpadded_path is not None:
            self.unpadded = make_session(unpadded_path, busy)
            self.unpadded_inputs = {i.name for i in self.unpadded.get_inputs()}
            if not {"input_ids"} <= self.unpadded_inputs <= {"input_ids", "token_type_ids"}:
                raise ArtifactError(f"{unpadded_path}: must take input_ids and no attention_mask")
        # The sessions a lone call may run unpadded batches on besides the one-thread one (see
        # ``Activity``): threads sleeping between operators, then spinning. Chooser option 0 is the
        # one-thread session, option i the wide session i - 1.
        self.wide: list[ort.InferenceSession] = []
        self.wide_inputs = self.unpadded_inputs if self.unpadded is not None else self.inputs
        if self.threads.idle > busy and self.threads.activity is not None:
            graph = unpadded_path or path
            self.wide = [make_session(graph, self.threads.idle, spin=spin) for spin in (False, True)]
        self.chooser = LoneRunChooser(1 + len(self.wide))

    def run(self, batch: Batch) -> np.ndarray:
        """The first output for a prepared batch, on the unpadded graph when the batch has no padding."""
        if not batch.attention_mask.all():
            return self._run(self.session, self.inputs, batch)
        narrow, narrow_inputs = (
            (self.unpadded, self.unpadded_inputs) if self.unpadded is not None else (self.session, self.inputs)
        )
        activity = self.threads.activity
        tokens = batch.input_ids.size
        if not self.wide or activity is None or tokens < WIDE_MIN_TOKENS or not activity.alone():
            return self._run(narrow, narrow_inputs, batch)
        option = self.chooser.pick()
        started = time.perf_counter()
        if option == 0:
            out = self._run(narrow, narrow_inputs, batch)
        else:
            out = self._run(self.wide[option - 1], self.wide_inputs, batch)
        self.chooser.record(option, time.perf_counter() - started, tokens)
        return out

    @staticmethod
    def _run(session: ort.InferenceSession, names: set[str], batch: Batch) -> np.ndarray:
        return np.asarray(session.run(None, feeds(batch, names))[0])


class Encoder:
    """Embeds texts into unit vectors with the exported ONNX encoder."""

    def __init__(
        self,
        encoder_dir: Path,
        *,
        precision: Precision = "int8",
        spec: EncoderSpec | None = None,
        threads: Threads | int = 1,
    ) -> None:
        self.meta = self.read_meta(encoder_dir)
        self.spec = spec or EncoderSpec(name=str(self.meta.get("name", "all-MiniLM-L6-v2")))
        layers = self.spec.layers
        model_path = encoder_dir / model_file(precision, layers=layers)
        if not model_path.is_file():
            hint = (
                "run `make setup`"
                if layers == FULL_LAYERS
                else f"this router's encoder keeps {layers} of {FULL_LAYERS} layers (its manifest's encoder.layers): "
                f"run `ferryman build encoder --layers {layers}` (`make setup` builds every depth the routers name)"
            )
            raise ArtifactError(f"{model_path}: encoder graph missing; {hint}")
        self.precision = precision
        self.dim = int(str(self.meta.get("dim", 384)))
        self.tokenizer = WordpieceTokenizer(encoder_dir / TOKENIZER_FILE, self.spec)
        unpadded_path = encoder_dir / model_file(precision, unpadded=True, layers=layers)
        self._graphs = GraphPair(model_path, unpadded_path if unpadded_path.is_file() else None, threads)
        self.rows_per_run_limit = allowed_rows_per_run(model_path, 1 << 30)

    @functools.cached_property
    def fingerprint(self) -> str:
        """A digest of the numbers this encoder produces: first 16 hex digits of the SHA-256 of its
        float32 embeddings of ``PROBE_TEXTS``, each alone (the unpadded graph when there is one) and
        all three as one padded batch (the masked graph).

        Caches of embeddings or scores key by it, so that a different graph file, session option,
        CPU kernel path, tokenizer or window is never served from numbers another encoder produced,
        without a version to bump by hand. The digest is exact: any changed bit is a new
        fingerprint. Computed once per encoder (~0.1 s on two shared cores). A truncated encoder
        (``EncoderSpec.layers``) also hashes its depth, so it can never share a fingerprint with
        another depth; the full encoder's digest is what it was before depths existed.
        """
        ids = self.tokenizer.ids(PROBE_TEXTS)
        runs = [self.run(self.tokenizer.pad([s])) for s in ids] + [self.run(self.tokenizer.pad(ids))]
        data = np.concatenate(runs).astype("<f4", copy=False).tobytes()
        if self.spec.layers != FULL_LAYERS:
            data += f"layers={self.spec.layers}".encode()
        return hashlib.sha256(data).hexdigest()[:16]

    @property
    def has_unpadded_graph(self) -> bool:
        """Whether runs without padding use the mask-free graph (see the module docstring)."""
        return self._graphs.unpadded is not None

    @staticmethod
    def read_meta(encoder_dir: Path) -> dict[str, object]:
        """Contents of ``encoder.json``; raises ``ArtifactError`` naming it when missing or corrupt."""
        meta_path = encoder_dir / ENCODER_META
        meta = read_json_file(meta_path, missing="encoder not built; run `make setup` (ferryman build encoder)")
        if not isinstance(meta, dict):
            raise ArtifactError(f"{meta_path}: must be a JSON object")
        return meta

    @staticmethod
    def base_digests(meta: Mapping[str, object]) -> dict[str, str] | None:
        """The base encoder files' SHA-256 that ``encoder.json`` (``meta``) records (None: it records none)."""
        raw = meta.get(BASE_DIGESTS_KEY)
        return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else None

    def run(self, batch: Batch) -> np.ndarray:
        """Run the graph on a prepared batch; returns float32 [B, dim].

        A batch without padding runs on the mask-free graph when there is one.
        """
        return np.asarray(self._graphs.run(batch), dtype=np.float32)

    def encode(self, texts: Sequence[str], rows_per_run: int = 64) -> np.ndarray:
        """Embed texts (any count) in length buckets of at most ``rows_per_run`` (see ``length_buckets``).

        Results do not depend on which other texts are encoded with a text (see ``allowed_rows_per_run``).
        """
        return self.encode_ids(self.tokenizer.ids(texts), rows_per_run)

    def encode_ids(self, seqs: Sequence[Sequence[int]], rows_per_run: int = 64) -> np.ndarray:
        """Embed already tokenized sequences (from ``tokenizer.ids``)."""
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        for bucket in length_buckets([len(s) for s in seqs], min(rows_per_run, self.rows_per_run_limit)):
            out[bucket] = self.run(self.tokenizer.pad([seqs[i] for i in bucket]))
        return out
