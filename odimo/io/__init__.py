# SPDX-License-Identifier: Apache-2.0
"""Infrastructure every writer uses: atomic writes, rank-zero writes, locks, fingerprints.

The bottom of the package: it imports nothing of odimo but `odimo.errors`.
"""

from odimo.io.atomic import (
    DiskFullError,
    atomic_path,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_temps,
    temp_name,
)
from odimo.io.fingerprint import (
    NON_RESULT_KEYS,
    changed_keys,
    config_fingerprint,
    result_config,
)
from odimo.io.locks import JobBusyError, cache_lock, job_lock
from odimo.io.ranks import global_rank, is_rank_zero, rank_zero_write, same_on_all_ranks
from odimo.io.tables import csv_cell, json_safe, write_csv, write_json, write_records_csv

__all__ = [
    "NON_RESULT_KEYS",
    "DiskFullError",
    "JobBusyError",
    "atomic_path",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_text",
    "cache_lock",
    "changed_keys",
    "config_fingerprint",
    "csv_cell",
    "global_rank",
    "is_rank_zero",
    "job_lock",
    "json_safe",
    "rank_zero_write",
    "remove_stale_temps",
    "result_config",
    "same_on_all_ranks",
    "temp_name",
    "write_csv",
    "write_json",
    "write_records_csv",
]
