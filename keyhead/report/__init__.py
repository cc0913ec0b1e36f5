"""Pictures of runs: training curves, prediction overlays."""
