# SPDX-License-Identifier: Apache-2.0
"""Running the main job as a library: phase plumbing (checkpoints, resume, loggers), the phases
(warm-up, search, mapped training), a job folder's "already done" and the final summary.

`odimo.tasks.train` parses the config and calls these; nothing here reads the command line.
"""
