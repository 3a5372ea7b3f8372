# SPDX-License-Identifier: Apache-2.0
"""Task functions `run(cfg)` behind the entry points (`train.py`, `tasks/*.py`): each parses its
config, calls the library and writes its outputs."""

from omegaconf import OmegaConf

from odimo.pipeline.job import job_dir_name

# conf/hydra/default.yaml names job folders with it; registered wherever a task is imported
# (the launcher's process and submitit's job processes alike)
OmegaConf.register_new_resolver("job_dir_name", job_dir_name, replace=True)
