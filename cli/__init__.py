"""The ``hookline`` command: one subcommand per service, the local broker, topics,
``apply`` and ``dev``. It is the top layer: it may import every other package,
and none imports it."""
