# SPDX-License-Identifier: Apache-2.0
"""odimo: map deep networks onto multi-accelerator edge chips at training time (ODiMO on DIANA)."""

__version__ = "0.1.0"
