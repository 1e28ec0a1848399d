"""The one error type a user sees: a single line and a non-zero exit code."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (config, data, flags): exit 2, no traceback."""

    exit_code = 2


class EnvironmentProblem(UserError):
    """Something missing on the machine (Caffe, a tool): exit 1 with a one-line fix."""

    exit_code = 1
