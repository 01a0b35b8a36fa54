"""Development tooling: ``hookline dev`` (the whole stack on one machine), the process
supervisor it and the end-to-end suites share, and the demo receiver.

Nothing in ``shared`` or ``services`` imports this package.
"""
