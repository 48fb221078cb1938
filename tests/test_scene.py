"""Scene values (issue 20): face selectors, speakers, the RTTM form, face selection, the seed
rule and the speech mix. No model is involved."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from joyvasa_core.face.backends import Face
from joyvasa_core.scene import (FaceSelector, SceneError, SceneSpec, Speaker, mix_speech,
                                pad_tracks, parse_face, parse_rttm, parse_speaker, read_turns,
                                select_faces, speaker_seed, turn_tracks)


def _face(x0, y0, x1, y1, score=0.9) -> Face:
    return Face(np.array([x0, y0, x1, y1], float), score, np.zeros((5, 2)))


# ------------------------------------------------------------------------------ parsing

def test_parse_face_index_and_box():
    assert parse_face(" 2 ") == FaceSelector(index=2)
    assert parse_face("10, 20,110,140.5") == FaceSelector(box=(10.0, 20.0, 110.0, 140.5))


@pytest.mark.parametrize("text", ["-1", "a", "1,2,3", "1,2,3,nan", ""])
def test_parse_face_refuses_what_is_neither(text):
    with pytest.raises(SceneError, match="neither a face index"):
        parse_face(text)


def test_parse_speaker_forms():
    assert parse_speaker("1=dir/b.wav", labelled=False) == Speaker(FaceSelector(index=1),
                                                                   audio=Path("dir/b.wav"))
    # the audio path may hold '=' itself: the face ends at the first one
    assert parse_speaker("0=x=y.wav", labelled=False).audio == Path("x=y.wav")
    assert parse_speaker("1,2,40,50=spk_A", labelled=True) == Speaker(
        FaceSelector(box=(1.0, 2.0, 40.0, 50.0)), label="spk_A")


@pytest.mark.parametrize("text", ["0", "=a.wav", "0=", "0:a.wav"])
def test_parse_speaker_refuses_malformed(text):
    with pytest.raises(SceneError, match="FACE="):
        parse_speaker(text, labelled=False)


def test_scene_spec_takes_one_form():
    by_file = Speaker(FaceSelector(index=0), audio=Path("a.wav"))
    by_label = Speaker(FaceSelector(index=1), label="B")
    SceneSpec((by_file,))
    SceneSpec((by_label,), turns=Path("t.rttm"))
    for bad in (lambda: SceneSpec(()), lambda: SceneSpec((by_file, by_label)),
                lambda: SceneSpec((by_label,)), lambda: SceneSpec((by_file,), Path("t.rttm"))):
        with pytest.raises(ValueError):
            bad()


def test_speaker_seed_keeps_speaker_zero_and_differs_per_speaker():
    assert speaker_seed(7, 0) == 7
    assert [speaker_seed(7, k) for k in range(3)] == [7, 8, 9]
    assert speaker_seed(2**32 - 1, 1) == 0                    # wraps within the seed range


# ---------------------------------------------------------------------------------- RTTM

RTTM = """\
# a comment
SPKR-INFO mix 1 <NA> <NA> <NA> unknown A <NA> <NA>
SPEAKER mix 1 0.50 1.00 <NA> <NA> A <NA> <NA>
SPEAKER mix 1 1.50 0.25 <NA> <NA> B <NA> <NA>

