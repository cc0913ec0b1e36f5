"""Unsupervised keypoints from video (FOMM's training setup) and their landmark-regression evaluation."""

from keyhead.fomm.unsupervised.evaluate import evaluate_unsupervised
from keyhead.fomm.unsupervised.generator import WarpGenerator, pyramid_l1, sparse_motions
from keyhead.fomm.unsupervised.landmarks import fit_linear_regressor, predict_linear, regression_errors
from keyhead.fomm.unsupervised.tps import TPSWarp, equivariance_losses
from keyhead.fomm.unsupervised.train import UnsupervisedConfig, train_unsupervised

__all__ = [
    "TPSWarp",
    "UnsupervisedConfig",
    "WarpGenerator",
    "equivariance_losses",
    "evaluate_unsupervised",
    "fit_linear_regressor",
    "predict_linear",
    "pyramid_l1",
    "regression_errors",
    "sparse_motions",
    "train_unsupervised",
]
