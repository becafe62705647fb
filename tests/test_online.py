"""Tests of the streaming enhancer OnlineNMF, its streaming STFT and its kernels.

OnlineNMF is imported from its private module ``pse_nmf._online`` until the
package's ``__init__`` exports it; the streaming STFT (``pse_nmf._stream``)
and the kernels (``pse_nmf._online_kernels``) are internals, reached for on
purpose.
"""

import numpy as np
import pytest
import soundfile as sf

from pse_nmf import SemiSupervisedNMF, istft, load_model, si_sdr, stft
from pse_nmf._online import OnlineNMF
from pse_nmf._online_kernels import online_frames, overlap_add
from pse_nmf._stream import StreamingSTFT, hann_window, stream_istft, stream_stft

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
def oracle_online_frames(V, W, h, U, buf_X, buf_A, energy, info, n_speech, n_iter, n_dict_iter, sparsity, quantile,
                         mask_power, warm_start, update_every, eps):
    """The per-frame algorithm of the kernel's docstring, in vectorised NumPy."""
    W, h, buf_X, buf_A, energy, info = (a.copy() for a in (W, h, buf_X, buf_A, energy, info))
    K, F = W.shape
    Kn = K - n_speech
    L, M = buf_X.shape[0], energy.shape[0]
    masks, ratios = np.zeros_like(V), np.zeros(V.shape[0])

    def h_step(h):
        r = x / np.maximum(W.T @ h, eps)
        return h * (W @ r) / np.maximum(W.sum(axis=1) + sparsity, eps)

    for t, v in enumerate(V):
        if not v.sum() > 0:
            continue
        x = v / v.mean()
        seen = info[4]
        if seen < Kn:
            seeded = x * U[seen:]
            W[n_speech + seen:] = seeded / np.linalg.norm(seeded, axis=1, keepdims=True)
        h = warm_start * h + (1 - warm_start) * F / (K * np.maximum(W.sum(axis=1), eps))
        for _ in range(n_iter):
            h = h_step(h)
        held = energy[: info[2]]
        quiet = np.sum(held < v.sum()) <= quantile * held.size
        if M:
            energy[info[3]] = v.sum()
            info[3] = (info[3] + 1) % M
            info[2] = min(info[2] + 1, M)
        if quiet and L:
            buf_X[info[1]], buf_A[info[1]] = x, h[n_speech:]
            info[1] = (info[1] + 1) % L
            info[0] = min(info[0] + 1, L)
        nb = info[0]
        if nb and seen % update_every == 0:
            X, A = buf_X[:nb], buf_A[:nb]
            for _ in range(n_dict_iter):
                Wn = W[n_speech:]
                A = A * ((X / np.maximum(A @ Wn, eps)) @ Wn.T) / np.maximum(Wn.sum(axis=1) + sparsity, eps)
                R = X / np.maximum(A @ Wn, eps)
                Wn = Wn * (A.T @ R) / np.maximum(A.sum(axis=0), eps)[:, None]
                norms = np.maximum(np.linalg.norm(Wn, axis=1), eps)
                W[n_speech:] = Wn / norms[:, None]
                A = A * norms
                h[n_speech:] *= norms
            buf_A[:nb] = A
            h = h_step(h)
        s, n = W[:n_speech].T @ h[:n_speech], W[n_speech:].T @ h[n_speech:]
        sp, npw = s**mask_power, n**mask_power
        masks[t] = np.where(sp + npw > 0, sp / np.where(sp + npw > 0, sp + npw, 1), 0)
        ratios[t] = s.sum() / (s.sum() + n.sum())
        info[4] += 1
    return masks, ratios, W, h, buf_X, buf_A, energy, info


@pytest.mark.parametrize("mask_power, update_every", [(1.0, 1), (2.0, 2), (1.5, 3)])
def test_online_frames_kernel_matches_oracle(rng, mask_power, update_every):
    F, Ks, Kn, L, M, T = 33, 5, 3, 4, 6, 14
    V = rng.uniform(0, 2, size=(T, F)) * (rng.random((T, F)) > 0.2)
    V *= rng.uniform(0.1, 3, size=(T, 1))  # frames of different energies: some are quiet
    V[3] = 0.0  # an all-zero frame leaves the state alone
    W = np.vstack([rng.uniform(0.1, 1, (Ks, F)), rng.uniform(0.1, 1, (Kn, F))])
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    U = rng.uniform(0.5, 1.5, (Kn, F))
    h = rng.uniform(0.1, 1, Ks + Kn)
    bufs = (np.zeros((L, F)), np.zeros((L, Kn)), np.zeros(M), np.zeros(5, dtype=np.int64))
    args = (2, 2, 0.3, 0.5, mask_power, 0.7, update_every, np.finfo(np.float64).eps)
    expected = oracle_online_frames(V, W, h, U, *bufs, Ks, *args)
    state = [W.copy(), h.copy()] + [b.copy() for b in bufs]
    mask, ratio = np.empty_like(V), np.empty(T)
    online_frames(V, state[0], state[1], U, *state[2:], Ks, *args, mask, ratio)
    info = expected[7]
    assert info[0] == L and info[4] == T - 1  # the buffer filled up (and wrapped); the zero frame did not count
    assert 0 < np.count_nonzero(mask) < mask.size
    np.testing.assert_allclose(mask, expected[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ratio, expected[1], rtol=1e-9, atol=1e-12)
    for got, want in zip(state, expected[2:]):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(W[:Ks], state[0][:Ks])  # speech atoms fixed


def test_quiet_frames_feed_the_buffer(rng):
    """Frames quieter than all but a `quantile` share of the recent ones enter the buffer; loud ones do not."""
    F, Ks, Kn, L, M = 17, 3, 2, 50, 50
    quiet_idx = [0, 5, 9, 13, 20]
    V = rng.uniform(0.5, 1.5, size=(25, F)) * 100.0
    V[quiet_idx] = rng.uniform(0.5, 1.5, size=F) * 0.9 ** np.arange(5)[:, None]  # each the quietest so far
    W = rng.uniform(0.1, 1, (Ks + Kn, F))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    U = np.ones((Kn, F))
    state = [np.full(Ks + Kn, 0.5), np.zeros((L, F)), np.zeros((L, Kn)), np.zeros(M), np.zeros(5, dtype=np.int64)]
    mask, ratio = np.empty_like(V), np.empty(25)
    online_frames(V, W, state[0], U, *state[1:], Ks, 2, 1, 1.0, 0.1, 2.0, 0.5, 1, np.finfo(np.float64).eps,
                  mask, ratio)
    buf_X, info = state[1], state[4]
    assert info[0] == len(quiet_idx)
    np.testing.assert_allclose(buf_X[: info[0]], V[quiet_idx] / V[quiet_idx].mean(axis=1, keepdims=True))


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
@pytest.mark.slow
def test_stationary_noise_online_approaches_offline(example_task):
    """On stationary noise (running tap) online is within 2.5 dB SI-SDR of offline NMF (measured gap: 1.7 dB)."""
    offline = SemiSupervisedNMF(n_components=32, random_state=0, mask_power=2.0).fit(example_task.enrollment)
    model = OnlineNMF(speech_model=offline, random_state=0).fit()
    mix = example_task.test[0]
    s_off = si_sdr(offline.denoise(mix.mixture), mix.speech)
    s_on = si_sdr(model.denoise(mix.mixture), mix.speech)
    base = si_sdr(mix.mixture, mix.speech)
    assert s_on > base + 8.0  # it enhances (measured: +10.8 dB)
    assert s_on > s_off - 2.5
