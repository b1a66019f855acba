"""What the run did on the user's own noisy folder, said without a reference: the no-reference
score (``criterion``) of the restorer the run started from and of the one it made, and a picture
of a few crops side by side (noisy | start | trained)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from invrep_cli.data import centre_crop
from invrep_cli.models import Restorer
from invrep_cli.noise import ImageNoise
from invrep_cli.training.criterion import NoisyImage, estimated_psnr, prepare
from invrep_cli.training.run_folder import save_png

#: side of the centre crop each image is scored on (bounded cost: restore runs twice per crop)
SCORE_CROP = 256
#: side of the crops in the picture
PICTURE_CROP = 128


@dataclass
class RunReport:
    images: int
    start_name: str
    start_score: float | None
    #: None: the criterion could not score this folder (``estimated_psnr``); then no score is given
    trained_score: float | None
    picture: str | None
    stage1_score: float | None = None
    #: how many of the images were scored under the folder's fit, their own being unmeasurable
    folder_fit_images: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "images": self.images,
            "start": self.start_name,
            "start_estimated_psnr": None if self.start_score is None else round(self.start_score, 3),
            "trained_estimated_psnr": None if self.trained_score is None else round(self.trained_score, 3),
            "stage1_estimated_psnr": None if self.stage1_score is None else round(self.stage1_score, 3),
            "picture": self.picture,
            "folder_fit_images": self.folder_fit_images,
            "criterion": "SURE under the noise fitted to each image (no reference; ranks restorers)",
        }


def _runner(restorer: Restorer, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """The restorer as the criterion calls it: [0, 1] CPU images in and out, run on ``device``."""
    restorer = restorer.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        return restorer(x.to(device)).float().cpu()

    return run


@torch.no_grad()
def write_report(
    noisy_images: Sequence[np.ndarray],
    trained: Restorer,
    start: Restorer | None,
    start_name: str,
    picture_path: Path,
    device: torch.device,
    stage1: Restorer | None = None,
    folder_noise: ImageNoise | None = None,
) -> RunReport | None:
    """Score the restorers on centre crops of the noisy images and write the picture (``stage1``:
    what stage 1 alone gave, when stage 2 ran; ``folder_noise``: the run's fit of the folder, for
    images whose own noise cannot be measured); None when no image has a noise to score under."""
    # the noise is fitted on the whole image (a crop may hold too few flat blocks to fit it: on
    # PolyU's 512-px photos a 256-px crop fitted 1 image of 6) and scored on its centre crop
    scored = [
        NoisyImage(centre_crop(img.pixels, SCORE_CROP), img.noise, img.folder_fit)
        for img in prepare(noisy_images, fallback=folder_noise)
    ]
    if not scored:
        return None
    run_trained = _runner(trained, device)
    run_start = _runner(start, device) if start is not None else None
    trained_score = estimated_psnr(run_trained, scored)
    start_score = estimated_psnr(run_start, scored) if run_start is not None else None
    stage1_score = estimated_psnr(_runner(stage1, device), scored) if stage1 is not None else None
    unscored = trained_score is None or (start is not None and start_score is None) or (
        stage1 is not None and stage1_score is None
    )
    if unscored:  # one model unscored leaves the others' scores nothing to be compared with
        trained_score = start_score = stage1_score = None
    rows = []
    for img in scored[:4]:
        crop = centre_crop(img.pixels, PICTURE_CROP)
        x = torch.from_numpy(crop.transpose(2, 0, 1)).unsqueeze(0)
        panels = [crop]
        for fn in (run_start, run_trained):
            if fn is not None:
                panels.append(fn(x)[0].numpy().transpose(1, 2, 0))
        gap = np.ones((crop.shape[0], 4, 3), np.float32)
        row = np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=1.0) for r in rows]
    picture = np.round(np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).astype(np.uint8)
    save_png(picture_path, picture)
    return RunReport(
        len(scored), start_name, start_score, trained_score, str(picture_path), stage1_score,
        folder_fit_images=sum(img.folder_fit for img in scored),
    )