SPEAKER mix 1 2.00 0.50 <NA> <NA> A <NA> <NA>
"""


def test_parse_rttm_reads_speaker_lines():
    turns = parse_rttm(RTTM)
    assert [(t.label, t.start, t.duration) for t in turns] == [
        ("A", 0.5, 1.0), ("B", 1.5, 0.25), ("A", 2.0, 0.5)]


@pytest.mark.parametrize("text, match", [
    ("SPEAKER mix 1 zero 1.0 <NA> <NA> A <NA> <NA>", "line 1 does not parse"),
    ("SPEAKER mix 1 0.5 -1 <NA> <NA> A <NA> <NA>", "line 1 does not parse"),
    ("SPEAKER mix 1 0.5", "line 1 does not parse"),
    ("hello world", "line 1 is not an RTTM record"),
    ("# only a comment\n", "no SPEAKER line"),
])
def test_parse_rttm_refuses_what_does_not_parse(text, match):
    with pytest.raises(SceneError, match=match):
        parse_rttm(text)


def test_read_turns_needs_every_label(tmp_path):
    path = tmp_path / "t.rttm"
    path.write_text(RTTM)
    assert {t.label for t in read_turns(path, ["B"])} == {"B"}
    with pytest.raises(SceneError, match="names no speaker carol .*it names A, B"):
        read_turns(path, ["A", "carol"])


def test_turn_tracks_keep_the_mixture_inside_each_turn():
    rate = 100
    mix = torch.arange(1, 301, dtype=torch.float32)           # 3 s, no zero sample
    tracks = turn_tracks(mix, rate, parse_rttm(RTTM), ["A", "B"])
    assert tracks.shape == (2, 300)
    a = torch.zeros(300, dtype=torch.bool)
    a[50:150] = True
    a[200:250] = True
    b = torch.zeros(300, dtype=torch.bool)
    b[150:175] = True
    assert torch.equal(tracks[0][a], mix[a]) and not tracks[0][~a].any()
    assert torch.equal(tracks[1][b], mix[b]) and not tracks[1][~b].any()


# ------------------------------------------------------------------------- tracks, mixing

def test_pad_tracks_pads_the_shorter_with_silence():
    out = pad_tracks([torch.ones(3), torch.full((5,), 2.0)])
    assert out.tolist() == [[1, 1, 1, 0, 0], [2, 2, 2, 2, 2]]


def test_mix_sums_and_scales_down_only_above_full_scale():
    quiet = mix_speech([(torch.full((1, 4), 0.25), 16000), (torch.full((2, 2), 0.5), 16000)])
    assert quiet[1] == 16000
    assert torch.allclose(quiet[0], torch.tensor([[0.75, 0.75, 0.25, 0.25]]))
    loud, _ = mix_speech([(torch.full((1, 4), 0.8), 16000), (torch.tensor([[0.8, -0.4, 0, 0]]),
                                                             16000)])
    assert float(loud.abs().max()) == pytest.approx(1.0)       # no clipping
    assert torch.allclose(loud, torch.tensor([[1.6, 0.4, 0.8, 0.8]]) / 1.6)


def test_mix_resamples_to_the_highest_rate():
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * torch.pi * 200 * t)[None] * 0.1
    mix, rate = mix_speech([(tone, 16000), (torch.zeros(1, 44100), 44100)])
    assert rate == 44100 and mix.shape == (1, 44100)
    assert float(mix.abs().max()) == pytest.approx(0.1, rel=0.05)


# -------------------------------------------------------------------------- face selection

FACES = [_face(10, 10, 90, 100), _face(120, 20, 200, 110), _face(230, 5, 300, 95)]


def test_select_faces_by_index_and_box():
    picked = select_faces(FACES, [FaceSelector(index=2), FaceSelector(box=(118, 22, 202, 108)),
                                  FaceSelector(box=(300, 150, 380, 230))], (240, 400))
    assert picked[0].face is FACES[2] and picked[0].detected
    assert picked[1].face is FACES[1] and picked[1].detected     # a box on a detected face
    assert not picked[2].detected                               # a box with no face found
    assert picked[2].face.box.tolist() == [300, 150, 380, 230]


def test_an_index_the_image_lacks_lists_the_faces_found():
    with pytest.raises(SceneError) as info:
        select_faces(FACES, [FaceSelector(index=3)], (240, 400), "two.png")
    text = str(info.value)
    assert "face 3 but two.png has 3 detected face(s)" in text
    assert "0: 10,10,90,100 (0.90); 1: 120,20,200,110 (0.90); 2: 230,5,300,95 (0.90)" in text


@pytest.mark.parametrize("box", [(-1, 0, 50, 50), (350, 10, 401, 90), (10, 200, 60, 241),
                                 (60, 10, 20, 90)])
def test_a_box_outside_the_image_is_refused(box):
    with pytest.raises(SceneError, match="is not inside"):
        select_faces(FACES, [FaceSelector(box=box)], (240, 400))


def test_two_speakers_on_one_face_are_refused():
    for second in (FaceSelector(index=1), FaceSelector(box=(121, 21, 199, 109))):
        with pytest.raises(SceneError, match="are the same face"):
            select_faces(FACES, [FaceSelector(index=1), second], (240, 400))


def test_a_jobs_file_row_takes_speakers_relative_to_its_folder(tmp_path):
    """A JSONL row of the batch command: a list of speakers becomes one --speaker each, their
    files found next to the jobs file; a row without speakers is one speaker, as before."""
    import json

    from joyvasa_core.batch.jobs import read_jobs

    jobs = tmp_path / "jobs" / "jobs.jsonl"
    jobs.parent.mkdir()
    rows = [{"image": "two.png", "speaker": ["0=a.wav", "1,2,40,50=sub/b.wav"],
             "output": "talk.mp4"},
            {"image": "two.png", "audio": "a.wav", "output": "one.mp4"}]
    jobs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    scene_row, single_row = read_jobs(jobs, tmp_path / "out", decode=False)
    assert scene_row.status == single_row.status == "", (scene_row.error, single_row.error)
    speakers = scene_row.job.scene.speakers
    assert [s.audio for s in speakers] == [jobs.parent / "a.wav", jobs.parent / "sub" / "b.wav"]
    assert speakers[1].face == FaceSelector(box=(1.0, 2.0, 40.0, 50.0))
    assert scene_row.job.speech is None
    assert single_row.job.scene is None and single_row.job.speech == jobs.parent / "a.wav"
