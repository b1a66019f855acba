"""A teacher and a gentler rate for camera folders when the user names none (``--camera-teacher``,
on by default; ``--warmup-lr`` not given).

A camera's noise, demosaiced and often JPEG'd, is not what the fitted model draws: on held photos
with the *fitted* camera noise the tool's rankings of camera models came out reversed against real
noisy photos (README, "Two ways to rank files for real camera noise"). Stage 1 learns only from the
fitted noise, so a run that starts from the bundled default, which was taught on real camera crops,
drifts away from what it did on real noise: the default recipe on PolyU's 100 noisy photos lost
0.42 dB on CC15 and 0.09 dB on PolyU's own pairs against its start (README, Round CAM-DEFAULT).
With a quarter of each batch real noisy crops of the folder, the start's own outputs on them as
targets, stage 1 forgets less of it: +0.19 dB on CC15 and +0.05 on PolyU's pairs over the untaught
run, chosen by the no-reference score, though still 0.23 and 0.04 dB below the start (Round
CAM-TEACH; the bundled camera model as the teacher scored lower without a reference). The start
(run T25) was itself fine-tuned at a stage-1 rate of 1e-4, and the default 1e-3 moves a converged
model far on noise that is not the real one: at 1e-4 the taught run scored highest without a
reference (over 3e-4, and over a half-taught batch at 1e-3), and on the pairs, scored after, lost
only 0.06 dB on CC15 and 0.003 on PolyU's against the start (README, Round CAM-GENTLE).

Only colour folders whose fits are not white (blurred or JPEG: what ``auto_level_range`` gives the
wide spread) get one, and only when the run starts from a bundled model. Gray folders are left as
they were: no teacher was measured on them, and on the gray fluorescence testbed the untaught
``--time 20m`` gained 2.02 dB over the bundled default (README, Round FLUO). A run from random
weights has no teacher worth copying.
"""

from __future__ import annotations

from invrep_cli.noise import NoiseModel, is_gray, white_folder

#: share of each stage-1 batch of real noisy crops taught by the start (run T25's share)
CAMERA_TEACHER_SHARE = 0.25
#: stage 1's peak learning rate for such a run, unless --warmup-lr gives one (Round CAM-GENTLE)
CAMERA_WARMUP_LR = 1e-4


def is_camera_folder(noise: NoiseModel | None) -> bool:
    """Whether a run's noise reads as a colour camera's: fitted (not a --synthetic spec), most fits
    in colour (not ``is_gray``), and not a ``white_folder`` (most fits blurred or JPEG'd)."""
    if noise is None or noise.spec is not None or not noise.fitted:
        return False
    colour = sum(not is_gray(f) for f in noise.fitted)
    return 2 * colour > len(noise.fitted) and not white_folder(noise.fitted)


def choose_camera_teacher(noise: NoiseModel | None, start: str | None, bundled_start: bool) -> tuple[str | None, str]:
    """(the teacher's file or None, the reason in words) for a run that names no --teacher:
    ``start`` (the file E_X and G_Y start from) teaches a camera folder when it is a bundled model."""
    if start is None or not bundled_start or not is_camera_folder(noise):
        return None, ""
    return start, "its start teaches real noisy crops (camera folder; --no-camera-teacher turns it off)"
