"""The exporter's own errors (a bad checkpoint is checkpoint_io.CheckpointError). The CLI maps each to
its exit status: UsageError 2, ExportError 1."""


class ExportError(Exception):
    """The export itself failed (a piece did not trace or does not reproduce eager)."""


class UsageError(Exception):
    """Bad command-line values (device, dtype, output folder)."""
