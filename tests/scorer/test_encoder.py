"""The ONNX encoder: truncation keeps the end, embeddings are unit vectors and faithful across precisions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scorer.artifacts import EncoderSpec
from scorer.encoder import EXACT_INT8_OPTION, Activity, Encoder, LoneRunChooser, Threads, has_vnni, truncate_ids
from scorer.errors import ArtifactError

ENCODER_DIR = Path("build/encoder")


def test_truncate_keeps_head_and_tail() -> None:
    ids = list(range(1000))
    out = truncate_ids(ids, max_tokens=10, head_tokens=3)
    assert out == [0, 1, 2, 995, 996, 997, 998, 999]
    assert truncate_ids([1, 2], 10, 3) == [1, 2]


@pytest.fixture(scope="module")
def encoders() -> dict[str, Encoder]:
    return {p: Encoder(ENCODER_DIR, precision=p) for p in ("fp32", "int8")}  # type: ignore[misc]


def test_unit_norm_and_int8_faithful(encoders: dict[str, Encoder]) -> None:
    texts = ["What is 2 + 2?", "Write a haiku about autumn leaves.", "Explain TCP slow start."]
    fp32 = encoders["fp32"].encode(texts)
    int8 = encoders["int8"].encode(texts)
    assert fp32.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-5)
    assert float((fp32 * int8).sum(axis=1).min()) > 0.95


def test_long_prompt_end_changes_embedding(encoders: dict[str, Encoder]) -> None:
    # Few-shot prompts exceed the window; the question at the end must still matter.
    context = "Example question and answer about history. " * 200
    a, b = encoders["fp32"].encode([context + "What is the capital of France?", context + "Integrate x^2 dx."])
    assert float(a @ b) < 0.99


def test_encode_order_independent(encoders: dict[str, Encoder]) -> None:
    texts = ["short", "a much longer prompt about databases and indexes", "mid length text"]
    enc = encoders["fp32"]
    together = enc.encode(texts, rows_per_run=2)
    alone = np.stack([enc.encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_spec_window_respected() -> None:
    enc = Encoder(ENCODER_DIR, precision="fp32", spec=EncoderSpec(max_tokens=16, head_tokens=4))
    ids = enc.tokenizer.ids(["word " * 100])[0]
    assert len(ids) == 16


def _encoder_dir_with(tmp_path: Path, graphs: dict[str, str]) -> Path:
    """An encoder directory linking the built files, with ``graphs`` mapping file names to built graphs."""
    out = tmp_path / "encoder"
    out.mkdir()
    for name in ("encoder.json", "tokenizer.json", "model.fp32.onnx", "model.int8.onnx"):
        (out / name).symlink_to((ENCODER_DIR / name).resolve())
    for name, target in graphs.items():
        (out / name).symlink_to((ENCODER_DIR / target).resolve())
    return out


def test_unpadded_graph_gives_the_masked_graphs_embeddings(encoders: dict[str, Encoder], tmp_path: Path) -> None:
    """int8 runs one sequence per call on the mask-free graph; its embeddings equal the masked graph's."""
    int8 = encoders["int8"]
    assert int8.has_unpadded_graph  # `ferryman build encoder` writes it
    masked = Encoder(_encoder_dir_with(tmp_path, {}), precision="int8")
    assert not masked.has_unpadded_graph  # an encoder built before it existed still serves, on the masked graph
    texts = ["What is 2 + 2?", "Write a haiku about autumn leaves.", "Explain TCP slow start. " * 60]
    np.testing.assert_allclose(int8.encode(texts), masked.encode(texts), atol=1e-6)
    # A padded batch cannot use the mask-free graph: it runs on the masked one.
    padded = int8.tokenizer.batch(texts[:2])
    assert not padded.attention_mask.all()
    np.testing.assert_array_equal(int8.run(padded), masked.run(padded))


def test_unpadded_graph_that_takes_a_mask_is_refused(tmp_path: Path) -> None:
    bad = _encoder_dir_with(tmp_path, {"model.int8.unpadded.onnx": "model.int8.onnx"})
    with pytest.raises(ArtifactError, match=r"model\.int8\.unpadded\.onnx: must take input_ids and no attention_mask"):
        Encoder(bad, precision="int8")


