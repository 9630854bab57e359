"""The trainer's errors, and the exit status each one maps to.

    TrainerError            anything the trainer reports instead of a traceback
    +-- UsageError          bad arguments, config, interval or paths: exit 2
    +-- FeatureSetError     the feature set could not be loaded or computed: exit 1
    +-- TrainingError       the data cannot be trained on (e.g. one class only): exit 1

`__main__` is the only place that turns them into exit statuses.
"""


class TrainerError(Exception):
    """Base of every error the command line reports as a message."""

    exit_code = 1


class UsageError(TrainerError):
    """The command was called wrongly: arguments, configuration, interval, paths."""

    exit_code = 2


class FeatureSetError(TrainerError):
    """The feature set failed to import, lacked its interface, or its compute failed."""


class TrainingError(TrainerError):
    """Training could not proceed on the data it was given."""
