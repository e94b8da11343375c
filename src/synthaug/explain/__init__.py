"""Explain what the classifier looks at: Grad-CAM on real vs synthetic images, quantified."""

from synthaug.explain.gradcam import (
    cam_maps,
    cam_panel,
    compare_cams,
    energy_in_mask,
    mask_stats,
    mean_cam_correlation,
    pick_target_layer,
    pointing_game,
    vit_reshape_transform,
)

__all__ = [
    "cam_maps",
    "cam_panel",
    "compare_cams",
    "energy_in_mask",
    "mask_stats",
    "mean_cam_correlation",
    "pick_target_layer",
    "pointing_game",
    "vit_reshape_transform",
]
