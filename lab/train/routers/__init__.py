"""One module per router kind the scorer serves (``scorer.routers.ROUTERS``), each defining ``TRAINER``."""