def _long_texts() -> list[str]:
    """Texts far past the window, built to stress the head/tail cut: every kind of boundary and non-boundary."""
    rng = np.random.default_rng(7)
    pieces = [
        "The quick brown fox jumps over the lazy dog.",
        "naïve café résumé — e\u0301t\u00e9",  # precomposed and combining accents
        "中文没有空格的句子也要正确切分，对吗？",
        "日本語のテキストとカタカナ",
        "ΣΟΦΟΣ λόγος σοφός",  # final sigma
        "[SEP] [CLS][MASK] special tokens in text",
        "tabs\tand\r\nwindows\u2028line\x1cseparators\x1f\u00a0nbsp",
        "def f(x):\n    return x**2  # code\n",
        "emoji 🙂🚀 and symbols ∑∫√",
        "x" * 150,  # one word longer than max_input_chars_per_word
        "hyphen-ated, punct!!!... (brackets) [x] {y} <z>",
        "   ",
    ]
    texts = []
    for n in (40, 120, 400, 1500):
        for _ in range(6):
            texts.append(" ".join(rng.choice(pieces, size=n)))
            texts.append("".join(rng.choice(pieces, size=n)))  # no separator between pieces
    texts.append("word " * 3000)
    texts.append("a" * 20_000 + " tail words here")  # no cut in the head: tokenized whole
    texts.append("head words " + "b" * 20_000)  # no cut in the tail
    texts.append("中" * 5000)
    return texts


@pytest.mark.parametrize(("max_tokens", "head_tokens"), [(256, 32), (128, 32), (16, 4), (64, 0), (8, 8)])
def test_long_text_cut_gives_the_ids_of_the_whole_text(max_tokens: int, head_tokens: int) -> None:
    """Tokenizing only a head and a tail of a long text must give exactly the truncated ids of the whole text."""
    enc = Encoder(ENCODER_DIR, precision="int8", spec=EncoderSpec(max_tokens=max_tokens, head_tokens=head_tokens))
    tok = enc.tokenizer
    texts = _long_texts()
    whole = [
        [tok._cls, *truncate_ids(e.ids, max_tokens, head_tokens), tok._sep]
        for e in tok._tok.encode_batch(texts, add_special_tokens=False)
    ]
    assert tok.ids(texts) == whole
    assert [tok.ids([t])[0] for t in texts] == whole
    cut = sum(tok._long_text_ids(t) is not None for t in texts if len(t) > 8 * max_tokens)
    assert cut >= len(texts) // 2  # the fast path is taken for most of them


def test_lone_call_on_more_threads_gives_identical_embeddings() -> None:
    """A lone call may run on a wide session (2 threads, sleeping or spinning); its embeddings must be bit-identical."""
    activity = Activity()
    wide = Encoder(ENCODER_DIR, precision="int8", threads=Threads(1, 2, activity))
    narrow = Encoder(ENCODER_DIR, precision="int8", threads=1)
    assert len(wide._graphs.wide) == 2 and not narrow._graphs.wide
    texts = [" ".join(["token"] * n) + " end?" for n in (3, 30, 60, 120, 250, 2000)]
    expected = narrow.encode(texts, rows_per_run=1)
    with activity.running():
        assert activity.alone()
        # The chooser tries each session once (one-thread, wide, wide spinning), then the cheapest.
        runs = [wide.encode(texts, rows_per_run=1) for _ in range(4)]
    chooser = wide._graphs.chooser
    assert all(chooser.cost(o) is not None for o in range(3))  # every session ran alone
    with activity.running(), activity.running():
        assert not activity.alone()  # a second call running: always the one-thread session
        runs.append(wide.encode(texts, rows_per_run=1))
    for got in runs:
        assert np.array_equal(got, expected)


NARROW, WIDE, SPIN = 0, 1, 2


def test_lone_run_chooser_prefers_the_cheapest_session_and_keeps_checking_the_others() -> None:
    chooser = LoneRunChooser(3)
    assert [chooser.pick() for _ in range(1)] == [NARROW]  # nothing measured: try each in order
    chooser.record(NARROW, 0.050, 100)
    assert chooser.pick() == WIDE
    chooser.record(WIDE, 0.100, 100)  # wide: 1 ms per token (a loaded machine)
    assert chooser.pick() == SPIN
    chooser.record(SPIN, 0.200, 100)
    picks = [chooser.pick() for _ in range(LoneRunChooser.EXPLORE_EVERY * 4)]
    # the dearer ones, in turn, once per EXPLORE_EVERY runs
    assert picks.count(WIDE) == 2 and picks.count(SPIN) == 2
    for _ in range(20):
        chooser.record(SPIN, 0.020, 100)  # the machine went quiet: spinning got cheapest
    assert chooser.pick() == SPIN


def test_lone_run_chooser_with_one_session_always_picks_it() -> None:
    chooser = LoneRunChooser(1)
    for _ in range(3 * LoneRunChooser.EXPLORE_EVERY):
        assert chooser.pick() == NARROW
        chooser.record(NARROW, 0.01, 100)


