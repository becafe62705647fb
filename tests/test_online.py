"""Tests of the streaming enhancer OnlineNMF, its streaming STFT and its kernels.

The streaming STFT (``pse_nmf.audio._stream``) and the kernels
(``pse_nmf.decomposition._online_kernels``) are internals, reached for on purpose.
"""

import numpy as np
import pytest
import soundfile as sf

from pse_nmf import OnlineNMF, SemiSupervisedNMF
from pse_nmf import load as load_model
from pse_nmf.audio import istft, stft
from pse_nmf.audio._stream import StreamingSTFT, hann_window, overlap_add
from pse_nmf.decomposition._nmf import _factorize
from pse_nmf.decomposition._online import online_frames
from pse_nmf.decomposition._online_kernels import pending_masks
from pse_nmf.metrics import si_sdr

SR = 16000


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def online(example_task):
    """A small OnlineNMF fitted on real enrollment speech (fast settings). Do not modify: clone it."""
    return OnlineNMF(n_components=16, n_noise_components=4, buffer_size=8, max_iter=30, tol=0,
                     random_state=0).fit(example_task.enrollment)


@pytest.fixture(scope="module")
def noisy(real_mixture):
    """1.5 s of a real 0 dB mixture (float32)."""
    return real_mixture.mixture[: int(1.5 * SR)].astype(np.float32)


def _fresh(model):
    from sklearn.base import clone

    m = clone(model)
    m.fit_attrs = None
    for name in ("components_", "initial_noise_components_", "n_iter_", "n_features_in_"):
        setattr(m, name, getattr(model, name))
    m._stream = None
    return m


def _stream(model, x, sizes):
    """Run ``x`` through ``model``'s live stream in blocks of ``sizes``; return all output."""
    model.reset()
    out, i = [], 0
    for n in sizes:
        block = x[i:i + n]
        y = model.process(block)
        assert y.shape == block.shape and y.dtype == np.float32
        out.append(y)
        i += n
    assert i >= x.size
    tail = model.flush()
    assert tail.shape == (model.latency,)
    return np.concatenate(out + [tail])


# --------------------------------------------------------------------------- streaming STFT

# whole-signal STFT through the streaming one: test helpers (issue 18 moved them out of the package)
def stream_stft(x, *, n_fft=1024, hop_length=256):
    """Whole-signal STFT through :class:`StreamingSTFT` (same frames as ``pse_nmf.audio.stft``).

    Returns
    -------
    S : complex ndarray of shape (1 + len(x) // hop_length, n_fft // 2 + 1)
    """
    st = StreamingSTFT(n_fft, hop_length)
    return np.vstack([st.analyze(np.asarray(x, dtype=np.float64)), st.finish()])


def stream_istft(S, length, *, n_fft=1024, hop_length=256):
    """Inverse of :func:`stream_stft` for a signal of ``length`` samples (as ``pse_nmf.audio.istft``)."""
    st = StreamingSTFT(n_fft, hop_length)
    st._n_in = int(length)
    st._next_frame = S.shape[0]
    st._finished = True
    if S.shape[0] != st.n_frames_total():
        raise ValueError(f"{S.shape[0]} frames do not fit a signal of {length} samples")
    return st.synthesize(np.asarray(S), final=True)


