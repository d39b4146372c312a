import numpy as np
import pytest

from avssl.data.sampling import ClipInfo, make_sampler, seed_from

KEYS = dict(seed=3, epoch=1, index=7, item=0)


def test_seed_from_is_stable_and_sensitive():
    assert seed_from(1, 2, 3) == seed_from(1, 2, 3)
    assert seed_from(1, 2, 3) != seed_from(1, 2, 4)
    assert seed_from(1, 2, 3) != seed_from(2, 1, 3)
    assert seed_from(1, 2, 3) != seed_from(1, 2, 3, 0)
    assert seed_from(0) != seed_from(0, 0) != seed_from()
    assert 0 <= seed_from(-5, 0) < 2**63
    assert seed_from(np.int64(-5), np.uint64(2**63)) == seed_from(-5, 2**63)  # numpy indices work too


def test_random_is_pure_and_in_range():
    s = make_sampler("random", 2.0)
    a = s.sample(10.0, **KEYS)
    assert a == s.sample(10.0, **KEYS)
    (clip,) = a
    assert 0.0 <= clip.start <= 8.0 and clip.end == pytest.approx(clip.start + 2.0)
    starts = {s.sample(10.0, seed=3, epoch=e, index=7, item=0)[0].start for e in range(20)}
    assert len(starts) == 20  # a new window every epoch
    other = {s.sample(10.0, seed=4, epoch=e, index=7, item=0)[0].start for e in range(20)}
    assert starts.isdisjoint(other)
    assert s.num_items(10.0) == 1


def test_random_covers_the_slack():
    s = make_sampler("random", 1.0)
    starts = [s.sample(5.0, seed=0, epoch=0, index=i, item=0)[0].start for i in range(400)]
    assert min(starts) < 0.1 and max(starts) > 3.9 and max(starts) <= 4.0


def test_short_policy():
    pad = make_sampler("random", 4.0, short="pad")
    assert pad.num_items(1.5) == 1
    assert pad.sample(1.5, **KEYS) == [ClipInfo(0.0, 4.0, 0)]
    for name in ("random", "uniform", "constant", "random_multi"):
        assert make_sampler(name, 4.0, short="skip").num_items(1.5) == 0
        assert make_sampler(name, 4.0, short="skip").num_items(4.0) >= 1
    assert make_sampler("uniform", 4.0).num_items(1.5) == 1
    assert make_sampler("constant", 4.0, clips_per_video=3).num_items(1.5) == 3


def test_uniform_windows_cover_the_video():
    s = make_sampler("uniform", 2.0)
    assert s.num_items(6.0) == 3
    assert [s.sample(6.0, **{**KEYS, "item": k})[0] for k in range(3)] == [
        ClipInfo(0.0, 2.0, 0), ClipInfo(2.0, 4.0, 1), ClipInfo(4.0, 6.0, 2)]
    # 7 s: three regular windows stop at 6 s, so a fourth is aligned to the end
    assert s.num_items(7.0) == 4
    assert s.sample(7.0, **{**KEYS, "item": 3})[0] == ClipInfo(5.0, 7.0, 3)
    strided = make_sampler("uniform", 2.0, stride=1.0)
    assert [strided.sample(4.0, **{**KEYS, "item": k})[0].start for k in range(strided.num_items(4.0))] == [0, 1, 2]
    with pytest.raises(IndexError, match="3 windows"):
        s.sample(6.0, **{**KEYS, "item": 3})


def test_uniform_ignores_seed():
    s = make_sampler("uniform", 1.0)
    assert s.sample(5.0, seed=0, epoch=0, index=0, item=2) == s.sample(5.0, seed=9, epoch=4, index=1, item=2)


def test_constant_evenly_spaced():
    s = make_sampler("constant", 2.0, clips_per_video=3)
    assert s.num_items(10.0) == 3
    assert [s.sample(10.0, **{**KEYS, "item": k})[0].start for k in range(3)] == [0.0, 4.0, 8.0]
    centre = make_sampler("constant", 2.0)
    assert centre.sample(10.0, **KEYS) == [ClipInfo(4.0, 6.0, 0)]


def test_random_multi_gives_k_windows():
    s = make_sampler("random_multi", 1.0, clips_per_video=4)
    clips = s.sample(8.0, **KEYS)
    assert [c.clip_index for c in clips] == [0, 1, 2, 3]
    assert len({c.start for c in clips}) == 4
    assert all(0 <= c.start <= 7.0 for c in clips)
    assert clips == s.sample(8.0, **KEYS)
    assert s.num_items(8.0) == 1


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown sampler 'rand'"):
        make_sampler("rand", 1.0)
    with pytest.raises(ValueError, match="clip_duration"):
        make_sampler("random", 0.0)
    with pytest.raises(ValueError, match="short"):
        make_sampler("random", 1.0, short="drop")
    with pytest.raises(ValueError, match="clips_per_video=4"):
        make_sampler("random", 1.0, clips_per_video=4)
    with pytest.raises(ValueError, match="stride"):
        make_sampler("constant", 1.0, stride=0.5)
