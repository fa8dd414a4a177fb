"""nbval defaults for the lesson notebooks.

``pytest --nbval-lax notebooks/`` runs each notebook in this interpreter's environment (the
kernel that has MQ Lab installed) and applies ``nbval-sanitize.cfg``, unless the command line
says otherwise.
"""

from pathlib import Path


def pytest_configure(config):
    option = config.option
    if hasattr(option, "nbval_current_env"):
        if not getattr(option, "nbval_kernel_name", None):
            option.nbval_current_env = True
        if getattr(option, "nbval_sanitize_with", None) is None:
            option.nbval_sanitize_with = str(Path(__file__).with_name("nbval-sanitize.cfg"))
