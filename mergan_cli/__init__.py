"""The ``mergan`` command line: the composition root above ``mergan``, ``tracking``, ``trainables`` and
``analysis`` (``mergan_cli.main:main`` is the ``mergan`` script)."""