@pytest.mark.parametrize("n", [1, 255, 256, 1023, 1024, 1500, 4097, 16000])
def test_stream_stft_matches_library_stft(n, rng):
    x = rng.standard_normal(n).astype(np.float32)
    S_lib = stft(x)
    S = stream_stft(x)
    assert S.shape == S_lib.shape == (1 + n // 256, 513)
    # librosa computes in float32; ours in float64
    np.testing.assert_allclose(S, S_lib, atol=1e-4 * np.abs(S_lib).max())
    np.testing.assert_allclose(stream_istft(S, n), istft(S_lib, length=n), atol=1e-5)
    np.testing.assert_allclose(stream_istft(S, n), x, atol=1e-6)


def test_streaming_stft_block_sizes_give_identical_samples(rng):
    x = rng.standard_normal(9000)

    def run(sizes):
        st = StreamingSTFT(1024, 256)
        out, i = [], 0
        for n in sizes:
            out.append(st.synthesize(st.analyze(x[i:i + n])))
            i += n
        out.append(st.synthesize(st.finish(), final=True))
        return np.concatenate(out)

    whole = run([x.size])
    assert whole.shape == x.shape
    for sizes in ([1] * x.size, [100] * 90, [4097] * 3, list(rng.integers(0, 700, size=40)) + [x.size]):
        np.testing.assert_array_equal(run(sizes), whole)


def test_streaming_stft_output_is_final_within_latency(rng):
    """After N input samples at least N - (n_fft - 1) output samples are out."""
    st = StreamingSTFT(1024, 256)
    x = rng.standard_normal(5000)
    n_out = 0
    for i in range(0, x.size, 37):
        n_out += st.synthesize(st.analyze(x[i:i + 37])).size
        assert n_out >= min(i + 37, x.size) - st.latency


# --------------------------------------------------------------------------- kernels vs NumPy oracles
def oracle_online_frames(V, W, h, U, buf_X, buf_A, buf_E, scale, info, n_speech, n_iter, n_dict_iter, sparsity,
                         mask_power, warm_start, update_every, replace_every, n_replace, replace_recent, lookahead,
                         eps):
    """The per-frame algorithm of the kernel's docstring, in vectorised NumPy."""
    W, h, buf_X, buf_A, buf_E, scale, info = (a.copy() for a in (W, h, buf_X, buf_A, buf_E, scale, info))
    K = W.shape[0]
    Kn = K - n_speech
    L = buf_X.shape[0]
    masks, ratios = [], []

    def mask_of(a):
        s, n = W[:n_speech].T @ a[:n_speech], W[n_speech:].T @ a[n_speech:]
        sp, npw = s**mask_power, n**mask_power
        masks.append(np.where(sp + npw > 0, sp / np.where(sp + npw > 0, sp + npw, 1), 0))
        ratios.append(s.sum() / (s.sum() + n.sum()) if s.sum() + n.sum() > 0 else 0.0)

    def seed(j, x):
        w = x * U[j]
        W[n_speech + j] = w / np.linalg.norm(w)

    for v in V:
        seen = info[1]
        slot = seen % L
        if not v.sum() > 0:
            buf_X[slot], buf_A[slot], buf_E[slot] = 0.0, 0.0, 0.0
        else:
            scale[0] = v.mean() if info[2] == 0 else scale[0] + (v.mean() - scale[0]) / L
            x = v / scale[0]
            for j in range(info[2], Kn):
                seed(j, x)
            h = warm_start * h + (1 - warm_start) * x.sum() / (K * np.maximum(W.sum(axis=1), eps))
            for _ in range(n_iter):
                h = h * (W @ (x / np.maximum(W.T @ h, eps))) / np.maximum(W.sum(axis=1) + sparsity, eps)
            buf_X[slot], buf_A[slot], buf_E[slot] = x, h, v.sum()
            info[2] += 1
        info[0] = min(info[0] + 1, L)
        n = info[0]
        X, A = buf_X[:n], buf_A[:n].copy()
        if replace_every and seen >= L and seen % replace_every == 0:
            recent = [(seen - i) % L for i in range(min(replace_recent, L))]
            recent = [r for r in recent if buf_E[r] > 0]
            quiet = [recent[i] for i in np.argsort(buf_E[recent], kind="stable")]
            use = A[:, n_speech:].sum(axis=0)
            least = np.argsort(use, kind="stable")
            for j, q in list(zip(least, quiet))[:n_replace]:
                seed(j, X[q])
                A[:, n_speech + j] = np.where(buf_E[:n] > 0, use.sum() / (Kn * n), 0.0)
        if (seen + 1) % update_every == 0 and n_dict_iter:
            # the offline loop: activations, then noise atoms from the new model, normalisation-aware
            # (Le Roux et al. 2015) under the L1 penalty, atoms at unit norm (activations compensated)
            def normalise():
                norms = np.linalg.norm(W[n_speech:], axis=1)
                W[n_speech:] /= norms[:, None]
                A[:, n_speech:] *= norms

            normalise()
            for _ in range(n_dict_iter):
                A = A * ((X / np.maximum(A @ W, eps)) @ W.T) / np.maximum(W.sum(axis=1) + sparsity, eps)
                R = X / np.maximum(A @ W, eps)
                Wn, An = W[n_speech:], A[:, n_speech:]
                num = An.T @ R
                den = np.repeat(An.sum(axis=0)[:, None], W.shape[1], axis=1)
                if sparsity > 0:
                    num, den = (num + Wn * np.sum(Wn * den, axis=1)[:, None],
                                den + Wn * np.sum(Wn * num, axis=1)[:, None])
                W[n_speech:] = Wn * num / np.maximum(den, eps)
                normalise()
            if buf_E[slot] > 0:
                h = A[slot].copy()
        buf_A[:n] = A
        info[1] += 1
        if seen >= lookahead:
            mask_of(buf_A[(seen - lookahead) % L])
    end = len(masks)
    for i in range(min(lookahead, info[1])):  # the frames held back at the end
        mask_of(buf_A[(info[1] - min(lookahead, info[1]) + i) % L])
    return np.array(masks), np.array(ratios), end, W, h, buf_X, buf_A, buf_E, scale, info


def _kernel_state(rng, Ks, Kn, L, F):
    W = np.vstack([rng.uniform(0.1, 1, (Ks, F)), rng.uniform(0.1, 1, (Kn, F))])
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    h = rng.uniform(0.1, 1, Ks + Kn)
    return [W, h, np.zeros((L, F)), np.zeros((L, Ks + Kn)), np.zeros(L), np.zeros(1), np.zeros(3, dtype=np.int64)]


@pytest.mark.parametrize("mask_power, update_every, replace_every, n_replace, lookahead",
                         [(1.0, 1, 3, 1, 0), (2.0, 2, 2, 2, 2), (1.5, 3, 0, 1, 1), (2.0, 1, 4, 5, 0)])
def test_online_frames_kernel_matches_oracle(rng, mask_power, update_every, replace_every, n_replace, lookahead):
    F, Ks, Kn, L, T = 33, 5, 3, 6, 17
    V = rng.uniform(0, 2, size=(T, F)) * (rng.random((T, F)) > 0.2)
    V *= rng.uniform(0.1, 3, size=(T, 1))  # frames of different energies: some are quiet
    V[3] = 0.0  # an all-zero frame enters the window as zeros
    U = rng.uniform(0.5, 1.5, (Kn, F))
    state = _kernel_state(rng, Ks, Kn, L, F)
    args = (Ks, 2, 2, 0.3, mask_power, 0.7, update_every, replace_every, n_replace, 3, lookahead,
            np.finfo(np.float64).eps)
    expected = oracle_online_frames(V, *state[:2], U, *state[2:], *args)
    W0 = state[0].copy()
    mask = np.full_like(V, -1.0)
    n_out = online_frames(V, state[0], state[1], U, *state[2:], *args, mask)
    assert n_out == expected[2] == T - lookahead
    if lookahead:
        m = pending_masks(state[0], state[3], state[6], Ks, lookahead, mask_power, mask[n_out:])
        assert m == lookahead
    assert state[6][0] == L and state[6][1] == T and state[6][2] == T - 1  # the window filled up and wrapped
    np.testing.assert_array_equal(mask[3], 0.0)  # masks come in frame order; the zero frame gets silence
    assert 0 < np.count_nonzero(mask) < mask.size
    np.testing.assert_allclose(mask, expected[0], rtol=1e-9, atol=1e-12)
    for got, want in zip(state, expected[3:]):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(W0[:Ks], state[0][:Ks])  # speech atoms fixed
    assert not np.allclose(W0[Ks:], state[0][Ks:])  # noise atoms learned


def _stream_frames(model, V, update_every):
    """Frames ``V`` through a fresh stream state of ``model``, a window step after every ``update_every`` frames
    (the estimator always steps after each); returns the state and the masks written."""
    import pse_nmf.decomposition._online as module

    st = model._new_state()
    mask = np.full_like(V, -1.0)
    n = online_frames(V, st.W, st.h, st.U, st.buf_X, st.buf_A, st.buf_E, st.scale, st.info, st.n_speech,
                      model.n_frame_iter, model.n_window_iter, model.sparsity, model.mask_power, module._WARM_START,
                      update_every, model.replace_every, module._N_REPLACE, module._REPLACE_RECENT, model.lookahead,
                      np.finfo(np.float64).eps, mask)
    return st, mask[:n]


def test_one_window_over_the_whole_input_is_the_offline_solve(rng):
    """A window holding every frame, stepped once at the end, gives the offline solve from the same start.

    Every frame has mean 1, so the stream's running scale is 1 and the window holds the frames as they are;
    the offline solve (``_factorize``: the speech atoms fixed, the noise atoms learned, L1 on all activations)
    starts from the stream's atoms and activations just before its window step (the same stream with
    ``n_window_iter=0``) and runs as many iterations.
    """
    F, Ks, Kn, T, n_iter = 33, 5, 3, 24, 7
    speech = rng.uniform(0.1, 2.0, size=(40, F))
    V = rng.uniform(0.05, 2.0, size=(T, F)) * (rng.random((T, F)) > 0.1)
    V /= V.mean(axis=1, keepdims=True)
    params = dict(n_components=Ks, n_noise_components=Kn, sparsity=0.4, buffer_size=T, replace_every=0, n_fft=2 * (F - 1), hop_length=8, max_iter=20, tol=0, random_state=0)
    start, _ = _stream_frames(OnlineNMF(n_window_iter=0, **params).fit(speech), V, T)
    online, masks = _stream_frames(OnlineNMF(n_window_iter=n_iter, **params).fit(speech), V, T)
    A, D, *_ = _factorize(V, start.W, free=np.arange(Ks + Kn) >= Ks, beta=1.0, sparsity=0.4, max_iter=n_iter,
                          tol=0, rng=np.random.RandomState(0), A=start.buf_A)
    assert not np.allclose(D, start.W) and not np.allclose(A, start.buf_A)  # the solve did change them
    np.testing.assert_allclose(online.W, D, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(online.buf_A, A, rtol=1e-9, atol=1e-12)
    S, N = A[-1, :Ks] @ D[:Ks], A[-1, Ks:] @ D[Ks:]
    np.testing.assert_allclose(masks[-1], S**2 / (S**2 + N**2), rtol=1e-9, atol=1e-12)  # the last frame's mask


def test_replacement_seeds_the_least_used_atom_from_the_quietest_recent_frame(rng):
    """With no NMF updates, a replacement step turns the least used noise atom into the quietest recent frame."""
    F, Ks, Kn, L = 17, 3, 3, 8
    V = rng.uniform(0.5, 1.5, size=(L + 1, F)) * 100.0
    V[L - 1] *= 0.01  # the quietest of the last 4 frames
    V[1] *= 0.001  # quieter still, but not recent
    U = np.ones((Kn, F))
    state = _kernel_state(rng, Ks, Kn, L, F)
    state[1][:] = 1.0
    mask = np.empty_like(V)
    online_frames(V, *state[:2], U, *state[2:], Ks, 1, 0, 1.0, 2.0, 1.0, 1, L, 1, 4, 0, np.finfo(np.float64).eps,
                  mask)
    W, buf_A = state[0], state[3]
    target = V[L - 1] / np.linalg.norm(V[L - 1])
    hits = [j for j in range(Kn) if np.allclose(W[Ks + j], target)]
    assert len(hits) == 1
    a = buf_A[:, Ks + hits[0]]  # its activations restart flat, at the mean noise activation
    assert np.all(a > 0) and np.allclose(a, a[0])
    assert not np.allclose(W[Ks + 1 - min(hits[0], 1)], target)


def test_overlap_add_kernel_matches_oracle(rng):
    frames = rng.standard_normal((5, 16))
    window = hann_window(16)
    acc, wss = np.zeros(40), np.zeros(40)
    overlap_add(acc, wss, frames, window, 3, 4)
    acc_o, wss_o = np.zeros(40), np.zeros(40)
    for i, fr in enumerate(frames):
        for j in range(16):
            acc_o[3 + 4 * i + j] += fr[j] * window[j]
            wss_o[3 + 4 * i + j] += window[j] ** 2
    np.testing.assert_allclose(acc, acc_o, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(wss, wss_o, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- streaming API
def test_latency_and_denoise_equals_process_then_flush(online, noisy):
    model = _fresh(online)
    assert model.latency == 1023
    out = _stream(model, noisy, [noisy.size])
    assert out.shape == (noisy.size + model.latency,)
    np.testing.assert_array_equal(out[: model.latency], 0.0)
    np.testing.assert_array_equal(out[model.latency:], model.denoise(noisy))
    assert model.denoise(noisy).shape == noisy.shape


@pytest.mark.parametrize("block", [1, 100, 256, 1000, 4097, "random"])
def test_block_size_invariance(online, noisy, block):
    model = _fresh(online)
    whole = _stream(model, noisy, [noisy.size])
    if block == "random":
        sizes = list(np.random.default_rng(1).integers(0, 3000, size=30)) + [noisy.size]
    else:
        sizes = [block] * (noisy.size // block + 1)
    np.testing.assert_array_equal(_stream(model, noisy, sizes), whole)  # bit-identical


@pytest.mark.parametrize("block", [1, 300, 4097])
def test_lookahead_delays_by_whole_frames_and_keeps_block_size_invariance(online, noisy, block):
    model = _fresh(online).set_params(lookahead=3)
    assert model.latency == 1023 + 3 * 256
    whole = _stream(model, noisy, [noisy.size])
    np.testing.assert_array_equal(whole[: model.latency], 0.0)
    np.testing.assert_array_equal(whole[model.latency:], model.denoise(noisy))
    np.testing.assert_array_equal(_stream(model, noisy, [block] * (noisy.size // block + 1)), whole)
    # the frames are refined longer before they are output, so the result differs from lookahead 0
    assert not np.allclose(model.denoise(noisy), _fresh(online).denoise(noisy))


def test_lookahead_masks_come_from_the_right_frames(online, noisy):
    """Without refinement (no window updates, no re-seeding) a lookahead only delays: same masks, same output.

    The noise atoms change only while the first ``n_noise_components`` frames
    seed them, so from then on every frame's mask must be the same whether it
    is computed at once or ``lookahead`` frames later; a mask taken from
    another frame's activations, or a frame leaving the window before its
    output, would break this.
    """
    frozen = dict(n_window_iter=0, replace_every=0)
    now = _fresh(online).set_params(**frozen).denoise(noisy)
    later = _fresh(online).set_params(lookahead=5, **frozen).denoise(noisy)
    start = (online.n_noise_components + 1) * online.hop_length + online.n_fft  # past the seeding frames
    np.testing.assert_allclose(later[start:], now[start:], rtol=1e-10, atol=1e-10)
    assert not np.allclose(later[:start], now[:start])  # the seeding frames see other atoms


def test_lookahead_must_fit_in_the_window(online, noisy):
    model = _fresh(online).set_params(lookahead=8)  # buffer_size=8
    with pytest.raises(ValueError, match="lookahead=8 must be smaller than buffer_size=8"):
        model.process(noisy[:100])
    with pytest.raises(ValueError, match="lookahead"):
        OnlineNMF(speech_model=online, lookahead=96).fit()


def test_reset_restores_initial_state(online, noisy):
    model = _fresh(online)
    first = np.concatenate([model.process(noisy[:5000]), model.process(noisy[5000:12000])])
    changed = model.noise_components_
    assert not np.allclose(changed, model.initial_noise_components_)  # the stream adapted
    model.reset()
    np.testing.assert_array_equal(model.noise_components_, model.initial_noise_components_)
    second = np.concatenate([model.process(noisy[:5000]), model.process(noisy[5000:12000])])
    np.testing.assert_array_equal(first, second)


def test_denoise_leaves_live_stream_alone(online, noisy):
    model = _fresh(online)
    a = model.process(noisy[:8000])
    model.denoise(noisy)
    b = model.process(noisy[8000:])
    ref = _fresh(online)
    np.testing.assert_array_equal(np.concatenate([a, b]), ref.process(noisy))


@pytest.mark.parametrize("bad, match", [
    (np.array([0.1, np.nan, 0.2]), "NaN or infinite"),
    (np.array([0.1, np.inf]), "NaN or infinite"),
    (np.ones(300, dtype=np.complex64), "complex"),
    (np.ones((300, 2), dtype=np.float32), "multichannel|channel"),
    (np.array(["a", "b"]), "numeric"),
])
def test_bad_block_fails_without_corrupting_the_stream(online, noisy, bad, match):
    model = _fresh(online)
    good = [model.process(noisy[:3001])]
    with pytest.raises(ValueError, match=match):
        model.process(bad)
    good.append(model.process(noisy[3001:]))
    good.append(model.flush())
    clean = _stream(_fresh(online), noisy, [3001, noisy.size])
    np.testing.assert_array_equal(np.concatenate(good), clean)


def test_integer_pcm_blocks_are_scaled(online, noisy):
    model = _fresh(online)
    pcm = np.round(noisy * 2**15).clip(-(2**15), 2**15 - 1).astype(np.int16)
    a = model.process(pcm)
    b = _fresh(online).process(pcm.astype(np.float32) / 2**15)
    np.testing.assert_array_equal(a, b)


def test_empty_block_and_flush_restart(online, noisy):
    model = _fresh(online)
    assert model.process(np.zeros(0, dtype=np.float32)).shape == (0,)
    first = _stream(model, noisy, [noisy.size])
    # flush ended the stream; a new one starts from the initial state
    again = np.concatenate([model.process(noisy), model.flush()])
    np.testing.assert_array_equal(first, again)


def test_silence_in_silence_out(online):
    model = _fresh(online)
    np.testing.assert_array_equal(model.denoise(np.zeros(4000, dtype=np.float32)), 0.0)


def test_not_fitted_is_a_clear_error():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        OnlineNMF().process(np.zeros(10))


# --------------------------------------------------------------------------- speech models
def test_speech_model_parameter_uses_its_dictionary(small_semi, noisy):
    model = OnlineNMF(speech_model=small_semi, n_noise_components=4, random_state=0).fit()
    np.testing.assert_array_equal(model.components_, small_semi.components_)
    assert model.n_iter_ == 0
    assert model.denoise(noisy).shape == noisy.shape


def test_speech_model_errors(small_semi, example_task):
    with pytest.raises(ValueError, match="not both"):
        OnlineNMF(speech_model=small_semi).fit(example_task.enrollment)
    with pytest.raises(ValueError, match="needs clean speech"):
        OnlineNMF().fit()
    with pytest.raises(ValueError, match="n_fft"):
        OnlineNMF(speech_model=small_semi, n_fft=512).fit()
    with pytest.raises(ValueError, match="not fitted"):
        OnlineNMF(speech_model=SemiSupervisedNMF()).fit()
    from sklearn.base import clone

    noise_model = clone(small_semi).set_params(known="noise")
    noise_model.components_ = small_semi.components_
    noise_model.n_features_in_ = small_semi.n_features_in_
    with pytest.raises(ValueError, match="known='noise'"):
        OnlineNMF(speech_model=noise_model).fit()


# --------------------------------------------------------------------------- persistence
def test_save_load_round_trip(online, small_semi, noisy, tmp_path):
    model = OnlineNMF(speech_model=small_semi, n_noise_components=4, buffer_size=8, random_state=0).fit()
    model.process(noisy[:6000])  # a live stream is not saved
    path = model.save(tmp_path / "online.npz")
    loaded = load_model(path)
    assert isinstance(loaded, OnlineNMF)
    assert loaded.speech_model is None
    assert model.speech_model is small_semi  # saving did not touch the model
    np.testing.assert_array_equal(loaded.components_, model.components_)
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))
    # the loaded model starts a fresh stream
    np.testing.assert_array_equal(loaded.process(noisy), _fresh(model).process(noisy))


# --------------------------------------------------------------------------- files
def test_denoise_file_matches_denoise(online, noisy, tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, noisy, SR, subtype="FLOAT")
    x, _ = sf.read(src, dtype="float32")
    out = online.denoise_file(src, tmp_path / "out.wav", block_size=777, subtype="FLOAT")
    y, sr = sf.read(out, dtype="float32")
    assert sr == SR
    np.testing.assert_allclose(y, online.denoise(x), atol=1e-6)
    assert not list(tmp_path.glob(".out*"))  # no temporary file left


def test_denoise_file_refuses_to_overwrite(online, noisy, tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, noisy, SR)
    before = src.read_bytes()
    with pytest.raises(ValueError, match="never overwrites its input"):
        online.denoise_file(src, src, overwrite=True)
    assert src.read_bytes() == before
    dst = tmp_path / "out.wav"
    dst.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="overwrite"):
        online.denoise_file(src, dst)
    assert dst.read_bytes() == b"keep"


def test_denoise_file_other_rate_and_channels(online, noisy, tmp_path):
    import librosa

    x8 = librosa.resample(noisy, orig_sr=SR, target_sr=8000)
    src = tmp_path / "in8k.flac"
    sf.write(src, np.stack([x8, x8], axis=1), 8000)
    with pytest.raises(ValueError, match="downmix"):
        online.denoise_file(src, tmp_path / "o.flac")
    out = online.denoise_file(src, tmp_path / "o.flac", downmix=True, block_size=1000)
    y, sr = sf.read(out)
    assert sr == 8000 and y.shape == (x8.size,)
    ref = online.denoise(sf.read(src, dtype="float32")[0].mean(axis=1), sr=8000)
    # streaming vs one-shot resampling, and 16-bit output
    assert si_sdr(y, ref) > 25


# --------------------------------------------------------------------------- quality
def _changing_noise_mixture(example):
    """Example speech (two utterances of one speaker) in running tap, then in dishes, each half at 0 dB."""
    from pse_nmf.datasets import mix_at_snr

    speaker = sorted(example.speech)[1]
    s = np.concatenate(example.speech[speaker][:2]).astype(np.float64)
    h = s.size // 2
    n1 = mix_at_snr(s[:h], example.noise["running_tap"][0][:h], 0, random_state=0)[1]
    n2 = mix_at_snr(s[h:], example.noise["dishes"][1][: s.size - h], 0, random_state=0)[1]
    return (s + np.concatenate([n1, n2])).astype(np.float32), s, h


def test_online_noise_model_follows_a_change_of_noise(example, small_semi):
    """After the noise type changes, the learned noise model beats the same model with its noise atoms frozen."""
    mix, s, h = _changing_noise_mixture(example)
    live = OnlineNMF(speech_model=small_semi, random_state=0).fit()
    frozen = clone_online(live, n_window_iter=0, replace_every=0)  # atoms seeded from the first frames, then fixed
    e_live, e_frozen = live.denoise(mix), frozen.denoise(mix)
    gain = {name: si_sdr(e[h:], s[h:]) - si_sdr(mix[h:], s[h:]) for name, e in (("live", e_live), ("frozen", e_frozen))}
    assert gain["live"] > gain["frozen"] + 1.0
    assert gain["live"] > 1.0  # and it enhances the second half


def clone_online(model, **params):
    m = _fresh(model)
    return m.set_params(**params)


def test_output_does_not_depend_on_the_level(online, noisy):
    model = _fresh(online)
    np.testing.assert_allclose(model.denoise(noisy * 8.0), 8.0 * model.denoise(noisy), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_stationary_noise_online_approaches_offline(example_task):
    """On stationary noise (running tap), with a stream that starts with 1 s of noise before the talker.

    A window that holds the whole stream brings the online result within
    2.5 dB of the offline model's (the issue's "with stationary noise the
    online result approaches the offline one"); the default 1.5 s window
    still enhances clearly (it lags further on this mixture, whose talker
    hardly pauses: see the Known limits in OnlineNMF's docstring).
    """
    offline = SemiSupervisedNMF(n_components=32, random_state=0).fit(example_task.enrollment)
    mix = example_task.test[0]
    lead = SR  # 1 s of the same noise before the talker starts
    x = np.concatenate([mix.noise[:lead], mix.mixture]).astype(np.float32)
    speech = mix.speech
    base = si_sdr(mix.mixture, speech)

    def gain(model):
        return si_sdr(model.denoise(x)[lead:], speech) - base

    g_offline = gain(offline)
    g_whole = gain(OnlineNMF(speech_model=offline, random_state=0, buffer_size=x.size // 256 + 8).fit())
    g_default = gain(OnlineNMF(speech_model=offline, random_state=0).fit())
    assert g_offline > 4.0  # the reference itself enhances
    assert g_whole > g_offline - 2.5
    assert g_default > 4.0


# --------------------------------------------------------------------------- issue 19, item 5: DC offset
@pytest.fixture(scope="module")
def default_online(example_task):
    """OnlineNMF with default streaming settings on a real speech dictionary (as ``denoise --stream``)."""
    semi = SemiSupervisedNMF(n_components=32, random_state=0).fit(example_task.enrollment)
    return OnlineNMF(speech_model=semi, random_state=0).fit()


def test_dc_offset_is_removed_before_streaming(default_online, example_task):
    """A DC offset ruined the stream (2.8 dB against 10.5 dB offline on a user's file); removed
    first, the result is the offset-free signal's, scaled (the output follows the level).
    """
    mix = example_task.test[0]
    x = mix.mixture.astype(np.float64)
    dc_input = 0.2 * x + 0.3
    got = default_online.denoise(dc_input)
    expected = 0.2 * default_online.denoise(x - x.mean())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert si_sdr(got, mix.speech) > si_sdr(dc_input, mix.speech) + 3.0


def test_normal_recordings_are_streamed_untouched(default_online, example_task):
    """Recordings without a real offset (mean below 10 % of the RMS) are not shifted: the stream is
    sensitive to any change of its input (removing a 1e-4 mean moved one mixture by 2 dB), and the
    benchmarks' figures must not move.
    """
    x = example_task.test[0].mixture.astype(np.float64)
    assert 0 < abs(x.mean()) < 0.1 * x.std()
    np.testing.assert_array_equal(default_online.denoise(x), default_online._enhance(x).astype(np.float32))


def test_denoise_file_removes_dc_like_denoise(default_online, example_task, tmp_path):
    x = (0.2 * example_task.test[0].mixture + 0.3).astype(np.float32)
    src = tmp_path / "dc.wav"
    sf.write(src, x, SR, subtype="FLOAT")
    out = default_online.denoise_file(src, tmp_path / "out.wav", block_size=5000, subtype="FLOAT")
    y, _ = sf.read(out, dtype="float32")
    np.testing.assert_allclose(y, default_online.denoise(x), atol=1e-5)


def test_denoise_file_unreadable_input_says_why(online, noisy, tmp_path, monkeypatch):
    import pse_nmf.audio._io as audio_module

    src = tmp_path / "locked.wav"
    sf.write(src, noisy, SR)

    def no_permission(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(audio_module, "open", no_permission, raising=False)  # as root, chmod cannot do it
    with pytest.raises(PermissionError, match=r"cannot open '.*locked.wav': Permission denied"):
        online.denoise_file(src, tmp_path / "out.wav")


def _process_all(model, x, block):
    model.reset()
    out = [model.process(x[i:i + block]) for i in range(0, x.size, block)] + [model.flush()]
    return np.concatenate(out)[model.latency:]


def test_live_stream_removes_a_dc_offset_causally(default_online, example_task):
    """process() (no mean known in advance) removes an offset from a running mean: close to denoise, which
    subtracts the whole signal's mean, and far better than the offset streamed as it is."""
    model = _fresh(default_online)
    mix = example_task.test[0]
    dc_input = 0.2 * mix.mixture.astype(np.float64) + 0.3
    live = _process_all(model, dc_input, 4000)
    whole = default_online.denoise(dc_input)
    assert si_sdr(live, mix.speech) > si_sdr(whole, mix.speech) - 1.0
    raw = default_online._enhance(dc_input)  # the stream without any DC removal
    assert si_sdr(live, mix.speech) > si_sdr(raw, mix.speech) + 3.0
    np.testing.assert_array_equal(_process_all(model, dc_input, 777), live)  # still block-size invariant


def test_live_stream_leaves_ordinary_recordings_untouched(default_online, example_task):
    """No offset (the mean is 0.05 % of the RMS): the running mean never clears the bar, process equals denoise."""
    model = _fresh(default_online)
    x = example_task.test[0].mixture.astype(np.float64)
    x = np.concatenate([x, 0.5 * x])  # past the running mean's 2 s of cumulative start
    np.testing.assert_array_equal(_process_all(model, x, 3000), default_online.denoise(x))