def _lone_runs(chooser: LoneRunChooser, cost: dict[int, float], runs: int, slow_run: int = -1) -> list[int]:
    """``runs`` lone runs of 256 tokens, each session costing ``cost[option]`` s per token (run ``slow_run`` 3x)."""
    picks = []
    for i in range(runs):
        option = chooser.pick()
        chooser.record(option, cost[option] * 256 * (3 if i == slow_run else 1), 256)
        picks.append(option)
    return picks


# ms per 256-token run, measured on the 2-vCPU VM (docs/lab-log.md): free cores, 1 thread 15.0, 2 threads
# 9.7, 2 spinning threads 7.9; busy, 2 threads 1.25x the one-thread run and spinning ones 2x.
IDLE = {NARROW: 15.0e-3 / 256, WIDE: 9.7e-3 / 256, SPIN: 7.9e-3 / 256}
BUSY = {NARROW: 16.0e-3 / 256, WIDE: 20.0e-3 / 256, SPIN: 32.0e-3 / 256}


@pytest.mark.parametrize("started_busy", [True, False])
def test_lone_run_chooser_follows_a_change_of_load_within_two_tries(started_busy: bool) -> None:
    """A scorer that started on a busy machine uses the idle cores soon after they free up, and back.

    Under the former exponential average the switch took ~200 full-window calls in a real
    scorer (docs/lab-log.md).
    """
    first, then = (BUSY, IDLE) if started_busy else (IDLE, BUSY)
    chooser = LoneRunChooser(3)
    every = LoneRunChooser.EXPLORE_EVERY
    settled = _lone_runs(chooser, first, 300)[-4 * every :]
    best_first = min(first, key=first.__getitem__)
    assert len(settled) - settled.count(best_first) == 4  # the dearer sessions: only their tries
    picks = _lone_runs(chooser, then, 300)
    best_then = min(then, key=then.__getitem__)
    late = 2 * every * (chooser.options - 1) + 1
    # after two tries of the now cheapest session, it is used; the others only on their tries
    assert len(picks[late:]) - picks[late:].count(best_then) <= len(picks[late:]) // every + 1


def test_lone_run_chooser_is_not_moved_by_one_slow_run() -> None:
    chooser = LoneRunChooser(3)
    _lone_runs(chooser, IDLE, 50)
    picks = _lone_runs(chooser, IDLE, 10, slow_run=0)  # one spinning run took 3x (a burst of other work)
    assert len(picks) - picks.count(SPIN) <= 1  # the others at most on a try, as before the slow run


def test_int8_sessions_use_the_exact_kernels_where_vnni_is_missing(encoders: dict[str, Encoder]) -> None:
    """Without VNNI every session asks for exact uint8 products, so int8 results do not depend on the CPU.

    x86 CPUs without VNNI saturate pairs of products to 16 bits (docs/lab-log.md: embeddings off by
    up to 0.034, MT-Bench APGR by up to 0.014 with byte-identical files); with VNNI the products
    are exact and the option would only cost time.
    """
    graphs = encoders["int8"]._graphs
    for session in (graphs.session, graphs.unpadded):
        assert session is not None
        options = session.get_session_options()
        if has_vnni():
            with pytest.raises(RuntimeError):  # onnxruntime: the entry was never set
                options.get_session_config_entry(EXACT_INT8_OPTION)
        else:
            assert options.get_session_config_entry(EXACT_INT8_OPTION) == "1"


def test_vnni_is_read_from_the_cpu_flags() -> None:
    haswell = "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma bmi2\n"
    icelake = "flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n"
    alder_lake = "flags\t\t: fpu avx2 avx_vnni\n"
    assert not has_vnni(haswell)
    assert has_vnni(icelake) and has_vnni(alder_lake)
    assert not has_vnni("no flags here")


def _with_every_fusion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions made from now on fuse SkipLayerNormalization as well (as before 2026-12-05; other rounding)."""
    import scorer.encoder

    monkeypatch.setattr(scorer.encoder, "DISABLED_FUSIONS", ())


def test_fingerprint_is_the_same_for_the_same_numerics_and_new_for_other_ones(
    encoders: dict[str, Encoder], monkeypatch: pytest.MonkeyPatch
) -> None:
    int8 = encoders["int8"].fingerprint
    assert len(int8) == 16
    # Another instance, and more threads for a lone call (bit-identical results): the same numbers.
    assert Encoder(ENCODER_DIR).fingerprint == int8
    assert Encoder(ENCODER_DIR, threads=Threads(1, 2, Activity())).fingerprint == int8
    # Other precision, other window, other session options: other numbers.
    assert encoders["fp32"].fingerprint != int8
    window = EncoderSpec(name=encoders["int8"].spec.name, max_tokens=128, head_tokens=32)
    assert Encoder(ENCODER_DIR, spec=window).fingerprint != int8
    _with_every_fusion(monkeypatch)
    assert Encoder(ENCODER_DIR).fingerprint != int8
